"""``psytest study STUDY.yaml``: several models through one design, then their comparison (and validity)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from psychometrics.cli.common import TIMEOUT_DEFAULT, CommandFailed, MaxRetries
from psychometrics.cli.terminal import echo, print_json


def study(
    study_file: Annotated[Path, typer.Argument(help="The study file: models, inventories, design, personas, tasks "
                                                    "(see examples/study.yaml).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Study directory (overrides the file's out).",
                                                show_default="the file's out, or a folder named after the file")] = None,
    max_retries: MaxRetries = 5,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Requests in flight at once, per run.")] = 4,
    timeout: Annotated[Optional[float], typer.Option(min=0.001, help="Seconds before a request counts as failed.",
                                                     show_default=TIMEOUT_DEFAULT)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print each model's estimated cost and the total, then each plan's size; send nothing.")] = False,
    prices: Annotated[Optional[Path], typer.Option("--prices", help="YAML price file (USD per 1M tokens) for models litellm's price map lacks.", show_default="litellm's price map")] = None,
    max_cost: Annotated[Optional[float], typer.Option("--max-cost", help="Refuse to start when the study's estimated cost is above this (USD) or unknown.", show_default="no limit")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary for scripts.")] = False,
) -> None:
    """Run a study across models: a run per model (each resumable), then compare them, with tasks relate
    self-report to behaviour, and write the combined report (STUDY/report). Exit 1 names the models whose
    requests failed."""
    from psychometrics import api

    def progress(model: str, kind: str):
        if as_json:
            return None
        from psychometrics.cli.terminal import RunProgress

        echo(f"{model}: {kind}", err=True)
        return RunProgress("behaving", "conversations/s") if kind == "behavior" else RunProgress()

    outcome = api.study(study_file, out=out, concurrency=concurrency, max_retries=max_retries, timeout=timeout,
                        dry_run=dry_run, progress=progress, prices=prices, max_cost=max_cost)
    if isinstance(outcome, dict):
        print_json(outcome) if as_json else _print_plan(outcome)
        return
    if as_json:
        print_json(outcome.as_dict())
    else:
        _print_outcome(outcome)
    if outcome.failed_models:
        names = ", ".join(outcome.failed_models)
        raise CommandFailed(f"psytest: requests failed for {len(outcome.failed_models)} model(s): {names}; re-run "
                            "the study to retry just those")
    if outcome.cut_off_models:
        from psychometrics.cli.common import EXIT_CUT_OFF

        raise CommandFailed(f"psytest: warning: most replies were cut off at max_tokens for "
                            f"{', '.join(outcome.cut_off_models)}; see the notes", code=EXIT_CUT_OFF)


def _print_plan(plan: dict) -> None:
    """Each run's size (requests or conversations, to send, tokens, estimated time), the design's factors
    (the same for every model: the first questionnaire run's breakdown) and the total."""
    from psychometrics.cli.tables import Column, print_fitted, print_wrapped
    from psychometrics.cli.terminal import duration
    from psychometrics.design.breakdown import short_names

    def seconds(p: dict):
        return (p["plan"].get("time") or {}).get("seconds")

    from psychometrics.cli.terminal import money, print_costs

    print_costs(plan["costs"], title=None if plan["cost"] is None else
                f"Estimated cost: up to {money(plan['cost'])} (USD) for the study's {len(plan['costs'])} models")
    if plan.get("max_cost") is not None:
        verdict = ("within it" if plan["cost"] is not None and plan["cost"] <= plan["max_cost"]
                   else "a real run would refuse to start")
        print_wrapped(f"--max-cost {money(plan['max_cost'])}: {verdict}", indent="  ")

    rows = [{"model": p["model"], "kind": p["kind"],
             "planned": p["plan"].get("requests_planned", p["plan"].get("conversations_planned", 0)),
             "to_send": p["plan"]["to_send"], "input_tokens": _input_tokens(p["plan"]),
             "time": "-" if seconds(p) is None else duration(seconds(p))} for p in plan["runs"]]
    first = next(p["plan"] for p in plan["runs"] if p["kind"] == "questionnaire")
    print_fitted("Each model's questionnaire design", first["factors"], [
        Column("factor", kind="key"),
        Column("levels", kind="key", fmt=lambda r: ", ".join(f"{k}: {v}" for k, v in r["levels"].items())
               if isinstance(r["levels"], dict) else str(r["levels"])),
        Column("names", "level names", kind="text", fmt=lambda r: short_names(r["names"])),
    ], max_rows=100)
    for row in first["inventories"]:
        print_wrapped(f"{row['inventory']}: {row['formula']}", indent="  ")
    print_fitted(f"Study plan (nothing is sent): {plan['study_dir']}", rows, [
        Column("model", kind="text"), Column("kind", kind="key", fmt=lambda r: r["kind"][:13]),
        Column("planned", fmt=lambda r: f"{r['planned']:,}"), Column("to_send", "to send", fmt=lambda r: f"{r['to_send']:,}"),
        Column("input_tokens", "input tokens", fmt=lambda r: f"{r['input_tokens']:,}", drop=1),
        Column("time", "est. time", kind="key", drop=2),
    ], max_rows=10_000)
    conversations = f" and {plan['conversations_planned']:,} conversations" if plan["conversations_planned"] else ""
    print_wrapped(f"total: {plan['requests_planned']:,} requests{conversations} planned, {plan['already_answered']:,} "
                  f"already answered, {plan['to_send']:,} to send; about {sum(r['input_tokens'] for r in rows):,} input "
                  f"tokens and at most {plan['estimated_output_tokens_max']:,} output tokens", indent="  ")
    measured = [seconds(p) for p in plan["runs"] if seconds(p) is not None]
    if measured:
        print_wrapped(f"time: about {duration(sum(measured))} for the {len(measured)} run(s) with a measured estimate "
                      "(local models, measured here); simulated and remote models are not included", indent="  ")
    print_wrapped("Nothing was sent.")


def _input_tokens(plan: dict) -> int:
    """A run's input tokens as its cost estimate counts them (the model's tokenizer where there is one)."""
    cost = plan.get("cost")
    return cost["input_tokens"] if cost else plan["estimated_input_tokens"]


def _print_outcome(outcome) -> None:
    from psychometrics.cli.tables import Column, print_fitted, print_wrapped

    root = outcome.directory
    rows = [run.record(root) for run in outcome.runs]
    print_fitted(f"Study: {len(outcome.study.spec.models)} models in {root}", rows, [
        Column("model", kind="text"), Column("kind", kind="key"), Column("status", kind="key"),
        Column("sent", fmt=lambda r: f"{r['sent']:,}"), Column("failed", fmt=lambda r: f"{r['failed']:,}"),
        Column("run_dir", "run directory", kind="text", drop=1),
    ], max_rows=10_000)
    if outcome.comparison is not None:
        print_wrapped(f"comparison: {outcome.comparison.verdict}", indent="  ")
    for note in outcome.notes:
        print_wrapped(f"note: {note}", indent="  ")
    for name, path in outcome.paths().items():
        if path is not None:
            print_wrapped(f"{name}: {path}", indent="  ")
    print_wrapped("Each run's own report: psytest report STUDY/runs/<model>; the combined report again: psytest "
                  "report STUDY; check it: psytest reproduce STUDY.", indent="  ")


def register(app: typer.Typer) -> None:
    """Add ``study`` to the main app."""
    app.command()(study)
