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

from psychometrics.errors import PsytestError
from psychometrics.cli.terminal import echo, print_json


def _export_header() -> str:
    from psychometrics.run.export import CELL_FIELDS, RESPONSE_COLUMNS

    return ",".join([*RESPONSE_COLUMNS, *CELL_FIELDS])


def _is_export_file(path: Path) -> bool:
    """Whether ``path`` starts with the header ``export --csv`` writes (so it may be replaced)."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.readline(4096).rstrip("\r\n") == _export_header()
    except (OSError, UnicodeDecodeError):
        return False


def _write_csv(run: Path, path: Path, chunksize: int) -> int:
    import os

    from psychometrics.analysis.tables import spreadsheet_safe
    from psychometrics.run.export import iter_responses
    from psychometrics.run.outputs import temporary_path

    rows = 0
    partial = temporary_path(path)
    try:
        with open(partial, "w", encoding="utf-8", newline="") as handle:
            for chunk in iter_responses(run, chunksize):
                spreadsheet_safe(chunk).to_csv(handle, index=False, header=rows == 0)
                rows += len(chunk)
            if rows == 0:  # no answers yet: still a file with the header, so it is known as psytest's
                handle.write(_export_header() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)  # a reader never sees half a file under the final name
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows


def export(
    run: Annotated[Path, typer.Argument(help="A run directory written by psytest administer.")],
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Write the answers to this CSV file.")] = None,
    duckdb: Annotated[
        Optional[Path], typer.Option("--duckdb", help="Copy the answers into this DuckDB database file.")
    ] = None,
    table: Annotated[str, typer.Option(help="The DuckDB table to (re)create.")] = "responses",
    chunksize: Annotated[int, typer.Option(help="Rows read from the store at a time (bounds the memory used).")] = 100_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Export a run's answers (one row per answer, design cell as columns) to CSV or DuckDB, chunk by chunk."""
    from psychometrics.run.export import check_table_name, to_duckdb
    from psychometrics.run.outputs import claim_file

    if csv is None and duckdb is None:
        raise PsytestError("export: give --csv FILE, --duckdb FILE or both")
    check_table_name(table)
    if csv is not None:
        claim_file(csv, "--csv", _is_export_file)
    if chunksize < 1:
        raise PsytestError(f"--chunksize must be at least 1, got {chunksize}")
    if not (run / "responses.sqlite").is_file():
        raise PsytestError(f"{run}: no responses.sqlite; give a run directory written by psytest administer")
    written: dict[str, object] = {}
    if csv is not None:
        written["csv"] = {"path": str(csv), "rows": _write_csv(run, csv, chunksize)}
    if duckdb is not None:
        rows = to_duckdb(run, duckdb, table=table, chunksize=chunksize)
        written["duckdb"] = {"path": str(duckdb), "table": table, "rows": rows}
    if as_json:
        print_json(written)
        return
    for kind, info in written.items():
        where = f"{info['path']}" + (f" (table {info['table']})" if kind == "duckdb" else "")
        echo(f"{info['rows']:,} answers -> {where}")


def register(app: typer.Typer) -> None:
    """Add ``export`` to the main app."""
    app.command()(export)
