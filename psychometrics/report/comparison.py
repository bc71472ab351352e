"""The page ``psytest compare --out DIR`` writes beside its CSVs: the verdict and the differences table.

Run labels and every cell are escaped (a run directory's name is the user's text); every number on the
page is in ``differences.csv``.
"""

from __future__ import annotations

import html


def comparison_page(result) -> str:
    """``compare.html`` for a :class:`psychometrics.analysis.compare.CompareResult`."""
    directories = result.directories or result.runs
    runs = "; ".join(f"{html.escape(label)} ({html.escape(str(path))})" for label, path in zip(result.runs, directories))
    table = result.differences.to_html(index=False, escape=True, na_rep="-", float_format=lambda v: f"{v:.3f}")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>psytest comparison</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}</style></head><body>"
        f"<h1>Run comparison</h1><p>{html.escape(result.verdict)}</p>"
        f"<p>Runs (the first is the reference): {runs}</p>{table}"
        "<p>Every number here is in differences.csv.</p></body></html>"
    )
