"""The ``psytest`` command line.

Commands are thin: they parse options, call the library and print. Anything heavy is imported inside
the command that needs it, so ``psytest --help`` and ``psytest --version`` start instantly. Errors the
user can fix (:class:`~psychometrics.errors.PsytestError`, and click's usage errors) are printed as one
line on stderr with exit code 2 and no traceback. A run in which requests failed (after retries) exits
with code 1 and one line saying how many and why; re-running the command sends just those again. Any
other exception is a bug: one line, ``internal error``, exit code 70 (``PSYTEST_DEBUG=1`` re-raises it).
Everything printed goes through :mod:`psychometrics.cli.terminal`, which escapes control characters.
Commands that only read a run open its store read-only (:func:`psychometrics.run.store.read_only_stores`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from psychometrics import __version__
from psychometrics.errors import PsytestError
from psychometrics.cli.terminal import echo, echo_error, print_json

app = typer.Typer(
    name="psytest",
    help="Measure the personality an LLM presents, with the rigour of a psychometrics lab.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
inventories_app = typer.Typer(
    help="List, show and validate personality inventories.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(inventories_app, name="inventories")


def _version_callback(value: bool) -> None:
    if value:
        echo(f"psytest {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Measure the personality an LLM presents, with the rigour of a psychometrics lab."""


@contextmanager
def _reading_only():
    """Stores opened inside are read-only: a command that only reads never creates or changes one."""
    from psychometrics.run.store import read_only_stores

    with read_only_stores():
        yield


def finish_run(stats, noun: str) -> None:
    """After a run's summary: a note when timed-out requests were sent again (possibly billed twice),
    and exit code 1 with one line when requests failed."""
    if stats.timeouts_retried:
        echo(f"psytest: note: {stats.timeouts_retried} timed-out {noun} were sent again; the server may "
                   "have received, and billed, both", err=True)
    if stats.failed:
        reason = " ".join((stats.first_error or "unknown error").split())
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        echo(f"psytest: {stats.failed} of {stats.sent} {noun} failed ({reason}); re-run the same command "
                   "to retry them", err=True)
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------------
# inventories


@inventories_app.command("list")
def inventories_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the shipped inventories."""
    from psychometrics.inventories.library import load_all_shipped

    summaries = [inv.summary() for inv in load_all_shipped()]
    if as_json:
        print_json(summaries)
        return
    from rich.table import Table

    from psychometrics.cli.terminal import cell, console

    table = Table(title="Shipped inventories")
    table.add_column("id", no_wrap=True)
    for column in ("items", "reversed"):
        table.add_column(column, justify="right")
    table.add_column("scales")
    for column in ("facets", "paraphrased", "norm groups"):
        table.add_column(column, justify="right")
    table.add_column("name")
    for s in summaries:
        table.add_row(*(cell(v) for v in (s["id"], s["items"], s["reverse_keyed"], " ".join(s["scales"]), s["facets"],
                                           s["paraphrased_items"], s["norm_groups"], s["name"])))
    console().print(table)


@inventories_app.command("show")
def inventories_show(
    name: Annotated[str, typer.Argument(help="A shipped inventory name (see 'list') or a path to a YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show an inventory: metadata, scales, facets, norms and every item."""
    from psychometrics.inventories.library import resolve_inventory

    inv = resolve_inventory(name)
    if as_json:
        payload = {
            **{k: v for k, v in inv.summary().items() if k not in ("scales",)},
            "description": inv.description,
            "citation": inv.citation,
            "url": inv.url,
            "instructions": inv.instructions,
            "stem": inv.stem,
            "content_hash": inv.content_hash,
            "response_scale": inv.response_scale.model_dump(mode="json"),
            "scales": [s.model_dump(mode="json") for s in inv.scales],
            "facets": [f.model_dump(mode="json") for f in inv.facets],
            "norms": [n.model_dump(mode="json", exclude_none=True) for n in inv.norms],
            "items": inv.item_records(),
        }
        print_json(payload)
        return
    from rich.table import Table
    from rich.text import Text

    from psychometrics.cli.terminal import cell, console

    out = console()  # text from the file is shown as written (escaped), never as rich markup
    out.print(Text.assemble(cell(inv.name, "bold"), cell(f" ({inv.id}, version {inv.version})")))
    if inv.description:
        out.print(inv.description)
    out.print(f"Citation: {inv.citation}")
    out.print(f"Licence: {inv.licence}")
    if inv.stem:
        out.print(f"Stem: {inv.stem}")
    rs = inv.response_scale
    out.print("Responses: " + ", ".join(f"{v} {rs.labels[v]}" for v in rs.values))
    scales = Table(title="Scales")
    for column in ("id", "name", "trait", "scoring", "items", "reversed"):
        scales.add_column(column)
    for s in inv.scales:
        reversed_count = sum(inv.item_by_id[i].reverse_keyed for i in s.items)
        trait = (("-" if s.trait_sign < 0 else "") + s.trait) if s.trait else ""
        scales.add_row(*(cell(v) for v in (s.id, s.name, trait, s.scoring, len(s.items), reversed_count)))
    out.print(scales)
    if inv.norms:
        out.print(f"Norms: {len(inv.norms)} group(s): " + "; ".join(n.group for n in inv.norms))
    items = Table(title="Items")
    for column in ("id", "text", "scale", "facet", "R", "paraphrases"):
        items.add_column(column)
    for record in inv.item_records():
        items.add_row(*(cell(v) for v in (record["id"], record["text"], record["scale"] or "", record["facet"] or "",
                                          "R" if record["reverse_keyed"] else "", len(record["paraphrases"]))))
    out.print(items)


@inventories_app.command("validate")
def inventories_validate(
    paths: Annotated[list[Path], typer.Argument(help="One or more inventory YAML files.")],
) -> None:
    """Validate inventory files: structure, keys, scale membership, response range, norms."""
    from psychometrics.inventories.model import load_inventory

    failed = 0
    for path in paths:
        try:
            inv = load_inventory(path)
        except PsytestError as exc:
            failed += 1
            echo_error(exc)
            continue
        echo(
            f"{path}: ok ({inv.id}: {len(inv.items)} items, "
            f"{sum(i.reverse_keyed for i in inv.items)} reverse-keyed, {len(inv.scales)} scales, "
            f"{len(inv.facets)} facets)"
        )
    if failed:
        raise typer.Exit(2)


# ---------------------------------------------------------------------------------------------------
# templates and personas

personas_app = typer.Typer(help="List and show persona sets.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(personas_app, name="personas")


@app.command()
def templates(
    inventory: Annotated[str, typer.Option("--inventory", "-i", help="Inventory used for the example.")] = "mini-ipip",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the instruction templates, each with the prompt it renders for a first item."""
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.design.prompts import TEMPLATES, render_item

    inv = resolve_inventory(inventory)
    rendered = {
        template.id: render_item(inv, inv.items[0], template=template) for template in TEMPLATES.values()
    }
    if as_json:
        print_json([
            {"id": tid, "label_style": TEMPLATES[tid].label_style,
             "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
             "choices": list(prompt.choices)}
            for tid, prompt in rendered.items()
        ])
        return
    for tid, prompt in rendered.items():
        echo(f"== {tid} (labels: {TEMPLATES[tid].label_style})")
        for message in prompt.messages:
            echo(f"[{message.role}]\n{message.content}")
        echo("")


@personas_app.command("list")
def personas_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """List the shipped persona sets."""
    from psychometrics.design.personas import resolve_persona_set, shipped_persona_sets

    sets = [resolve_persona_set(name) for name in shipped_persona_sets()]
    rows = [{"id": s.id, "name": s.name, "personas": len(s.personas), "description": s.description} for s in sets]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        echo(f"{row['id']}: {row['personas']} personas. {row['description']}")


@personas_app.command("show")
def personas_show(
    name: Annotated[str, typer.Argument(help="A shipped persona set or a path to a YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show every persona of a set with its trait targets."""
    from psychometrics.design.personas import resolve_persona_set

    persona_set = resolve_persona_set(name)
    if as_json:
        print_json(persona_set.model_dump(mode="json"))
        return
    echo(f"{persona_set.name} ({persona_set.id}): {len(persona_set.personas)} personas")
    for persona in persona_set.personas:
        targets = ", ".join(f"{k}={v:+d}" for k, v in persona.targets.items()) or "no targets"
        echo(f"- {persona.id} [{targets}]: {persona.text}")


# ---------------------------------------------------------------------------------------------------
# administer


def _csv_option(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


@app.command()
def administer(
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m",
            help="local/qwen2.5-0.5b, local/smollm2-135m, gguf:PATH, a litellm model (openai/gpt-4o-mini, ...), "
            "or a simulated respondent (sim/extraversion=1.5,seed=2).",
        ),
    ] = "local/qwen2.5-0.5b",
    api_base: Annotated[
        Optional[str], typer.Option(help="Base URL of an OpenAI-compatible server (vLLM, llama.cpp, ...).")
    ] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, max=256, help="Local models: generation threads.")] = None,
    threads_batch: Annotated[
        Optional[int], typer.Option(min=1, max=256, help="Local models: prompt-evaluation threads.")
    ] = None,
    inventory: Annotated[
        list[str], typer.Option("--inventory", "-i", help="Inventory name or YAML path; repeat for several.")
    ] = ["mini-ipip"],  # noqa: B006 - typer needs a list default
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default runs/<time>-<model>).")] = None,
    design_file: Annotated[Optional[Path], typer.Option("--design", help="Design YAML; options given here override it.")] = None,
    option_orders: Annotated[
        Optional[str],
        typer.Option(help="Comma list of: original, reversed, rotations, latin-square, random:N."),
    ] = None,
    templates: Annotated[Optional[str], typer.Option(help="Comma list of instruction templates (see 'psytest templates').")] = None,
    paraphrases: Annotated[Optional[str], typer.Option(help="none: item text only; all: also every paraphrase.")] = None,
    samples: Annotated[Optional[int], typer.Option(help="Repeated samples per design cell.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature (0 = greedy).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Run seed; per-request seeds are derived from it.")] = None,
    mode: Annotated[Optional[str], typer.Option(help="Answer mode: text, probs or both.")] = None,
    personas: Annotated[
        Optional[str], typer.Option(help="Persona set: trait-shaping, neutral-biographies, or a YAML path.")
    ] = None,
    persona_ids: Annotated[Optional[str], typer.Option(help="Comma list of persona ids to use from the set.")] = None,
    items_per_request: Annotated[Optional[int], typer.Option(help="Items asked together in one request.")] = None,
    item_orders: Annotated[
        Optional[int], typer.Option(help="Seeded shuffled item orders (with several items per request).")
    ] = None,
    invalid: Annotated[
        Optional[str], typer.Option(help="Invalid text replies: missing, drop (listwise) or reask:N.")
    ] = None,
    max_retries: Annotated[int, typer.Option(min=0, max=100, help="Retries of rate limits, 5xx and timeouts.")] = 5,
    retry_base: Annotated[
        float, typer.Option(min=0.0, max=600.0, help="Seconds before the first retry; doubles each retry (plus jitter).")
    ] = 1.0,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Requests in flight at once.")] = 4,
    timeout: Annotated[Optional[float], typer.Option(min=0.001, help="Seconds before a request counts as failed.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the number of requests and tokens; send nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary for scripts.")] = False,
) -> None:
    """Administer inventories to a model under a factorial design; store every answer; score."""
    from psychometrics.design.plan import Design, design_from_mapping, load_design
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models import resolve_model

    base = load_design(design_file).model_dump() if design_file else Design().model_dump()
    overrides = {
        "option_orders": _csv_option(option_orders),
        "templates": _csv_option(templates),
        "paraphrases": paraphrases,
        "samples": samples,
        "temperature": temperature,
        "seed": seed,
        "modes": {"both": ["text", "probs"]}.get(mode, [mode]) if mode else None,
        "personas": personas,
        "persona_ids": _csv_option(persona_ids),
        "items_per_request": items_per_request,
        "item_orders": item_orders,
        "invalid": invalid,
    }
    base.update({key: value for key, value in overrides.items() if value is not None})
    design = design_from_mapping(base, "design")
    inventories = [resolve_inventory(name) for name in inventory]
    sources = {inv.id: (str(Path(name).resolve()) if name.endswith((".yaml", ".yml")) or "/" in name else name)
               for inv, name in zip(inventories, inventory)}
    if len({inv.id for inv in inventories}) != len(inventories):
        raise PsytestError("--inventory: the same inventory is given twice; give each once")
    persona_set = None
    if design.personas:
        from psychometrics.design.personas import resolve_persona_set

        persona_set = resolve_persona_set(design.personas)
        persona_set.select(design.persona_ids)
    backend = resolve_model(model, api_base=api_base, timeout_s=timeout, threads=threads, threads_batch=threads_batch)
    if dry_run:
        from psychometrics.run.directory import estimate_requests

        estimate = estimate_requests(backend, inventories, design, persona_set, out)
        if as_json:
            print_json(estimate)
        else:
            echo(
                f"dry run: {estimate['requests_planned']} requests planned, {estimate['already_answered']} "
                f"already answered, {estimate['to_send']} to send; about {estimate['estimated_input_tokens']:,} "
                f"input tokens and at most {estimate['estimated_output_tokens_max']:,} output tokens. "
                "Nothing was sent."
            )
        return
    from psychometrics.engine.send import RetryPolicy
    from psychometrics.run.directory import administer as run_administer
    from psychometrics.run.directory import default_run_dir

    run_dir = out or default_run_dir(model)
    from psychometrics.cli.terminal import RunProgress, print_run_summary

    progress = None if as_json else RunProgress()
    try:
        result = run_administer(
            backend, inventories, design, run_dir, persona_set=persona_set, inventory_sources=sources,
            concurrency=concurrency,
            timeout_s=timeout, retry=RetryPolicy(max_retries=max_retries, base_s=retry_base),
            on_start=progress.start if progress else None, on_answer=progress.advance if progress else None,
        )
    finally:
        if progress:
            progress.stop()
    from psychometrics.analysis.tables import analyze_run
    from psychometrics.run.outputs import DerivedSet

    inputs: dict = {}
    tables = analyze_run(run_dir, inputs=inputs)
    with DerivedSet(run_dir / "analysis", "analysis", inputs=inputs, options=_analysis_options(None, True, None),
                    owned=True) as analysis:
        analysis.write_tables(tables)
    summary = tables["score_summary"]
    summary = summary[summary["kind"] == "scale"]
    stats = result.stats
    payload = {
        "run_dir": str(run_dir),
        "analysis_dir": str(run_dir / "analysis"),
        "model": model,
        "requests_planned": stats.planned,
        "already_answered": stats.already_answered,
        "sent": stats.sent,
        "failed": stats.failed,
        "retries": stats.retries,
        "timeouts_retried": stats.timeouts_retried,
        "reasks": stats.reasks,
        "reasks_failed": stats.reasks_failed,
        "claimed_elsewhere": stats.claimed_elsewhere,
        "outcomes": stats.outcomes,
        "items_per_second": round(stats.per_second, 3),
        "scales": json.loads(summary.to_json(orient="records")),
    }
    if as_json:
        print_json(payload)
    else:
        print_run_summary(payload, summary)
    finish_run(stats, "requests")


# ---------------------------------------------------------------------------------------------------
# score and analyze


@app.command()
def score(
    run: Annotated[Path, typer.Argument(help="A run directory (with manifest.json and responses.sqlite).")],
    by: Annotated[
        Optional[str],
        typer.Option(help="Factors that define a respondent (default: every design factor), e.g. persona,sample."),
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the CSV tables (default RUN/analysis).")] = None,
    reference_loadings: Annotated[
        Optional[Path], typer.Option(help="CSV of reference loadings (items x factors) for Tucker congruence.")
    ] = None,
    structure: Annotated[bool, typer.Option(help="Also run EFA and CFA (slower on large inventories).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables as JSON for scripts.")] = False,
) -> None:
    """Score a run and compute every derived table: norms, reliability, sensitivity, structure, MTMM."""
    from psychometrics.analysis.tables import analyze_run
    from psychometrics.run.outputs import DerivedSet, claim_directory

    from psychometrics.run.directory import read_manifest

    with _reading_only():
        read_manifest(run)  # a behaviour run, or no run at all, is named before any output is considered
    out_dir = out or run / "analysis"
    claim_directory(out_dir, "analysis", owned=_is_default(out_dir, run / "analysis"), create=False)
    inputs: dict = {}
    with _reading_only():
        tables = analyze_run(run, _csv_option(by), structure=structure,
                             reference_loadings=_read_loadings(reference_loadings), inputs=inputs)
    with DerivedSet(out_dir, "analysis", inputs=inputs, owned=_is_default(out_dir, run / "analysis"),
                    options=_analysis_options(_csv_option(by), structure, reference_loadings)) as analysis:
        written = analysis.write_tables(tables)
    _report_tables(tables, written, as_json)


def _is_default(directory: Path, default: Path) -> bool:
    """Whether ``directory`` is the default place inside a run directory (psytest's even without a record)."""
    try:
        return directory.resolve() == default.resolve()
    except OSError:
        return False


def _analysis_options(by: list[str] | None, structure: bool, reference_loadings: Path | None) -> dict:
    """The options that shape a run's tables, as the provenance record keeps them (reproduce reads them)."""
    from psychometrics.run.outputs import file_sha256

    return {"by": by, "structure": structure,
            "reference_loadings_sha256": file_sha256(reference_loadings) if reference_loadings else None}


@app.command()
def analyze(
    data: Annotated[Path, typer.Argument(help="CSV of item responses: one row per respondent, one column per item.")],
    keys: Annotated[Optional[Path], typer.Option(help="Keys YAML: response_range and scales (-item = reversed).")] = None,
    inventory: Annotated[
        Optional[str], typer.Option("--inventory", "-i", help="Or an inventory whose item ids are the columns.")
    ] = None,
    reference_loadings: Annotated[
        Optional[Path], typer.Option(help="CSV of reference loadings (items x factors) for Tucker congruence.")
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the CSV tables (default DATA-analysis/).")] = None,
    structure: Annotated[bool, typer.Option(help="Also run EFA and CFA.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables as JSON for scripts.")] = False,
) -> None:
    """Analyse item data from a file (e.g. a human sample) with the same tables as a run."""
    from psychometrics.analysis.tables import analyze_item_data
    from psychometrics.inventories.item_data import inventory_from_keys, load_item_data
    from psychometrics.run.outputs import DerivedSet, file_sha256

    if (keys is None) == (inventory is None):
        raise PsytestError("give exactly one of --keys KEYS.yaml or --inventory NAME")
    if keys is not None:
        inv = inventory_from_keys(keys)
    else:
        from psychometrics.inventories.library import resolve_inventory

        inv = resolve_inventory(inventory)
    out_dir = out or data.with_name(f"{data.stem}-analysis")
    from psychometrics.run.outputs import claim_directory

    claim_directory(out_dir, "item-analysis", create=False)
    matrix = load_item_data(data, inv)
    tables = analyze_item_data(matrix, inv, structure=structure, reference_loadings=_read_loadings(reference_loadings))
    inputs = {"data_sha256": file_sha256(data), "inventory": {"id": inv.id, "content_hash": inv.content_hash}}
    with DerivedSet(out_dir, "item-analysis", inputs=inputs,
                    options=_analysis_options(None, structure, reference_loadings)) as analysis:
        written = analysis.write_tables(tables)
    _report_tables(tables, written, as_json)


def _read_loadings(path: Path | None):
    """A reference loading matrix: first column the item ids, one column per factor."""
    if path is None:
        return None
    import pandas as pd

    from psychometrics.limits import JSON_BYTES, check_regular_file
    import csv

    try:
        check_regular_file(path, JSON_BYTES, "CSV of loadings")
        frame = pd.read_csv(path, index_col=0)
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = [name.strip() for name in next(csv.reader(handle), [])]
    except (OSError, ValueError, csv.Error) as exc:
        raise PsytestError(f"--reference-loadings {path}: cannot read ({exc})") from None
    repeated = next((n for i, n in enumerate(header) if n and n in header[:i]), None)
    if repeated is None and frame.index.has_duplicates:
        repeated = str(frame.index[frame.index.duplicated()][0])
    if repeated is not None:  # pandas would rename a repeated column and keep both rows of an item
        raise PsytestError(f"--reference-loadings {path}: '{repeated}' appears twice; give each item one row and "
                           "each factor one column")
    if frame.empty or not all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes):
        raise PsytestError(f"--reference-loadings {path}: expected item ids then numeric loadings, one column per factor")
    return frame


def _report_tables(tables, written, as_json: bool) -> None:
    if as_json:
        print_json({name: json.loads(table.to_json(orient="records")) for name, table in tables.items()})
        return
    from psychometrics.cli.terminal import print_analysis

    print_analysis(tables, written)


# ---------------------------------------------------------------------------------------------------
# reports, comparisons, drift checks, reproduction


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[Optional[Path], typer.Option(help="Where to write the report (default RUN/report).")] = None,
    behavior: Annotated[
        Optional[list[Path]],
        typer.Option("--behavior", "-b", help="Behaviour run(s) of the same model(s) and personas: adds the "
                     "self-report vs behaviour section."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON summary for scripts.")] = False,
) -> None:
    """Write a self-contained HTML report with figures, its CSV tables and a JSON summary."""
    from psychometrics.report import build_report

    with _reading_only():
        paths = build_report(run, out, behavior_runs=behavior or None)
    if as_json:
        from psychometrics.cli.terminal import print_json_text

        print_json_text(paths.summary.read_text(encoding="utf-8"))
        return
    echo(f"report: {paths.html}\nsummary: {paths.summary}\n{len(paths.csvs)} CSV tables in {paths.out_dir}")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories; the first is the reference.")],
    out: Annotated[Optional[Path], typer.Option(help="Also write differences.csv and compare.html here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Differences per scale between runs, with CIs, effect sizes, and whether they exceed run noise."""
    from psychometrics.analysis.compare import as_json_records, compare_runs

    if len(runs) < 2:
        raise PsytestError("compare needs at least two run directories")
    if out is not None:
        from psychometrics.run.outputs import claim_directory

        claim_directory(out, "comparison", create=False)  # refused before the work, not after
    with _reading_only():
        result = compare_runs(runs)
    if out is not None:
        _write_comparison(result, out, runs)
    if as_json:
        print_json({"verdict": result.verdict, "differences": as_json_records(result.differences),
                     "notes": result.notes})
        return
    echo(result.summary())


def _write_comparison(result, out: Path, runs: list[Path]) -> None:
    from psychometrics.run.outputs import DerivedSet
    from psychometrics.run.directory import run_inputs

    with _reading_only():
        inputs = {"runs": [{"run": str(run), **run_inputs(run)} for run in runs]}
    with DerivedSet(out, "comparison", inputs=inputs) as comparison:
        comparison.write_csv("differences.csv", result.differences)
        comparison.write_csv("statistics.csv", result.statistics)
        comparison.write_text("compare.html", _comparison_page(result))


def _comparison_page(result) -> str:
    import html

    table = result.differences.to_html(index=False, escape=True, na_rep="-", float_format=lambda v: f"{v:.3f}")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>psytest comparison</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}</style></head><body>"
        f"<h1>Run comparison</h1><p>{html.escape(result.verdict)}</p>"
        f"<p>Runs: {html.escape(', '.join(result.runs))}</p>{table}"
        "<p>Every number here is in differences.csv.</p></body></html>"
    )
    return page


@app.command()
def baseline(
    run: Annotated[Path, typer.Argument(help="A run directory to take as the baseline.")],
    out: Annotated[Optional[Path], typer.Option(help="Baseline file to write (default RUN/baseline.json).")] = None,
) -> None:
    """Write a baseline file of the run's scale scores, for 'psytest check'."""
    from psychometrics.analysis.baseline import write_baseline

    path = out or run / "baseline.json"
    with _reading_only():
        baseline_data = write_baseline(run, path)
    count = len(baseline_data.get("scales", [])) if isinstance(baseline_data, dict) else 0
    echo(f"baseline written to {path}" + (f" ({count} scales)" if count else ""))


@app.command()
def check(
    run: Annotated[Path, typer.Argument(help="The run to check.")],
    baseline_file: Annotated[Path, typer.Option("--baseline", help="A file written by 'psytest baseline'.")],
    tolerance: Annotated[Optional[float], typer.Option(min=0.0, help="Allowed difference (default 0.5 SD units).")] = None,
    unit: Annotated[str, typer.Option(help="Tolerance unit: sd (baseline SD over cells) or raw (scale points).")] = "sd",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Exit 0 when every scale is within tolerance of the baseline, 1 otherwise (a CI drift gate)."""
    from psychometrics.analysis.baseline import DEFAULT_TOLERANCE, check_run, load_baseline

    if unit not in ("sd", "raw"):
        raise PsytestError(f"--unit must be sd or raw, got {unit!r}")
    with _reading_only():
        result = check_run(run, load_baseline(baseline_file), DEFAULT_TOLERANCE if tolerance is None else tolerance,
                           unit)
    if as_json:
        from psychometrics.analysis.compare import as_json_records

        print_json({"passed": result.passed, "verdict": result.verdict, "rows": as_json_records(result.rows),
                     "notes": result.notes})
    else:
        echo(result.summary())
    if not result.passed:
        raise typer.Exit(1)


@app.command()
def reproduce(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    rerun: Annotated[bool, typer.Option("--rerun", help="Also re-send every request (deterministic backends only).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Recompute every derived file from the store and verify it matches; exit 1 on any difference."""
    from psychometrics.analysis.reproduce import reproduce as run_reproduce

    store = run / "responses.sqlite"
    if store.exists():  # checked here: reproduce reads a copy, whose name would mean nothing to the user
        from psychometrics.run.store import RunStore

        with RunStore(store, read_only=True) as opened:
            opened.check_contents()
    with _reading_only():
        result = run_reproduce(run, rerun=rerun)
    if as_json:
        from psychometrics.analysis.compare import as_json_records

        print_json({"passed": result.passed, "verdict": result.verdict, "files_checked": result.files_checked,
                     "mismatches": as_json_records(result.mismatches), "notes": result.notes})
    else:
        echo(result.summary())
    if not result.passed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------------
# behavioural tasks (tasks, behave, validity)

from psychometrics.cli.behavior import register as _register_behavior  # noqa: E402 - after app is built

_register_behavior(app)

from psychometrics.cli.export import register as _register_export  # noqa: E402

_register_export(app)


# ---------------------------------------------------------------------------------------------------
# entry point


def _click_exceptions():
    """click's exception classes as typer uses them (typer >= 0.29 vendors click as ``typer._click``)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older typer depends on click itself
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become one line on stderr and exit code 2."""
    import warnings

    from psychometrics.cli.terminal import show_warning

    warnings.showwarning = show_warning  # a warning's text goes through the sanitiser like everything else
    click_exceptions = _click_exceptions()
    try:
        result = app(args=argv, prog_name="psytest", standalone_mode=False)
    except PsytestError as exc:
        echo_error(exc)
        sys.exit(2)
    except click_exceptions.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "psytest"
        echo_error(f"{exc.format_message()} (see '{command} --help')")
        sys.exit(2)
    except typer.Abort:  # typer >= 0.29 has no Abort in its vendored click exceptions
        echo("psytest: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # an unwritable --out, a full disk, a file where a directory should be
        where = f"{exc.filename}: " if exc.filename else ""
        echo_error(f"{where}{exc.strerror or exc}; check the path and its permissions")
        sys.exit(2)
    except sqlite3.Error as exc:  # a store the library did not name: still one line
        echo_error(f"a run's SQLite store could not be read or written ({type(exc).__name__}: {exc}); check that "
                   "it is a store psytest wrote and that it is writable")
        sys.exit(2)
    except KeyboardInterrupt:
        echo("psytest: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug, or input nothing above foresaw: still one line, no traceback
        if os.environ.get("PSYTEST_DEBUG"):
            raise
        echo_error(f"internal error ({type(exc).__name__}: {exc}); this is a bug in psytest: please report it with "
                   "the command that caused it (PSYTEST_DEBUG=1 shows where it happened)")
        sys.exit(70)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
