"""Reading a run store that does not fit in memory: pandas chunks, and a DuckDB database built from them.

``responses.sqlite`` is an ordinary SQLite file, so any SQLite client can query it. Two helpers cover the
common cases of a study too large for one data frame:

* :func:`iter_responses` yields the answers as data frames of at most ``chunksize`` rows, with the design
  cell spread into columns (``option_order``, ``template``, ... from the ``condition`` JSON, extracted by
  SQLite itself). Memory stays bounded by the chunk size, not the run size.
* :func:`to_duckdb` copies them, chunk by chunk, into a table of a DuckDB database file, which then answers
  SQL over the whole study out of core. DuckDB's own SQLite reader is an extension it downloads on first
  use; this path needs only the ``duckdb`` package.

The store is opened read-only, so a run that is still being written can be read (SQLite's WAL mode lets
readers and the writer work at once); rows committed after the read began are not included.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from psychometrics.conditions import CONDITION_FIELDS
from psychometrics.errors import PsytestError

if TYPE_CHECKING:  # pandas is imported where it is used
    import pandas as pd

DEFAULT_CHUNKSIZE = 100_000
RESPONSE_COLUMNS = (
    "request_id", "inventory", "item_id", "item_index", "mode", "raw_reply", "outcome", "parse_method",
    "position", "value", "expected_value", "entropy", "option_mass", "latency_s", "input_tokens",
    "output_tokens", "error", "attempts", "reasks", "answered_at",
)
CELL_FIELDS = tuple(f for f in CONDITION_FIELDS if f not in RESPONSE_COLUMNS)  # "mode" is a column already
def _duckdb_type(column: str) -> str:
    from psychometrics.run.store import RESPONSES

    kind = RESPONSES.kinds.get(column, {"sample": "int", "temperature": "real"}.get(column, "text")).rstrip("?")
    return {"int": "BIGINT", "real": "DOUBLE"}.get(kind, "VARCHAR")


def connect_read_only(run_dir: Path) -> sqlite3.Connection:
    """A read-only connection to a run's store, opened and checked by the run owner
    (:func:`psychometrics.run.owner.open_run`: never creates or changes a file); one-line error if unreadable."""
    from psychometrics.run.owner import open_run

    store = open_run(run_dir).store()
    try:
        store.check_contents()
    except PsytestError:
        store.close()
        raise
    return store.conn


def responses_query(columns: Sequence[str] = RESPONSE_COLUMNS, where: str | None = None,
                    temperature: float = 0.0) -> str:
    """SQL for the answers with the design cell as columns; ``where`` is an SQL condition on ``responses``.
    ``temperature``: that of answers stored before it was part of their condition (the run's first)."""
    unknown = [c for c in columns if c not in RESPONSE_COLUMNS]
    if unknown:
        raise PsytestError(f"columns: unknown column '{unknown[0]}'; choose from {', '.join(RESPONSE_COLUMNS)}")
    cells = [f"json_extract(condition, '$.{field}') AS {field}" if field != "temperature" else
             f"coalesce(json_extract(condition, '$.temperature'), {float(temperature)!r}) AS temperature"
             for field in CELL_FIELDS]
    return (f"SELECT {', '.join([*columns, *cells])} FROM responses"
            + (f" WHERE {where}" if where else "") + " ORDER BY rowid")


def iter_responses(
    run_dir: Path,
    chunksize: int = DEFAULT_CHUNKSIZE,
    columns: Sequence[str] = RESPONSE_COLUMNS,
    where: str | None = None,
) -> Iterator[pd.DataFrame]:
    """The run's answers as data frames of at most ``chunksize`` rows (see the module docstring)."""
    import pandas as pd

    if chunksize < 1:
        raise PsytestError(f"chunksize must be at least 1, got {chunksize}")
    conn = connect_read_only(run_dir)
    try:
        from psychometrics.run.manifest import QuestionnaireManifest, read_manifest

        manifest = read_manifest(run_dir)
        temperature = manifest.first_temperature if isinstance(manifest, QuestionnaireManifest) else 0.0
        yield from pd.read_sql_query(responses_query(columns, where, temperature), conn, chunksize=chunksize)
    finally:
        conn.close()


def to_duckdb(
    run_dir: Path,
    database: Path,
    table: str = "responses",
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> int:
    """Copy the run's answers into ``table`` of the DuckDB file ``database`` (replacing it); rows copied."""
    try:
        import duckdb
    except ImportError:
        raise PsytestError("DuckDB is not installed; pip install duckdb (or use iter_responses with pandas)") from None
    check_table_name(table)
    rows = 0
    name = _quoted(table)
    staging = _quoted(f"{table}_psytest_partial")
    created = not Path(database).exists()
    try:
        # no extension loading: DuckDB would otherwise download its SQLite reader to open a SQLite file
        con = duckdb.connect(str(database), config={"autoinstall_known_extensions": False,
                                                    "autoload_known_extensions": False})
    except duckdb.Error as exc:
        raise PsytestError(f"--duckdb {database}: cannot open it as a DuckDB database ({exc}); give a new file "
                           "or one psytest export wrote") from None
    try:
        columns = [*RESPONSE_COLUMNS, *CELL_FIELDS]
        # One transaction: the old table (if any) is replaced by the complete copy, or nothing changes
        # (an interrupted or failed export leaves no partial or staging table behind).
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DROP TABLE IF EXISTS {staging}")
            # Types fixed up front: a first chunk without errors must not make 'error' a column of NULLs
            con.execute(f"CREATE TABLE {staging} ({', '.join(f'{_quoted(c)} {_duckdb_type(c)}' for c in columns)})")
            for chunk in iter_responses(run_dir, chunksize):
                con.register("psytest_chunk", chunk)
                con.execute(f"INSERT INTO {staging} SELECT {', '.join(_quoted(c) for c in columns)} FROM psytest_chunk")
                con.unregister("psytest_chunk")
                rows += len(chunk)
            con.execute(f"DROP TABLE IF EXISTS {name}")
            con.execute(f"ALTER TABLE {staging} RENAME TO {name}")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    except BaseException as exc:
        con.close()
        if created:  # a database this call created holds nothing: do not leave it behind
            for leftover in (Path(database), Path(f"{database}.wal")):
                leftover.unlink(missing_ok=True)
        if isinstance(exc, duckdb.Error):
            raise PsytestError(f"--duckdb {database}: the export failed and changed nothing ({exc})") from None
        raise
    con.close()
    return rows


_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_table_name(table: str) -> None:
    """A one-line error unless ``table`` is a plain SQL name: an ASCII letter or underscore, then letters,
    digits or underscores, at most 63 characters. SQL keywords (``select``) are valid names here:
    every name is double-quoted in the statements, so none is read as SQL."""
    if not _TABLE_NAME.fullmatch(table):
        raise PsytestError(f"--table {table!r}: not a plain SQL name; use ASCII letters, digits and underscores "
                           "(at most 63), starting with a letter")


def _quoted(name: str) -> str:
    """``name`` as a quoted SQL identifier (a keyword such as ``select`` is then a name, not SQL)."""
    return '"' + name.replace('"', '""') + '"'

