"""``psytest administer``: options in, :func:`psychometrics.api.administer` called, summary out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from psychometrics import limits
from psychometrics.cli.common import DEFAULT_MODEL, TIMEOUT_DEFAULT, TIMEOUT_HELP, ConnectTimeout, MaxRetries, PersonaIds, Personas, Threads, ThreadsBatch, finish_run
from psychometrics.cli.terminal import print_json


def administer(
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m",
            help="local/qwen2.5-0.5b, local/smollm2-135m, gguf:PATH, a litellm model (openai/gpt-4o-mini, ...), "
            "or a simulated respondent (sim/extraversion=1.5,seed=2).",
        ),
    ] = DEFAULT_MODEL,
    api_base: Annotated[
        Optional[str], typer.Option(help="Base URL of an OpenAI-compatible server (vLLM, llama.cpp, ...).", show_default="the provider's")
    ] = None,
    threads: Threads = None,
    threads_batch: ThreadsBatch = None,
    inventory: Annotated[
        list[str], typer.Option("--inventory", "-i", help="Inventory name or YAML path; repeat for several.")
    ] = ["mini-ipip"],  # noqa: B006 - typer needs a list default
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory.", show_default="runs/<time>-<model>")] = None,
    design: Annotated[Optional[Path], typer.Option("--design", help="Design YAML; options given here override it.", show_default="none")] = None,
    option_orders: Annotated[
        Optional[str],
        typer.Option(help="Comma list of: original, reversed, rotations, latin-square, random:N.", show_default="original"),
    ] = None,
    templates: Annotated[Optional[str], typer.Option(help="Comma list of instruction templates (see 'psytest templates').", show_default="numbered")] = None,
    paraphrases: Annotated[Optional[str], typer.Option(help="none: item text only; all: also every paraphrase.", show_default="none")] = None,
    samples: Annotated[Optional[int], typer.Option(help="Repeated samples per design cell.", show_default="1")] = None,
    temperature: Annotated[
        Optional[str],
        typer.Option(help="Sampling temperature (0 = greedy), or a comma list (0,0.7,1.0): the design factor temperature.",
                     show_default="0.0"),
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Run seed; per-request seeds are derived from it.", show_default="0")] = None,
    mode: Annotated[Optional[str], typer.Option(help="Answer mode: text, probs or both.", show_default="text")] = None,
    personas: Personas = None,
    persona_ids: PersonaIds = None,
    items_per_request: Annotated[Optional[int], typer.Option(help="Items asked together in one request.", show_default="1")] = None,
    item_orders: Annotated[
        Optional[int], typer.Option(help="Seeded shuffled item orders (with several items per request).", show_default="1")
    ] = None,
    invalid: Annotated[
        Optional[str], typer.Option(help="Invalid text replies: missing, drop (listwise) or reask:N.", show_default="missing")
    ] = None,
    max_tokens: Annotated[Optional[int], typer.Option(
        min=1, max=limits.MAX_TOKENS, help="Reply limit of a text request, per item asked in it (a reasoning model needs "
                                 "hundreds).", show_default="16")] = None,
    on_truncated: Annotated[Optional[str], typer.Option(
        help="A text reply cut off at the limit: missing (outcome truncated) or reask:N (asked again with twice "
             "the tokens, up to N times).", show_default="missing")] = None,
    max_retries: MaxRetries = 5,
    retry_base: Annotated[
        float, typer.Option(min=0.0, max=600.0, help="Seconds before the first retry; doubles each retry (plus jitter).")
    ] = 1.0,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Requests in flight at once.")] = 4,
    timeout: Annotated[Optional[float], typer.Option(min=0.001, help=TIMEOUT_HELP, show_default=TIMEOUT_DEFAULT)] = None,
    connect_timeout: ConnectTimeout = None,
    batch: Annotated[bool, typer.Option("--batch", help="Send through the provider's batch API (openai/NAME incl. "
                                        "OpenAI-compatible servers, anthropic/NAME): cheaper, answers within a day; "
                                        "re-run the same command to resume polling.")] = False,
    batch_poll: Annotated[float, typer.Option(min=0.001, max=86400.0, help="With --batch: seconds between polls of "
                                              "the submitted batches (the wait grows while nothing ends, up to 10x).")] = 60.0,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="With --batch: at most this many requests per "
                                                      "batch.", show_default="the provider's limit")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the estimated cost (per model and per design factor), then the plan: each factor's levels, requests, tokens and (local models) a time estimate; send nothing.")] = False,
    prices: Annotated[Optional[Path], typer.Option("--prices", help="YAML price file (USD per 1M tokens) for models litellm's price map lacks; its entries win over the map.", show_default="litellm's price map")] = None,
    max_cost: Annotated[Optional[float], typer.Option("--max-cost", help="Refuse to start when the estimated cost of the requests to send is above this (USD) or unknown.", show_default="no limit")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary for scripts.")] = False,
    reuse: Annotated[
        Optional[list[Path]],
        typer.Option("--reuse", help="A run directory whose answers to identical requests (same request id) are copied "
                     "instead of sent; repeat for several.", show_default="none"),
    ] = None,
) -> None:
    """Administer inventories to a model under a factorial design; store every answer; score."""
    from psychometrics import api

    progress = None
    if not as_json and not dry_run:
        from psychometrics.cli.terminal import RunProgress

        progress = RunProgress()
    outcome = api.administer(
        model, api_base=api_base, threads=threads, threads_batch=threads_batch, inventory=inventory, out=out,
        design=design, option_orders=option_orders, templates=templates, paraphrases=paraphrases, samples=samples,
        temperature=temperature, seed=seed, mode=mode, personas=personas, persona_ids=persona_ids,
        items_per_request=items_per_request, item_orders=item_orders, invalid=invalid, max_tokens=max_tokens,
        on_truncated=on_truncated, max_retries=max_retries,
        retry_base=retry_base, concurrency=concurrency, timeout=timeout, connect_timeout=connect_timeout,
        dry_run=dry_run, progress=progress,
        reuse=reuse, prices=prices, max_cost=max_cost, on_cost=None if as_json else _print_cost_line,
        batch=batch, batch_poll=batch_poll, batch_size=batch_size,
    )
    if dry_run:
        if as_json:
            print_json(outcome)
        else:
            from psychometrics.cli.terminal import print_plan

            print_plan(outcome)
        return
    if as_json:
        print_json(outcome.as_dict())
    else:
        from psychometrics.cli.terminal import print_run_summary

        print_run_summary(outcome.as_dict(), outcome.summary, outcome.verdict)
        if hasattr(outcome.stats, "batch_summary"):
            from psychometrics.cli.terminal import echo

            counts = outcome.stats.batch_summary()
            echo(f"batch: {counts['requests_submitted']:,} requests submitted in {counts['batches_created']:,} new "
                 f"batch(es) ({counts['requests_resubmitted']:,} of them again, after expiring or a transient "
                 f"error); {counts['batches_resumed']:,} batch(es) of an earlier run collected")
    finish_run(outcome.stats, "requests")


def _print_cost_line(estimate: dict) -> None:
    from psychometrics.cli.terminal import print_cost_line

    print_cost_line(estimate)


def register(app: typer.Typer) -> None:
    """Add ``administer`` to the main app."""
    app.command()(administer)
