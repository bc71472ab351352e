"""The behaviour commands of ``psytest``: ``tasks list|show|validate``, ``behave`` and ``validity``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from psychometrics import limits
from psychometrics.cli.common import DEFAULT_MODEL, TIMEOUT_DEFAULT, TIMEOUT_HELP, ConnectTimeout, JsonFlag, MaxRetries, PersonaIds, Personas, Threads, ThreadsBatch, finish_run
from psychometrics.cli.terminal import echo, print_json

tasks_app = typer.Typer(help="List, show and validate behavioural tasks.", no_args_is_help=True, rich_markup_mode=None)


@tasks_app.command("list")
def tasks_list(as_json: JsonFlag = False) -> None:
    """List the shipped behavioural tasks with their trait, expected direction and scoring rule."""
    from psychometrics import api

    rows = [
        {"id": t.id, "trait": t.trait, "direction": t.direction, "method": t.method, "kind": t.kind,
         "variants": len(t.variants), "measure": t.measure}
        for t in api.list_tasks()
    ]
    if as_json:
        print_json(rows)
        return
    from psychometrics.cli.tables import Column, print_fitted

    print_fitted("Behavioural tasks", rows, [
        Column("id", kind="key"), Column("trait", kind="key"),
        Column("direction", "dir", kind="key", fmt=lambda r: "+" if r["direction"] > 0 else "-"),
        Column("method", kind="key", drop=3, fmt=lambda r: "self" if r["method"] == "self-report" else "beh"),
        Column("kind", kind="key", drop=2), Column("variants", "var", drop=1), Column("measure", kind="text"),
    ], max_rows=1000)


@tasks_app.command("show")
def tasks_show(
    name: Annotated[str, typer.Argument(help="A shipped task or a path to a task file.")],
    variant: Annotated[Optional[str], typer.Option(help="Show this variant as the model sees it.", show_default="the first")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the option order shown.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Show a task: what it measures, its source, and a variant rendered as the model receives it."""
    from psychometrics import api

    shown = api.render_task(name, variant=variant, seed=seed)
    task = shown.task
    if as_json:
        print_json({**task.model_dump(mode="json"), "method": task.method, "rendered": {"variant": shown.variant.id, "turns": shown.turns}})
        return
    sign = "higher" if task.direction > 0 else "lower"
    echo(f"{task.name} ({task.id}): {task.trait}, {sign} scores expected from higher levels; kind {task.kind}"
         + ("; method self-report (a hypothetical choice or intention)" if task.method == "self-report" else ""))
    echo(f"Measure: {task.measure}")
    echo(f"Source: {task.citation}")
    echo(f"Variants: {len(task.variants)}. Variant {shown.variant.id} as the model sees it:")
    for index, turn in enumerate(shown.turns, 1):
        echo(f"--- turn {index} ---\n{turn}")


@tasks_app.command("validate")
def tasks_validate(
    paths: Annotated[list[Path], typer.Argument(help="Task files to check.")],
) -> None:
    """Check task files; print one line per file, and exit 2 at the first invalid one."""
    from psychometrics import api

    for path in paths:
        task = api.validate_task(path)
        echo(f"{path}: ok ({task.id}, {task.kind}, {len(task.variants)} variants)")


def behave(
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Any model 'psytest administer' takes (local/..., gguf:PATH, litellm, sim/...)."),
    ] = DEFAULT_MODEL,
    tasks: Annotated[str, typer.Option(help="all, task names, trait names or task files (comma list).")] = "all",
    personas: Personas = None,
    persona_ids: PersonaIds = None,
    variants: Annotated[
        Optional[int], typer.Option(min=1, max=limits.VARIANTS, help="Use the first N variants of each task.", show_default="all")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, max=limits.SAMPLES, help="Repeated samples per variant and persona.")] = 1,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="Sampling temperature (0 = greedy).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Run seed: option orders and per-turn seeds derive from it.")] = 0,
    order: Annotated[Optional[str], typer.Option(
        help="Option/item display order: balanced (each option in each position equally often per persona and "
             "task) or random (drawn per conversation, the rule of runs made before it was recorded).",
        show_default="balanced; a resumed run keeps its own")] = None,
    mode: Annotated[str, typer.Option(
        help="Answer mode: text, probs (choice tasks read from option-label probabilities, under every rotation "
             "of the option order) or both.")] = "text",
    max_tokens: Annotated[Optional[int], typer.Option(
        min=1, max=limits.MAX_TOKENS, help="Reply limit per turn for every task (a reply cut there is flagged "
                                           "truncated).", show_default="each task's own")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory.", show_default="runs/<time>-<model>-behavior")] = None,
    api_base: Annotated[Optional[str], typer.Option(help="Base URL of an OpenAI-compatible server.", show_default="the provider's")] = None,
    threads: Threads = None,
    threads_batch: ThreadsBatch = None,
    max_retries: MaxRetries = 5,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Conversations in flight at once.")] = 4,
    timeout: Annotated[Optional[float], typer.Option(min=0.001, help=TIMEOUT_HELP, show_default=TIMEOUT_DEFAULT)] = None,
    connect_timeout: ConnectTimeout = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the estimated cost, then the plan: tasks, variants, personas, conversations, tokens and (local models) a time estimate; send nothing.")] = False,
    prices: Annotated[Optional[Path], typer.Option("--prices", help="YAML price file (USD per 1M tokens) for models litellm's price map lacks.", show_default="litellm's price map")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary for scripts.")] = False,
) -> None:
    """Run behavioural tasks on a model (a session separate from questionnaires); store and score every reply."""
    from psychometrics import api

    progress = None
    if not as_json and not dry_run:
        from psychometrics.cli.terminal import RunProgress

        progress = RunProgress("behaving", "conversations/s")
    outcome = api.behave(
        model, tasks=tasks, personas=personas, persona_ids=persona_ids, variants=variants, samples=samples,
        temperature=temperature, seed=seed, out=out, api_base=api_base, threads=threads, threads_batch=threads_batch,
        max_retries=max_retries, concurrency=concurrency, timeout=timeout, connect_timeout=connect_timeout,
        dry_run=dry_run, progress=progress, prices=prices, order=order, mode=mode, max_tokens=max_tokens,
    )
    if dry_run:
        if as_json:
            print_json(outcome)
        else:
            from psychometrics.cli.terminal import print_behavior_plan

            print_behavior_plan(outcome)
        return
    if as_json:
        print_json(outcome.as_dict())
    else:
        from psychometrics.cli.terminal import print_behavior_summary

        print_behavior_summary(outcome.as_dict(), outcome.summary)
    finish_run(outcome.stats, "conversations", remedy="a larger --max-tokens")


def validity(
    selfreport: Annotated[Optional[list[Path]], typer.Option("--selfreport", "-s", help="Questionnaire run directory; repeat for several.", show_default="required without --scores")] = None,
    behavior: Annotated[Optional[list[Path]], typer.Option("--behavior", "-b", help="Behaviour run directory; repeat for several.", show_default="required without --scores")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for the tables and validity.html.", show_default="validity/ in the first behaviour run")] = None,
    scores: Annotated[Optional[Path], typer.Option("--scores", help="Scores from elsewhere instead of runs: a CSV with model, respondent, [sample], [target_<trait>], then one numeric column per measure; one row per observation.", show_default="none: read --selfreport and --behavior runs")] = None,
    pairs: Annotated[Optional[Path], typer.Option("--pairs", help="With --scores: a YAML list of {selfreport: COLUMN, behavior: COLUMN, sign: 1|-1}, the declared pairs.", show_default="none")] = None,
    bootstrap: Annotated[int, typer.Option(min=100, max=100_000, help="Bootstrap resamples for the CIs.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    equivalence_bound: Annotated[float, typer.Option("--equivalence-bound", help="Smallest |r| of interest: a pair is said not to predict only when an equivalence test (TOST) shows |r| below it.")] = 0.2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the key tables as JSON.")] = False,
) -> None:
    """Does what a model says about itself predict what it does? Self-report vs behaviour across personas."""
    from psychometrics import api

    result = api.validity(selfreport=selfreport or [], behavior=behavior or [], out=out, bootstrap=bootstrap,
                          seed=seed, scores=scores, pairs=pairs, equivalence_bound=equivalence_bound)
    if as_json:
        print_json(result.payload())
        return
    from psychometrics.cli.terminal import print_validity

    print_validity(result)


def register(app: typer.Typer) -> None:
    """Add the behaviour commands to the main app."""
    app.add_typer(tasks_app, name="tasks")
    app.command()(behave)
    app.command()(validity)
