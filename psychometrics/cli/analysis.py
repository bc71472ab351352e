"""``psytest score`` (a run's tables from its store) and ``psytest analyze`` (the same tables for item data)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from psychometrics.cli.terminal import print_json

if TYPE_CHECKING:
    from psychometrics.api import Analysis

ReferenceLoadings = Annotated[
    Optional[Path], typer.Option(help="CSV of reference loadings (items x factors) for Tucker congruence.", show_default="none")
]
TablesAsJson = Annotated[bool, typer.Option("--json", help="Print the tables as JSON for scripts.")]


def _show(analysis: Analysis, as_json: bool) -> None:
    if as_json:
        print_json(analysis.as_dict())
        return
    from psychometrics.cli.terminal import print_analysis

    print_analysis(analysis.tables, analysis.written)


def score(
    run: Annotated[Path, typer.Argument(help="A run directory (with manifest.json and responses.sqlite).")],
    by: Annotated[
        Optional[str],
        typer.Option(help="Condition fields to group scores by, e.g. persona,mode (the others are averaged). "
                          "Reliability and structure stay across respondents (persona x sample) within a design "
                          "cell: without persona and sample there is one respondent per cell and none is computed.",
                     show_default="every condition field"),
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the CSV tables.", show_default="RUN/analysis")] = None,
    reference_loadings: ReferenceLoadings = None,
    structure: Annotated[bool, typer.Option(help="Also run EFA and CFA (slower on large inventories).")] = True,
    as_json: TablesAsJson = False,
) -> None:
    """Score a run and compute every derived table: norms, reliability, sensitivity, structure, MTMM."""
    from psychometrics import api

    _show(api.score(run, by=by, out=out, reference_loadings=reference_loadings, structure=structure), as_json)


def analyze(
    data: Annotated[Path, typer.Argument(help="CSV of item responses: one row per respondent, one column per item.")],
    keys: Annotated[Optional[Path], typer.Option(help="Keys YAML: response_range and scales (-item = reversed).", show_default="none")] = None,
    inventory: Annotated[
        Optional[str], typer.Option("--inventory", "-i", help="Or an inventory whose item ids are the columns.", show_default="none")
    ] = None,
    reference_loadings: ReferenceLoadings = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the CSV tables.", show_default="DATA-analysis/")] = None,
    structure: Annotated[bool, typer.Option(help="Also run EFA and CFA.")] = True,
    as_json: TablesAsJson = False,
) -> None:
    """Analyse item data from a file (e.g. a human sample) with the same tables as a run."""
    from psychometrics import api

    _show(api.analyze(data, keys=keys, inventory=inventory, reference_loadings=reference_loadings, out=out,
                      structure=structure), as_json)


def register(app: typer.Typer) -> None:
    """Add ``score`` and ``analyze`` to the main app."""
    app.command()(score)
    app.command()(analyze)
