"""The behaviour commands of ``psytest``: ``tasks list|show|validate``, ``behave`` and ``validity``.

Kept apart from :mod:`psychometrics.cli` so each file stays small; :func:`register` adds them to the
main app. Like every command, they import heavy modules only when they run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from psychometrics import limits
from psychometrics.errors import PsytestError
from psychometrics.cli.terminal import echo, print_json

tasks_app = typer.Typer(help="List, show and validate behavioural tasks.", no_args_is_help=True, rich_markup_mode=None)


def _csv(value: Optional[str]) -> Optional[list[str]]:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


@tasks_app.command("list")
def tasks_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """List the shipped behavioural tasks with their trait, expected direction and scoring rule."""
    from psychometrics.behavior.task import resolve_tasks

    rows = [
        {"id": t.id, "trait": t.trait, "direction": t.direction, "kind": t.kind, "variants": len(t.variants),
         "measure": t.measure}
        for t in sorted(resolve_tasks("all"), key=lambda t: (t.trait, t.id))
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        sign = "+" if row["direction"] > 0 else "-"
        echo(f"{row['id']}: {row['trait']} ({sign}), {row['kind']}, {row['variants']} variants. {row['measure']}")


@tasks_app.command("show")
def tasks_show(
    name: Annotated[str, typer.Argument(help="A shipped task or a path to a task file.")],
    variant: Annotated[Optional[str], typer.Option(help="Show this variant as the model sees it.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the option order shown.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show a task: what it measures, its source, and a variant rendered as the model receives it."""
    import numpy as np

    from psychometrics.behavior.kinds import get_kind
    from psychometrics.behavior.task import resolve_tasks

    tasks = resolve_tasks(name)
    if len(tasks) != 1:
        raise PsytestError(f"tasks show {name}: give one task (a name or a file), not a trait or 'all'")
    task = tasks[0]
    chosen = task.variants[0]
    if variant is not None:
        try:
            chosen = task.variant(variant)
        except KeyError:
            raise PsytestError(
                f"--variant {variant}: task '{task.id}' has variants {', '.join(v.id for v in task.variants)}"
            ) from None
    rendered = get_kind(task.kind).render(task, chosen, np.random.default_rng(seed))
    if as_json:
        print_json({**task.model_dump(mode="json"), "rendered": {"variant": chosen.id, "turns": list(rendered.turns)}})
        return
    sign = "higher" if task.direction > 0 else "lower"
    echo(f"{task.name} ({task.id}): {task.trait}, {sign} scores expected from higher levels; kind {task.kind}")
    echo(f"Measure: {task.measure}")
    echo(f"Source: {task.citation}")
    echo(f"Variants: {len(task.variants)}. Variant {chosen.id} as the model sees it:")
    for index, turn in enumerate(rendered.turns, 1):
        echo(f"--- turn {index} ---\n{turn}")


@tasks_app.command("validate")
def tasks_validate(
    paths: Annotated[list[Path], typer.Argument(help="Task files to check.")],
) -> None:
    """Check task files; print one line per file, and exit 2 at the first invalid one."""
    from psychometrics.behavior.task import load_task

    for path in paths:
        if not path.is_file():
            raise PsytestError(f"{path}: no such file; check the path")
        task = load_task(path)
        echo(f"{path}: ok ({task.id}, {task.kind}, {len(task.variants)} variants)")


def behave(
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Any model 'psytest administer' takes (local/..., gguf:PATH, litellm, sim/...)."),
    ] = "local/qwen2.5-0.5b",
    tasks: Annotated[str, typer.Option(help="all, task names, trait names or task files (comma list).")] = "all",
    personas: Annotated[
        Optional[str], typer.Option(help="Persona set: trait-shaping, neutral-biographies, or a YAML path.")
    ] = None,
    persona_ids: Annotated[Optional[str], typer.Option(help="Comma list of persona ids to use from the set.")] = None,
    variants: Annotated[
        Optional[int], typer.Option(min=1, max=limits.VARIANTS, help="Use the first N variants of each task (default: all).")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, max=limits.SAMPLES, help="Repeated samples per variant and persona.")] = 1,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="Sampling temperature (0 = greedy).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Run seed: option orders and per-turn seeds derive from it.")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default runs/<time>-<model>-behavior).")] = None,
    api_base: Annotated[Optional[str], typer.Option(help="Base URL of an OpenAI-compatible server.")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, max=256, help="Local models: generation threads.")] = None,
    threads_batch: Annotated[
        Optional[int], typer.Option(min=1, max=256, help="Local models: prompt-evaluation threads.")
    ] = None,
    max_retries: Annotated[int, typer.Option(min=0, max=100, help="Retries of rate limits, 5xx and timeouts.")] = 5,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Conversations in flight at once.")] = 4,
    timeout: Annotated[Optional[float], typer.Option(min=0.001, help="Seconds before a call counts as failed.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be sent; send nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary for scripts.")] = False,
) -> None:
    """Run behavioural tasks on a model (a session separate from questionnaires); store and score every reply."""
    from psychometrics.behavior.runner import BehaviorDesign
    from psychometrics.behavior.task import resolve_tasks
    from psychometrics.models import resolve_model

    chosen = resolve_tasks(tasks)
    from psychometrics.behavior.task import TASK_DIR

    # Shipped tasks by name, users' files by absolute path: where analysis finds them again.
    sources = {t.id: t.id if Path(t.source).resolve().parent == TASK_DIR else str(Path(t.source).resolve()) for t in chosen}
    design = BehaviorDesign(samples=samples, temperature=temperature, seed=seed, personas=personas,
                            persona_ids=tuple(_csv(persona_ids)) if persona_ids else None, variants=variants)
    persona_set = None
    if personas:
        from psychometrics.design.personas import resolve_persona_set

        persona_set = resolve_persona_set(personas)
        persona_set.select(list(design.persona_ids) if design.persona_ids else None)
    elif persona_ids:
        raise PsytestError("--persona-ids: give --personas too (the set the ids come from)")
    backend = resolve_model(model, api_base=api_base, timeout_s=timeout, threads=threads, threads_batch=threads_batch)
    if dry_run:
        from psychometrics.behavior.runner import estimate_conversations

        backend.prepare([], persona_set)
        backend.prepare_tasks(chosen)
        estimate = estimate_conversations(chosen, design, backend, persona_set, out)
        if as_json:
            print_json(estimate)
        else:
            echo(
                f"dry run: {estimate['conversations_planned']} conversations planned, {estimate['already_answered']} "
                f"already answered, {estimate['to_send']} to send ({estimate['turns_to_send']} turns); about "
                f"{estimate['estimated_input_tokens']:,} input tokens and at most "
                f"{estimate['estimated_output_tokens_max']:,} output tokens. Nothing was sent."
            )
        return
    from psychometrics.engine.send import RetryPolicy
    from psychometrics.behavior.runner import behave as run_behave
    from psychometrics.run.directory import default_run_dir

    run_dir = out or default_run_dir(model).with_name(default_run_dir(model).name + "-behavior")
    from psychometrics.cli.terminal import RunProgress

    progress = None if as_json else RunProgress("behaving", "conversations/s")
    try:
        result = run_behave(
            backend, chosen, design, run_dir, persona_set=persona_set, task_sources=sources, concurrency=concurrency,
            timeout_s=timeout, retry=RetryPolicy(max_retries=max_retries),
            on_start=progress.start if progress else None, on_answer=progress.advance if progress else None,
        )
    finally:
        if progress:
            progress.stop()
    from psychometrics.behavior.analysis import behavior_tables
    from psychometrics.run.outputs import DerivedSet
    from psychometrics.run.owner import open_run

    finished = open_run(run_dir, expect="behavior")
    inputs = finished.inputs()
    tables = behavior_tables(finished)
    with DerivedSet(run_dir / "analysis", "behavior-analysis", inputs=inputs, owned=True) as analysis:
        analysis.write_tables(tables)
    stats = result.stats
    summary = tables["behavior_summary"]
    payload = {
        "run_dir": str(run_dir), "analysis_dir": str(run_dir / "analysis"), "model": model,
        "conversations_planned": stats.planned, "already_answered": stats.already_answered, "sent": stats.sent,
        "failed": stats.failed, "retries": stats.retries, "timeouts_retried": stats.timeouts_retried,
        "claimed_elsewhere": stats.claimed_elsewhere, "outcomes": stats.outcomes,
        "conversations_per_second": round(stats.per_second, 3),
        "tasks": json.loads(summary.to_json(orient="records")),
    }
    from psychometrics.cli import finish_run

    if as_json:
        print_json(payload)
    else:
        from psychometrics.cli.terminal import print_behavior_summary

        print_behavior_summary(payload, summary)
    finish_run(stats, "conversations")


def validity(
    selfreport: Annotated[list[Path], typer.Option("--selfreport", "-s", help="Questionnaire run directory; repeat for several.")],
    behavior: Annotated[list[Path], typer.Option("--behavior", "-b", help="Behaviour run directory; repeat for several.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for the tables and validity.html.")] = None,
    bootstrap: Annotated[int, typer.Option(min=100, max=100_000, help="Bootstrap resamples for the CIs.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the key tables as JSON.")] = False,
) -> None:
    """Does what a model says about itself predict what it does? Self-report vs behaviour across personas."""
    from psychometrics.run.store import read_only_stores
    from psychometrics.validity.tables import run_validity

    with read_only_stores():
        result = run_validity(selfreport, behavior, out, n_boot=bootstrap, seed=seed)
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
