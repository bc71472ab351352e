"""Reading finished runs: ``psytest report``, ``compare``, ``baseline``, ``check`` and ``reproduce``.

``check`` and ``reproduce`` end in :class:`~psychometrics.cli.common.CommandFailed` (exit code 1) when
the run drifted or does not reproduce, after printing why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from psychometrics.cli.common import CommandFailed, JsonFlag
from psychometrics.cli.terminal import echo, print_json


def report(
    run: Annotated[Path, typer.Argument(help="A run directory, or a study directory (psytest study's): the "
                                             "models side by side.")],
    out: Annotated[Optional[Path], typer.Option(help="Where to write the report.", show_default="RUN/report")] = None,
    behavior: Annotated[
        Optional[list[Path]],
        typer.Option("--behavior", "-b", help="Behaviour run(s) of the same model(s) and personas: adds the "
                     "self-report vs behaviour section.", show_default="none"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON summary for scripts.")] = False,
) -> None:
    """Write a self-contained HTML report with figures, its CSV tables and a JSON summary."""
    from psychometrics import api

    paths = api.report(run, out=out, behavior=behavior or None)
    if as_json:
        from psychometrics.cli.terminal import print_json_text

        print_json_text(paths.summary.read_text(encoding="utf-8"))
        return
    echo(f"report: {paths.html}\nsummary: {paths.summary}\n{len(paths.csvs)} CSV tables in {paths.out_dir}")


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories; the first is the reference.")],
    out: Annotated[Optional[Path], typer.Option(help="Also write differences.csv and compare.html here.", show_default="none")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Differences per scale between runs, with CIs, effect sizes, and whether they exceed run noise."""
    from psychometrics import api

    result = api.compare(runs, out=out)
    if as_json:
        from psychometrics.analysis.compare import as_json_records

        print_json({"verdict": result.verdict, "differences": as_json_records(result.differences),
                    "notes": result.notes})
        return
    from psychometrics.cli.terminal import print_comparison

    print_comparison(result)


def baseline(
    run: Annotated[Path, typer.Argument(help="A run directory to take as the baseline.")],
    out: Annotated[Optional[Path], typer.Option(help="Baseline file to write.", show_default="RUN/baseline.json")] = None,
) -> None:
    """Write a baseline file of the run's scale scores and their run-to-run noise, for 'psytest check'."""
    from psychometrics import api

    written = api.baseline(run, out=out)
    for warning in written.warnings:
        echo(f"psytest: warning: {warning}", err=True)
    echo(f"baseline written to {written.path}" + (f" ({written.scales} scales)" if written.scales else ""))


def check(
    run: Annotated[Path, typer.Argument(help="The run to check.")],
    baseline: Annotated[Path, typer.Option("--baseline", help="A file written by 'psytest baseline'.", show_default="required")],
    tolerance: Annotated[Optional[float], typer.Option(
        min=0.0, help="Allowed difference, in --unit.", show_default="3 with --unit sd, 0.5 with --unit raw")] = None,
    unit: Annotated[str, typer.Option(help="Tolerance unit: sd (SDs of the run-to-run noise of a difference of "
                                      "two means) or raw (score points).")] = "sd",
    as_json: JsonFlag = False,
) -> None:
    """Exit 0 when every scale is within tolerance of the baseline, 1 otherwise (a CI drift gate)."""
    from psychometrics import api

    result = api.check(run, baseline=baseline, tolerance=tolerance, unit=unit)
    if as_json:
        from psychometrics.analysis.compare import as_json_records

        print_json({"passed": result.passed, "verdict": result.verdict, "rows": as_json_records(result.rows),
                    "notes": result.notes})
    else:
        from psychometrics.cli.terminal import print_check

        print_check(result)
    if not result.passed:
        raise CommandFailed()


def reproduce(
    run: Annotated[Path, typer.Argument(help="A run directory, or a study directory (its report, comparison and "
                                             "validity tables).")],
    rerun: Annotated[bool, typer.Option("--rerun", help="Also re-send every request (deterministic backends only).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Recompute every derived file from the store and verify it matches; exit 1 on any difference."""
    from psychometrics import api

    result = api.reproduce(run, rerun=rerun)
    if as_json:
        from psychometrics.analysis.compare import as_json_records

        print_json({"passed": result.passed, "verdict": result.verdict, "files_checked": result.files_checked,
                    "mismatches": as_json_records(result.mismatches), "notes": result.notes})
    else:
        from psychometrics.cli.terminal import print_lines

        print_lines(result.summary())
    if not result.passed:
        raise CommandFailed()


def register(app: typer.Typer) -> None:
    """Add the commands that read finished runs to the main app."""
    for command in (report, compare, baseline, check, reproduce):
        app.command()(command)
