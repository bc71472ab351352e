"""Load a run's answers when they do not fit in memory: pandas in chunks, or a DuckDB database.

Usage::

    python examples/scaling/load_store.py RUN_DIR [DUCKDB_FILE]

Prints the mean answer per inventory, answer mode and option order twice: accumulated over pandas chunks
of 50,000 rows (memory bounded by the chunk, not the run), and from SQL over a DuckDB copy of the store
(written to DUCKDB_FILE, default RUN_DIR/responses.duckdb).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from psychometrics.run.export import iter_responses, to_duckdb

KEYS = ["inventory", "mode", "option_order"]


def chunked_means(run: Path, chunksize: int = 50_000) -> pd.DataFrame:
    """Sum and count per group, chunk by chunk, then divide: the whole table is never in memory."""
    totals = None
    for chunk in iter_responses(run, chunksize=chunksize, columns=["inventory", "mode", "value", "outcome"]):
        valid = chunk[chunk["outcome"] == "valid"]
        part = valid.groupby(KEYS)["value"].agg(["sum", "count"])
        totals = part if totals is None else totals.add(part, fill_value=0)
    means = (totals["sum"] / totals["count"]).rename("mean_value").reset_index()
    return means.assign(n=totals["count"].to_numpy().astype(int))


def duckdb_means(run: Path, database: Path) -> pd.DataFrame:
    import duckdb

    to_duckdb(run, database)
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(
            "SELECT inventory, mode, option_order, avg(value) AS mean_value, count(*) AS n FROM responses "
            "WHERE outcome = 'valid' GROUP BY ALL ORDER BY ALL").df()


def main(run: Path, database: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    chunked = chunked_means(run)
    from_duckdb = duckdb_means(run, database or run / "responses.duckdb")
    print("pandas, in chunks:\n" + chunked.to_string(index=False))
    print("DuckDB:\n" + from_duckdb.to_string(index=False))
    return chunked, from_duckdb


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
