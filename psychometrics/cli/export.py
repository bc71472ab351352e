"""``psytest export``: a run's answers out of the store, in bounded memory, for other tools.

The store is read in chunks (:mod:`psychometrics.run.export`), so a run larger than memory exports as easily
as a small one, and a run still being written can be exported (rows committed after the export began
are left out). Two targets:

* ``--csv FILE``: one row per answer with the design cell as columns, written chunk by chunk. Text cells
  are made spreadsheet-safe like every CSV psytest writes (``docs/security.md``); the exact replies stay
  in the store and in the DuckDB copy.
* ``--duckdb FILE``: a table (``--table``, default ``responses``) of a DuckDB database file, for SQL over
  the whole study out of core; several runs go into one database as several tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from psychometrics.cli.common import JsonFlag
from psychometrics.cli.terminal import echo, print_json


def export(
    run: Annotated[Path, typer.Argument(help="A run directory written by psytest administer.")],
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Write the answers to this CSV file.", show_default="none")] = None,
    duckdb: Annotated[
        Optional[Path], typer.Option("--duckdb", help="Copy the answers into this DuckDB database file.", show_default="none")
    ] = None,
    table: Annotated[str, typer.Option(help="The DuckDB table to (re)create.")] = "responses",
    chunksize: Annotated[int, typer.Option(help="Rows read from the store at a time (bounds the memory used).")] = 100_000,
    as_json: JsonFlag = False,
) -> None:
    """Export a run's answers (one row per answer, design cell as columns) to CSV or DuckDB, chunk by chunk."""
    from psychometrics import api

    written = api.export(run, csv=csv, duckdb=duckdb, table=table, chunksize=chunksize)
    if as_json:
        print_json(written)
        return
    for kind, info in written.items():
        where = f"{info['path']}" + (f" (table {info['table']})" if kind == "duckdb" else "")
        echo(f"{info['rows']:,} answers -> {where}")


def register(app: typer.Typer) -> None:
    """Add ``export`` to the main app."""
    app.command()(export)
