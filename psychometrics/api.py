"""psytest from Python: one function per command, with the command's options as parameters.

Every ``psytest`` command is a thin layer over a function here: it parses its options, calls the
function with the same names and defaults, and prints what comes back. So a script gets exactly what
the command line does, without a subprocess::

    import psychometrics as pm

    run = pm.administer("sim/extraversion=1,seed=7", inventory=["bfi-44"], samples=3, out="runs/demo")
    run.tables["score_summary"]            # the same tables `psytest administer` writes to runs/demo/analysis
    pm.score("runs/demo", by="persona").tables["reliability"]

Options that take a comma list on the command line (``option_orders``, ``templates``, ``by``, ...)
take the same string or a list of strings. Functions return result objects and never print; bad input
raises :class:`~psychometrics.errors.PsytestError` (a ``ValueError``) with the one-line message the
command shows. Outcomes that are not errors are results: a run with failed requests returns them
counted (``result.stats.failed``), a drift check or a reproduction says ``passed``; the command line
turns those into exit code 1.

``report``, ``validity`` and ``study`` are called as ``psychometrics.api.report`` (and so on): at the
package root those names are the subpackages :mod:`psychometrics.report`, :mod:`psychometrics.validity`
and :mod:`psychometrics.study`. Everything else is also importable from ``psychometrics`` itself.

Heavy libraries are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

from psychometrics.errors import PsytestError

if TYPE_CHECKING:  # types only: the modules behind them are imported when a function runs
    import pandas as pd

    from psychometrics.analysis.baseline import CheckResult
    from psychometrics.analysis.compare import CompareResult
    from psychometrics.analysis.reproduce import ReproduceResult
    from psychometrics.behavior.task import Task, Variant
    from psychometrics.design.personas import PersonaSet
    from psychometrics.design.prompts import RenderedPrompt
    from psychometrics.engine.pool import RunStats
    from psychometrics.inventories.model import Inventory
    from psychometrics.models.base import ModelBackend
    from psychometrics.report import ReportPaths
    from psychometrics.study.runner import StudyResult
    from psychometrics.validity.tables import ValidityResult

__all__ = [
    "administer", "behave", "score", "analyze", "report", "compare", "baseline", "check", "reproduce", "validity",
    "export", "study", "list_inventories", "get_inventory", "validate_inventory", "render_templates", "list_persona_sets",
    "get_persona_set", "list_tasks", "get_task", "render_task", "validate_task",
    "RunOutcome", "Analysis", "BaselineFile", "RenderedTemplate", "RenderedTask", "Progress",
]

PathLike = Union[str, Path]
Levels = Union[str, Sequence[str], None]  # "a,b" as on the command line, or ["a", "b"]
DEFAULT_MODEL = "local/qwen2.5-0.5b"  # psychometrics.models.DEFAULT_MODEL, written out: importing is free


class Progress(Protocol):
    """What ``administer`` and ``behave`` report while they send: ``start(total)`` once, ``advance(rows)``
    per answered request or conversation, ``stop()`` when sending ends (also on an error)."""

    def start(self, total: int) -> None: ...

    def advance(self, rows: Any) -> None: ...

    def stop(self) -> None: ...


def _stop_unfinished(progress: Optional[Progress]) -> None:
    """Stop ``progress`` after a run that ended early: ``stop(finished=False)`` where it takes it (the
    terminal's bar then shows what was done, not a full bar), else ``stop()``."""
    if progress is None:
        return
    try:
        progress.stop(finished=False)  # type: ignore[call-arg]
    except TypeError:
        progress.stop()


# ---------------------------------------------------------------------------------------------------
# results


@dataclass
class RunOutcome:
    """A finished ``administer`` or ``behave``: the send statistics and the tables written to
    ``analysis_dir``. ``stats.failed`` requests (or conversations) failed after their retries; calling
    again with the same arguments sends just those."""

    run_dir: Path
    analysis_dir: Path
    model: str
    stats: RunStats
    tables: dict[str, pd.DataFrame]
    written: list[Path]
    kind: str = "questionnaire"  # or "behavior"
    #: questionnaire runs: the verdict per inventory x mode x scale (:mod:`psychometrics.analysis.verdict`),
    #: printed first; it is not part of the analysis set (``psytest report`` writes it as ``verdict.csv``)
    verdict: Optional[pd.DataFrame] = None
    #: questionnaire runs: requests answered by copying from other runs (``--reuse``) in this call, counted
    #: in ``stats.already_answered`` too
    reused: int = 0
    #: questionnaire runs: what the stored answers cost (:func:`psychometrics.cost.actual.run_cost`)
    cost: Optional[dict] = None

    @property
    def summary(self) -> pd.DataFrame:
        """One row per scale (questionnaire) or per task (behaviour): the headline the command prints."""
        if self.kind == "behavior":
            return self.tables["behavior_summary"]
        summary = self.tables["score_summary"]
        return summary[summary["kind"] == "scale"]

    def as_dict(self) -> dict:
        """The summary ``--json`` prints: counts, outcomes, speed, and the headline rows."""
        import json

        stats = self.stats
        if self.kind == "behavior":
            return {
                "run_dir": str(self.run_dir), "analysis_dir": str(self.analysis_dir), "model": self.model,
                "conversations_planned": stats.planned, "already_answered": stats.already_answered,
                "sent": stats.sent, "failed": stats.failed, "retries": stats.retries,
                "timeouts_retried": stats.timeouts_retried, "claimed_elsewhere": stats.claimed_elsewhere,
                "outcomes": stats.outcomes, "cut_off": stats.cut_off,
                "conversations_per_second": round(stats.per_second, 3),
                "tasks": json.loads(self.summary.to_json(orient="records")),
            }
        return {
            "run_dir": str(self.run_dir), "analysis_dir": str(self.analysis_dir), "model": self.model,
            "requests_planned": stats.planned, "already_answered": stats.already_answered, "reused": self.reused,
            "sent": stats.sent,
            "failed": stats.failed, "retries": stats.retries, "timeouts_retried": stats.timeouts_retried,
            "reasks": stats.reasks, "reasks_failed": stats.reasks_failed,
            "claimed_elsewhere": stats.claimed_elsewhere, "outcomes": stats.outcomes, "cut_off": stats.cut_off,
            "items_per_second": round(stats.per_second, 3),
            **({"batch": stats.batch_summary()} if hasattr(stats, "batch_summary") else {}),
            "verdict": json.loads(self.verdict.to_json(orient="records")) if self.verdict is not None else [],
            "scales": json.loads(self.summary.to_json(orient="records")),
            "cost": self.cost,
        }


@dataclass
class Analysis:
    """The derived tables of ``score`` or ``analyze`` (name -> data frame) and the CSV files written."""

    out_dir: Path
    tables: dict[str, pd.DataFrame]
    written: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Every table as a list of records (what ``--json`` prints)."""
        import json

        return {name: json.loads(table.to_json(orient="records")) for name, table in self.tables.items()}


@dataclass
class BaselineFile:
    """A baseline written by :func:`baseline`: where, and what it holds."""

    path: Path
    data: dict

    @property
    def scales(self) -> int:
        scales = self.data.get("scales", []) if isinstance(self.data, dict) else []
        return len(scales)

    @property
    def warnings(self) -> list[str]:
        """One-line warnings recorded in the file (scales without run-to-run spread)."""
        return list(self.data.get("warnings") or []) if isinstance(self.data, dict) else []


@dataclass
class RenderedTemplate:
    """An instruction template and the prompt it renders for an inventory's first item."""

    id: str
    label_style: str
    prompt: RenderedPrompt


@dataclass
class RenderedTask:
    """A behavioural task and one variant as the model receives it (options in a seeded order)."""

    task: Task
    variant: Variant
    turns: list[str]


# ---------------------------------------------------------------------------------------------------
# option handling shared by the commands


def _levels(value: Levels) -> list[str] | None:
    """A comma list as the command line gives it ("a, b"), or a sequence, as a list; None when not given."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()] if value else None
    return None if value is None else [str(v) for v in value]


def _temperatures(value: Union[float, str, Sequence[float], None]) -> Union[float, list, None]:
    """``--temperature``: one number, or a comma list ("0,0.7,1") as numbers; None when not given."""
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
        numbers = []
        for part in parts:
            try:
                numbers.append(float(part))
            except ValueError:
                raise PsytestError(f"--temperature: {part[:40]!r} is not a number; give one temperature or a comma "
                                   "list such as 0,0.7,1.0") from None
        return numbers[0] if len(numbers) == 1 else numbers
    return list(value)


def _reuse_dirs(value: Union[PathLike, Sequence[PathLike], None]) -> list[Path]:
    """``--reuse``: one run directory or several, as paths."""
    if value is None:
        return []
    return [Path(value)] if isinstance(value, (str, Path)) else [Path(v) for v in value]


def _names(value: Union[PathLike, Sequence[PathLike]]) -> list[str]:
    """One name or path, or several, as strings (``--inventory`` may be repeated)."""
    return [str(value)] if isinstance(value, (str, Path)) else [str(v) for v in value]


def _path(value: Optional[PathLike]) -> Optional[Path]:
    return None if value is None else Path(value)


@contextmanager
def _reading_only() -> Iterator[None]:
    """Stores opened inside are read-only: an operation that only reads never creates or changes one."""
    from psychometrics.run.store import read_only_stores

    with read_only_stores():
        yield


def _is_default(directory: Path, default: Path) -> bool:
    """Whether ``directory`` is the default place inside a run directory (psytest's even without a record)."""
    try:
        return directory.resolve() == default.resolve()
    except OSError:
        return False


def _analysis_options(by: list[str] | None, structure: bool, reference_loadings: Optional[Path]) -> dict:
    """The options that shape a run's tables, as the provenance record keeps them (reproduce reads them)."""
    from psychometrics.run.outputs import file_sha256

    return {"by": by, "structure": structure,
            "reference_loadings_sha256": file_sha256(reference_loadings) if reference_loadings else None}


def _backend(model: Union[str, ModelBackend], api_base, timeout, threads, threads_batch, inventories=(),
             connect_timeout=None) -> ModelBackend:
    """The backend ``model`` names (a ``--model`` string), or ``model`` itself when it is one already;
    ``inventories`` are the ones it will be given (a simulated respondent's model string may name their traits)."""
    if not isinstance(model, str):
        given = [name for name, value in (("api_base", api_base), ("threads", threads), ("connect_timeout", connect_timeout),
                                          ("threads_batch", threads_batch)) if value is not None]
        if given:
            raise PsytestError(f"{given[0]}: applies to a model named by a string; set it on the backend instead")
        return model
    from psychometrics.models import resolve_model

    return resolve_model(model, api_base=api_base, timeout_s=timeout, connect_timeout_s=connect_timeout,
                         threads=threads, threads_batch=threads_batch,
                         inventories=inventories)


def _check_batch_options(backend: ModelBackend, plan, poll: float, size: Optional[int]) -> None:
    """One-line errors for ``--batch`` with a model, design or option it cannot work with, before anything
    is written."""
    from psychometrics.engine.batch import batch_api_for, check_batchable
    from psychometrics.engine.pool import RetryPolicy

    if not (isinstance(poll, (int, float)) and 0 < poll <= 86400):
        raise PsytestError(f"--batch-poll: {poll!r} is not a number of seconds between 0 and 86400; give e.g. 60")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise PsytestError(f"--batch-size: {size!r} is not a whole number of requests of at least 1")
    batch_api_for(backend, RetryPolicy())
    check_batchable(plan)
    if backend.name.startswith("anthropic/") and any(m != "text" for m in plan.modes):
        raise PsytestError("--batch: Anthropic gives no log-probabilities, so probs mode cannot be batched for an "
                           "anthropic/ model; use --mode text")


def _sending(progress: Optional[Progress]) -> dict:
    """The callbacks the run functions take, from a :class:`Progress` (or none)."""
    return {"on_start": progress.start if progress else None, "on_answer": progress.advance if progress else None}


# ---------------------------------------------------------------------------------------------------
# administer and behave


def administer(
    model: Union[str, ModelBackend] = DEFAULT_MODEL,
    *,
    api_base: Optional[str] = None,
    threads: Optional[int] = None,
    threads_batch: Optional[int] = None,
    inventory: Union[PathLike, Sequence[PathLike]] = ("mini-ipip",),
    out: Optional[PathLike] = None,
    design: Union[PathLike, dict, None] = None,
    option_orders: Levels = None,
    templates: Levels = None,
    paraphrases: Optional[str] = None,
    samples: Optional[int] = None,
    temperature: Union[float, str, Sequence[float], None] = None,
    seed: Optional[int] = None,
    mode: Optional[str] = None,
    personas: Optional[str] = None,
    persona_ids: Levels = None,
    items_per_request: Optional[int] = None,
    item_orders: Optional[int] = None,
    invalid: Optional[str] = None,
    max_tokens: Optional[int] = None,
    on_truncated: Optional[str] = None,
    max_retries: int = 5,
    retry_base: float = 1.0,
    concurrency: int = 4,
    timeout: Optional[float] = None,
    connect_timeout: Optional[float] = None,
    dry_run: bool = False,
    progress: Optional[Progress] = None,
    reuse: Union[PathLike, Sequence[PathLike], None] = None,
    prices: Optional[PathLike] = None,
    max_cost: Optional[float] = None,
    on_cost: Optional[Callable[[dict], None]] = None,
    batch: bool = False,
    batch_poll: float = 60.0,
    batch_size: Optional[int] = None,
) -> Union[RunOutcome, dict]:
    """Administer inventories to a model under a factorial design, store every answer, and analyse the run
    (``psytest administer``).

    ``design`` is a design YAML file (or a mapping of the same keys); the other design options override
    it. ``model`` is a ``--model`` string or a backend object. Re-running with the same ``out`` resumes and
    sends only what is missing. With ``dry_run`` nothing is sent and a dict of counts and token estimates
    is returned (``requests_planned``, ``already_answered``, ``to_send``, ``estimated_input_tokens``,
    ``estimated_output_tokens_max``, and ``cost``: :func:`psychometrics.cost.estimate.estimate_cost`).
    Otherwise the analysis tables are written to ``RUN/analysis`` and returned in a :class:`RunOutcome`.
    Re-running into ``out`` with levels added to the design grows the run (only the new cells are sent).
    ``temperature`` is one temperature or several ("0,0.7" or a list: the design factor ``temperature``).
    ``reuse``: run directories whose answers to identical requests are copied instead of sent.

    ``prices``: a price file for models litellm's price map lacks (:mod:`psychometrics.cost.prices`).
    ``max_cost``: refuse to start (``PsytestError``) when the estimated cost of what is left to send is
    above it, or unknown. ``on_cost(estimate)`` is called with that estimate before a paid run starts.
    Each answer's actual cost (from the provider's usage) is stored in ``responses.cost``.

    ``batch``: send through the provider's batch API (OpenAI-compatible ``/v1/batches``, Anthropic
    message batches; estimated and priced at batch prices), polling every ``batch_poll`` seconds, at most
    ``batch_size`` requests per batch (default: the provider's limit); an interrupted batch run resumes
    by polling its stored batches.
    """
    from psychometrics.design.plan import Design, design_from_mapping, load_design
    from psychometrics.inventories.library import resolve_inventory

    if isinstance(design, dict):
        base = design_from_mapping(design, "design").model_dump()
    else:
        base = load_design(Path(design)).model_dump() if design is not None else Design().model_dump()
    overrides = {
        "option_orders": _levels(option_orders), "templates": _levels(templates), "paraphrases": paraphrases,
        "samples": samples, "temperature": _temperatures(temperature), "seed": seed,
        "modes": {"both": ["text", "probs"]}.get(mode, [mode]) if mode else None,
        "personas": personas, "persona_ids": _levels(persona_ids), "items_per_request": items_per_request,
        "item_orders": item_orders, "invalid": invalid, "max_tokens": max_tokens, "on_truncated": on_truncated,
    }
    base.update({key: value for key, value in overrides.items() if value is not None})
    plan = design_from_mapping(base, "design")
    names = _names(inventory)
    inventories = [resolve_inventory(name) for name in names]
    # Shipped inventories by name, users' files by absolute path: where analysis finds them again.
    sources = {inv.id: (str(Path(name).resolve()) if name.endswith((".yaml", ".yml")) or "/" in name else name)
               for inv, name in zip(inventories, names)}
    if len({inv.id for inv in inventories}) != len(inventories):
        raise PsytestError("--inventory: the same inventory is given twice; give each once")
    persona_set = None
    if plan.personas:
        from psychometrics.design.personas import resolve_persona_set

        persona_set = resolve_persona_set(plan.personas)
        persona_set.select(plan.persona_ids)
    backend = _backend(model, api_base, timeout, threads, threads_batch, inventories, connect_timeout)
    model_name = model if isinstance(model, str) else backend.name
    if batch:
        _check_batch_options(backend, plan, batch_poll, batch_size)
    elif batch_size is not None:
        raise PsytestError("--batch-size: applies to batch runs; add --batch or leave it out")
    price_table = _price_table(prices, max_cost)
    if dry_run:
        from psychometrics.run.directory import estimate_requests

        estimate = estimate_requests(backend, inventories, plan, persona_set, _path(out), reuse=_reuse_dirs(reuse),
                                     prices=price_table, batch=batch)
        estimate["max_cost"] = max_cost
        if batch:
            estimate["batch"] = True
        return estimate
    from psychometrics.cost.prices import price_for
    from psychometrics.engine.pool import RetryPolicy
    from psychometrics.run.directory import administer as run_administer
    from psychometrics.run.directory import default_run_dir

    price = price_for(backend.name, price_table)
    run_dir = _path(out) or default_run_dir(model_name)
    check_cost = None
    if max_cost is not None or price is None or not price.free:  # the run's own plan, before its directory opens
        def check_cost(planned: list) -> None:
            _check_cost(backend.name, planned, run_dir, price_table, max_cost, on_cost, batch=batch,
                        reuse=_reuse_dirs(reuse))
    try:
        result = run_administer(
            backend, inventories, plan, run_dir, persona_set=persona_set, inventory_sources=sources,
            concurrency=concurrency, timeout_s=timeout, retry=RetryPolicy(max_retries=max_retries, base_s=retry_base),
            reuse=_reuse_dirs(reuse), price=price, batch=batch, batch_poll_s=batch_poll, batch_size=batch_size,
            check_plan=check_cost, **_sending(progress),
        )
    except BaseException:
        _stop_unfinished(progress)
        raise
    if progress:
        progress.stop()
    from psychometrics.analysis.tables import analyze_run
    from psychometrics.run.outputs import DerivedSet

    from psychometrics.report import verdict_tables
    from psychometrics.run.owner import open_run

    inputs: dict = {}
    run = open_run(run_dir)  # one Run for the tables and the verdict: the store is read once
    tables = analyze_run(run_dir, inputs=inputs, run=run)
    with DerivedSet(run_dir / "analysis", "analysis", inputs=inputs, options=_analysis_options(None, True, None),
                    owned=True) as analysis:
        written = analysis.write_tables(tables)
    verdict = verdict_tables(run)["verdict"]
    from psychometrics.cost.actual import run_cost

    with open_run(run_dir).store() as store:
        cost = run_cost(store.conn, price)
    return RunOutcome(run_dir, run_dir / "analysis", model_name, result.stats, tables, written, verdict=verdict,
                      reused=result.reused, cost=cost)


def _price_table(prices: Optional[PathLike], max_cost: Optional[float]) -> Optional[dict]:
    """The user's price file read and checked (None without one); ``max_cost`` checked too."""
    if max_cost is not None and (isinstance(max_cost, bool) or not max_cost >= 0):
        raise PsytestError(f"--max-cost: {max_cost!r} is not an amount; give a number of USD >= 0")
    if prices is None:
        return None
    from psychometrics.cost.prices import load_price_file

    return load_price_file(Path(prices))


def _check_cost(model: str, planned: list, run_dir: Path, price_table, max_cost, on_cost, batch: bool = False,
                reuse: Sequence[Path] = ()) -> None:
    """Before a paid run (or one with ``max_cost``), given the run's plan: the estimate of what is left to send
    (at batch prices with ``batch``; answers already in ``run_dir``'s store, or that ``reuse`` will copy, are
    not sent, so not counted), given to ``on_cost`` and held against ``max_cost``. Called by the run itself
    once it has planned and before it opens its directory, so a run plans once."""
    from psychometrics.run.directory import plan_cost
    from psychometrics.run.owner import RESPONSES

    if (run_dir / RESPONSES).exists():
        from psychometrics.engine.pool import pending
        from psychometrics.run.owner import open_run

        with open_run(run_dir).store() as store:
            planned, _ = pending(planned, store)
    if reuse:
        from psychometrics.run.reuse import check_sources, reusable

        copied = {i for ids in reusable(planned, set(), check_sources(list(reuse), run_dir)).values() for i in ids}
        planned = [p for p in planned if p.request_id not in copied]
    estimate = plan_cost(model, planned, price_table, batch)
    if on_cost is not None:
        on_cost(estimate)
    if max_cost is not None:
        _refuse_above(max_cost, estimate["cost"], model, "the run",
                      f"the {estimate['requests']:,} requests to send are",
                      "see --dry-run for the cost per design factor, or raise --max-cost")


def _refuse_above(max_cost: float, cost: Optional[float], unpriced: str, what: str, sending: str, hint: str) -> None:
    """``--max-cost``: a one-line refusal when ``cost`` (the estimate) is unknown (``unpriced``: the models
    without a price) or above ``max_cost``; nothing has been sent."""
    from psychometrics.cost.prices import format_money as money

    if cost is None:
        raise PsytestError(f"--max-cost {money(max_cost)}: the price of {unpriced} is unknown (not in litellm's "
                           f"price map), so {what} could cost anything; give --prices FILE.yaml")
    if cost > max_cost:
        raise PsytestError(f"--max-cost {money(max_cost)}: {sending} estimated at up to {money(cost)}; nothing was "
                           f"sent ({hint})")


def _recorded_order(run_dir: Optional[Path]) -> str:
    """The order rule of the behaviour run in ``run_dir`` (resuming it keeps its rule), else ``balanced``."""
    from psychometrics.run.owner import recorded_order

    return recorded_order(run_dir)


def behave(
    model: Union[str, ModelBackend] = DEFAULT_MODEL,
    *,
    tasks: str = "all",
    personas: Optional[str] = None,
    persona_ids: Levels = None,
    variants: Optional[int] = None,
    samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    out: Optional[PathLike] = None,
    api_base: Optional[str] = None,
    threads: Optional[int] = None,
    threads_batch: Optional[int] = None,
    max_retries: int = 5,
    concurrency: int = 4,
    timeout: Optional[float] = None,
    connect_timeout: Optional[float] = None,
    dry_run: bool = False,
    progress: Optional[Progress] = None,
    order: Optional[str] = None,
    mode: str = "text",
    prices: Optional[PathLike] = None,
    max_tokens: Optional[int] = None,
) -> Union[RunOutcome, dict]:
    """Run behavioural tasks on a model in sessions of their own, store every reply and score it
    (``psytest behave``).

    ``tasks``: ``all``, or a comma list of task names, trait names and task files. With ``dry_run``
    nothing is sent and a dict of counts and token estimates is returned; otherwise the behaviour tables
    are written to ``RUN/analysis`` and returned in a :class:`RunOutcome` (``kind == "behavior"``).
    ``order``: the display-order rule (:mod:`psychometrics.behavior.order`); None: the rule ``out``'s run
    recorded when it holds one (``random`` for runs made before the rule was recorded), else ``balanced``.
    ``mode``: ``text``, ``probs`` (choice tasks read from option-label probabilities) or ``both``.
    The dry run's ``cost`` prices its token estimate (:func:`psychometrics.cost.estimate.price_tokens`;
    ``prices``: a user's price file for models litellm's map lacks).
    ``max_tokens``: every task's reply limit per turn instead of its own (part of what the model is asked:
    a different limit is a different run).
    """
    from psychometrics.behavior.runner import BehaviorDesign
    from psychometrics.behavior.task import TASK_DIR, resolve_tasks

    chosen = resolve_tasks(tasks)
    # Shipped tasks by name, users' files by absolute path: where analysis finds them again.
    sources = {t.id: t.id if Path(t.source).resolve().parent == TASK_DIR else str(Path(t.source).resolve())
               for t in chosen}
    ids = _levels(persona_ids)
    if order is None:
        order = _recorded_order(_path(out))
    plan = BehaviorDesign(samples=samples, temperature=temperature, seed=seed, personas=personas,
                          persona_ids=tuple(ids) if ids else None, variants=variants, order=order, mode=mode,
                          max_tokens=max_tokens)
    chosen = [plan.applied(task) for task in chosen]
    persona_set = None
    if personas:
        from psychometrics.design.personas import resolve_persona_set

        persona_set = resolve_persona_set(personas)
        persona_set.select(list(plan.persona_ids) if plan.persona_ids else None)
    elif persona_ids:
        raise PsytestError("--persona-ids: give --personas too (the set the ids come from)")
    backend = _backend(model, api_base, timeout, threads, threads_batch, connect_timeout=connect_timeout)
    model_name = model if isinstance(model, str) else backend.name
    if dry_run:
        from psychometrics.behavior.runner import estimate_conversations

        backend.prepare([], persona_set)
        backend.prepare_tasks(chosen)
        estimate = estimate_conversations(chosen, plan, backend, persona_set, _path(out))
        from psychometrics.cost.estimate import price_tokens
        from psychometrics.cost.prices import price_for

        estimate["cost"] = price_tokens(backend.name, estimate["estimated_input_tokens"],
                                        estimate["estimated_output_tokens_max"],
                                        price_for(backend.name, _price_table(prices, None)),
                                        estimate["token_basis"], requests=estimate["turns_to_send"])
        return estimate
    from psychometrics.behavior.runner import behave as run_behave
    from psychometrics.engine.pool import RetryPolicy
    from psychometrics.run.directory import default_run_dir

    default = default_run_dir(model_name)
    run_dir = _path(out) or default.with_name(default.name + "-behavior")
    try:
        result = run_behave(
            backend, chosen, plan, run_dir, persona_set=persona_set, task_sources=sources, concurrency=concurrency,
            timeout_s=timeout, retry=RetryPolicy(max_retries=max_retries), **_sending(progress),
        )
    except BaseException:
        _stop_unfinished(progress)
        raise
    if progress:
        progress.stop()
    from psychometrics.behavior.analysis import behavior_tables
    from psychometrics.run.outputs import DerivedSet
    from psychometrics.run.owner import open_run

    finished = open_run(run_dir, expect="behavior")
    inputs = finished.inputs()
    tables = behavior_tables(finished)
    with DerivedSet(run_dir / "analysis", "behavior-analysis", inputs=inputs, owned=True) as analysis:
        written = analysis.write_tables(tables)
    return RunOutcome(run_dir, run_dir / "analysis", model_name, result.stats, tables, written, kind="behavior")


# ---------------------------------------------------------------------------------------------------
# score and analyze


def score(
    run: PathLike,
    *,
    by: Levels = None,
    out: Optional[PathLike] = None,
    reference_loadings: Optional[PathLike] = None,
    structure: bool = True,
) -> Analysis:
    """Recompute every derived table of a run from its store, never calling a model (``psytest score``).

    ``by``: the condition fields scores are grouped by (default: every field, one row per respondent and
    design cell; the fields left out are averaged). Reliability and structure are computed across
    respondents (persona x sample) within each design cell whatever ``by`` is
    (:mod:`psychometrics.analysis.units`). The tables are written to ``out`` (default ``RUN/analysis``) and
    returned.
    """
    from psychometrics.analysis.tables import analyze_run
    from psychometrics.inventories.item_data import read_reference_loadings
    from psychometrics.run.outputs import DerivedSet, claim_directory
    from psychometrics.run.owner import open_run

    run, loadings_file = Path(run), _path(reference_loadings)
    factors = _levels(by)
    with _reading_only():
        open_run(run)  # a behaviour run, or no run at all, is named before any output is considered
    out_dir = _path(out) or run / "analysis"
    owned = _is_default(out_dir, run / "analysis")
    claim_directory(out_dir, "analysis", owned=owned, create=False)
    inputs: dict = {}
    with _reading_only():
        tables = analyze_run(run, factors, structure=structure,
                             reference_loadings=read_reference_loadings(loadings_file), inputs=inputs)
    with DerivedSet(out_dir, "analysis", inputs=inputs, owned=owned,
                    options=_analysis_options(factors, structure, loadings_file)) as analysis:
        written = analysis.write_tables(tables)
    return Analysis(out_dir, tables, written)


def analyze(
    data: PathLike,
    *,
    keys: Optional[PathLike] = None,
    inventory: Optional[str] = None,
    reference_loadings: Optional[PathLike] = None,
    out: Optional[PathLike] = None,
    structure: bool = True,
) -> Analysis:
    """The tables of a run for item data from a CSV file, e.g. a human sample (``psytest analyze``).

    Give exactly one of ``keys`` (a keys YAML: response range and scales) or ``inventory`` (whose item ids
    are the columns). The tables are written to ``out`` (default ``DATA-analysis/`` beside the file).
    """
    from psychometrics.analysis.tables import analyze_item_data
    from psychometrics.inventories.item_data import inventory_from_keys, load_item_data, read_reference_loadings
    from psychometrics.run.outputs import DerivedSet, claim_directory, file_sha256

    data, loadings_file = Path(data), _path(reference_loadings)
    if (keys is None) == (inventory is None):
        raise PsytestError("give exactly one of --keys KEYS.yaml or --inventory NAME")
    if keys is not None:
        inv = inventory_from_keys(Path(keys))
    else:
        from psychometrics.inventories.library import resolve_inventory

        assert inventory is not None  # one of the two was given (checked above)
        inv = resolve_inventory(inventory)
    out_dir = _path(out) or data.with_name(f"{data.stem}-analysis")
    claim_directory(out_dir, "item-analysis", create=False)
    matrix = load_item_data(data, inv)
    tables = analyze_item_data(matrix, inv, structure=structure,
                               reference_loadings=read_reference_loadings(loadings_file))
    inputs = {"data_sha256": file_sha256(data), "inventory": {"id": inv.id, "content_hash": inv.content_hash}}
    with DerivedSet(out_dir, "item-analysis", inputs=inputs,
                    options=_analysis_options(None, structure, loadings_file)) as analysis:
        written = analysis.write_tables(tables)
    return Analysis(out_dir, tables, written)


# ---------------------------------------------------------------------------------------------------
# reports, comparisons, drift checks, reproduction


def report(run: PathLike, *, out: Optional[PathLike] = None,
           behavior: Union[PathLike, Sequence[PathLike], None] = None) -> ReportPaths:
    """Write a run's self-contained HTML report, its CSV tables and ``summary.json`` (``psytest report``).
    Given a study directory (``psytest study``'s), write the study's combined report of its models
    instead (:mod:`psychometrics.report.study_report`, default ``STUDY/report``).

    ``behavior``: behaviour runs of the same model(s) and personas, for the self-report vs behaviour
    section. Written to ``out`` (default ``RUN/report``)."""
    from psychometrics.analysis.across_models import is_study_directory
    from psychometrics.report import build_report

    behavior_runs = [Path(b) for b in _names(behavior)] if behavior else None
    if is_study_directory(Path(run)):  # a study's combined report: its own runs, its behaviour runs included
        if behavior_runs:
            raise PsytestError(f"--behavior: {run} is a study directory, whose report takes the study's own "
                               "behaviour runs; leave --behavior out")
        from psychometrics.report.study_report import build_study_report

        with _reading_only():
            return build_study_report(Path(run), _path(out))
    with _reading_only():
        return build_report(Path(run), _path(out), behavior_runs=behavior_runs)


def compare(runs: Sequence[PathLike], *, out: Optional[PathLike] = None) -> CompareResult:
    """Differences per scale between runs (the first is the reference) with CIs and effect sizes, and
    whether they exceed the run-to-run noise (``psytest compare``). With ``out``, also writes
    ``differences.csv``, ``statistics.csv`` and ``compare.html`` there."""
    from psychometrics.analysis.compare import compare_runs

    run_dirs = [Path(r) for r in runs]
    out_dir = _path(out)
    if len(run_dirs) < 2:
        raise PsytestError("compare needs at least two run directories")
    if out_dir is not None:
        from psychometrics.run.outputs import claim_directory

        claim_directory(out_dir, "comparison", create=False)  # refused before the work, not after
    with _reading_only():
        result = compare_runs(run_dirs)
    if out_dir is not None:
        from psychometrics.report.comparison import comparison_page
        from psychometrics.run.outputs import DerivedSet
        from psychometrics.run.owner import open_run

        with _reading_only():
            inputs = {"runs": [{"run": str(run), **open_run(run).inputs()} for run in run_dirs]}
        with DerivedSet(out_dir, "comparison", inputs=inputs) as comparison:
            comparison.write_csv("differences.csv", result.differences)
            comparison.write_csv("statistics.csv", result.statistics)
            comparison.write_text("compare.html", comparison_page(result))
    return result


def baseline(run: PathLike, *, out: Optional[PathLike] = None) -> BaselineFile:
    """Write a baseline of the run's scale scores and their run-to-run noise for :func:`check` (``psytest
    baseline``); ``out`` defaults to ``RUN/baseline.json``. Scales without spread (one scored cell, or
    identical repeated samples) are listed in ``warnings``."""
    from psychometrics.analysis.baseline import write_baseline

    path = _path(out) or Path(run) / "baseline.json"
    with _reading_only():
        data = write_baseline(Path(run), path)
    return BaselineFile(path, data)


def check(run: PathLike, *, baseline: Union[PathLike, dict], tolerance: Optional[float] = None,
          unit: str = "sd") -> CheckResult:
    """Compare a run with a baseline (a file from :func:`baseline`, or its contents): ``result.passed``
    when every scale is within ``tolerance`` of it (``psytest check``, a CI drift gate). ``unit`` ``sd``:
    in SDs of the run-to-run noise of a difference of two means (default tolerance 3; refused with a
    one-line error when a baseline scale has no spread); ``raw``: in score points (default 0.5). See
    :mod:`psychometrics.analysis.baseline`."""
    from psychometrics.analysis.baseline import check_run, load_baseline

    if unit not in ("sd", "raw"):
        raise PsytestError(f"--unit must be sd or raw, got {unit!r}")
    with _reading_only():
        reference = baseline if isinstance(baseline, dict) else load_baseline(Path(baseline))
        return check_run(Path(run), reference, tolerance, "sd" if unit == "sd" else "raw")


def reproduce(run: PathLike, *, rerun: bool = False) -> ReproduceResult:
    """Check a run's store and recompute every derived file from it, comparing with what is stored;
    ``rerun`` also re-sends every request on a deterministic backend (``psytest reproduce``). Given a
    study directory, recompute its report, comparison and validity tables from its runs instead
    (:mod:`psychometrics.analysis.reproduce_study`); given the output of ``psytest validity --scores``,
    its tables from the scores and pairs files (:mod:`psychometrics.analysis.reproduce_scores`)."""
    from psychometrics.analysis.across_models import is_study_directory
    from psychometrics.analysis.reproduce import reproduce as reproduce_run

    run = Path(run)
    from psychometrics.analysis.reproduce_scores import is_scores_validity

    if is_scores_validity(run):  # psytest validity --scores: recomputed from the files it names
        if rerun:
            raise PsytestError(f"--rerun: {run} was computed from a scores file; nothing was sent to re-send")
        from psychometrics.analysis.reproduce_scores import reproduce_scores_validity

        with _reading_only():
            return reproduce_scores_validity(run)
    from psychometrics.analysis.reproduce_validity import is_runs_validity

    if is_runs_validity(run):  # psytest validity of runs: recomputed from the runs it names
        if rerun:
            raise PsytestError(f"--rerun: {run} is a validity directory; re-send a run's requests with psytest "
                               "reproduce RUN --rerun")
        from psychometrics.analysis.reproduce_validity import reproduce_runs_validity

        with _reading_only():
            return reproduce_runs_validity(run)
    if is_study_directory(run):
        if rerun:
            raise PsytestError(f"--rerun: {run} is a study directory; re-send a run's requests with psytest reproduce "
                               f"{run}/runs/<model> --rerun")
        from psychometrics.analysis.reproduce_study import reproduce_study

        with _reading_only():
            return reproduce_study(run)
    with _reading_only():
        return reproduce_run(run, rerun=rerun)


def validity(
    *,
    selfreport: Union[PathLike, Sequence[PathLike], None] = None,
    behavior: Union[PathLike, Sequence[PathLike], None] = None,
    out: Optional[PathLike] = None,
    bootstrap: int = 2000,
    seed: int = 0,
    scores: Optional[PathLike] = None,
    pairs: Optional[PathLike] = None,
    equivalence_bound: float = 0.2,
) -> ValidityResult:
    """Does what a model says about itself predict what it does? Self-report (questionnaire runs) vs
    behaviour (behaviour runs) across model x persona respondents (``psytest validity``). The tables,
    ``validity.html`` and ``validity.json`` go to ``out`` (default ``validity/`` in the first behaviour run).

    Or scores from elsewhere: ``scores`` (a CSV, one row per observation) with the declared ``pairs`` (a YAML
    list of ``{selfreport, behavior, sign}``), instead of runs; ``out`` is then required
    (:mod:`psychometrics.validity.scores_input`). ``equivalence_bound`` is the smallest |r| of interest of the
    equivalence test behind "does not predict"."""
    from psychometrics.validity.tables import run_scores_validity, run_validity

    if scores is not None or pairs is not None:
        if _names(selfreport or []) or _names(behavior or []):
            raise PsytestError("psytest validity: --scores/--pairs replace --selfreport/--behavior; give either "
                               "runs or a scores file, not both")
        if scores is None or pairs is None:
            raise PsytestError(f"psytest validity: {'--pairs' if scores is not None else '--scores'} is missing; "
                               "--scores SCORES.csv and --pairs PAIRS.yaml go together")
        if out is None:
            raise PsytestError("psytest validity --scores: give --out DIR for the tables")
        with _reading_only():
            return run_scores_validity(Path(scores), Path(pairs), Path(out), n_boot=bootstrap, seed=seed)
    with _reading_only():
        return run_validity([Path(p) for p in _names(selfreport or [])], [Path(p) for p in _names(behavior or [])],
                            _path(out), n_boot=bootstrap, seed=seed, equivalence_bound=equivalence_bound)


# ---------------------------------------------------------------------------------------------------
# studies across models


def study(
    study_file: PathLike,
    *,
    out: Optional[PathLike] = None,
    concurrency: int = 4,
    max_retries: int = 5,
    timeout: Optional[float] = None,
    dry_run: bool = False,
    progress: Optional[Callable[[str, str], Optional[Progress]]] = None,
    prices: Optional[PathLike] = None,
    max_cost: Optional[float] = None,
) -> Union[StudyResult, dict]:
    """Run a study file: its models x inventories x design (and tasks) into one study directory, then
    compare the models, with tasks relate self-report to behaviour, and write the combined report
    ``STUDY/report`` (``psytest study``; :mod:`psychometrics.report.study_report`).

    Each model gets ``STUDY/runs/<slug>/`` (and ``<slug>-behavior/``), written by :func:`administer` and
    :func:`behave`, so each is resumable as they are. ``out`` overrides the file's ``out``. With
    ``dry_run`` nothing is sent or written and a dict is returned: ``runs`` (each run's plan as
    ``administer``/``behave`` ``dry_run`` give it) and the totals. ``progress(model, kind)`` gives each
    run's :class:`Progress`. Requests that fail do not stop the other models: see
    ``result.failed_models``. See :mod:`psychometrics.study`.

    The dry run's ``costs`` give each model's estimated cost and ``cost`` the total (None when a model's
    price is unknown); ``prices`` is a user's price file. ``max_cost``: the study refuses to start
    (``PsytestError``) when that total is above it or unknown.
    """
    from psychometrics.study.runner import plan_study, run_study, study_costs
    from psychometrics.study.spec import load_study

    _price_table(prices, max_cost)  # checked before anything else
    loaded = load_study(Path(study_file), _path(out))
    if dry_run or max_cost is not None:
        plans = plan_study(loaded, _path(prices))
        total = {key: sum(p["plan"].get(key, 0) for p in plans)
                 for key in ("estimated_input_tokens", "estimated_output_tokens_max", "to_send", "already_answered")}
        costs = study_costs(plans)
        known = [c["cost"] for c in costs]
        summary = {"study_dir": str(loaded.out), "runs": plans, "costs": costs,
                   "cost": None if any(c is None for c in known) else sum(known), "max_cost": max_cost,
                   "requests_planned": sum(p["plan"]["requests_planned"] for p in plans if p["kind"] == "questionnaire"),
                   "conversations_planned": sum(p["plan"]["conversations_planned"] for p in plans
                                                if p["kind"] == "behavior"),
                   **total}
        if dry_run or max_cost is None:
            return summary
        _refuse_above(max_cost, summary["cost"], ", ".join(c["model"] for c in costs if c["cost"] is None),
                      "the study", "the study's requests to send are", "psytest study --dry-run shows the cost per model")
    return run_study(loaded, concurrency=concurrency, max_retries=max_retries, timeout=timeout, progress=progress,
                     prices=_path(prices))


# ---------------------------------------------------------------------------------------------------
# export


def _export_header() -> str:
    from psychometrics.run.export import CELL_FIELDS, RESPONSE_COLUMNS

    return ",".join([*RESPONSE_COLUMNS, *CELL_FIELDS])


def _is_export_file(path: Path) -> bool:
    """Whether ``path`` starts with the header an export to CSV writes (so it may be replaced)."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.readline(4096).rstrip("\r\n") == _export_header()
    except (OSError, UnicodeDecodeError):
        return False


def _export_csv(run: Path, path: Path, chunksize: int) -> int:
    """Write the answers to ``path`` chunk by chunk, spreadsheet-safe, whole or not at all; rows written."""
    import os

    from psychometrics.analysis.tables import spreadsheet_safe
    from psychometrics.run.export import iter_responses
    from psychometrics.run.outputs import temporary_path

    rows = 0
    partial = temporary_path(path)
    try:
        with open(partial, "w", encoding="utf-8", newline="") as handle:
            for chunk in iter_responses(run, chunksize):
                spreadsheet_safe(chunk).to_csv(handle, index=False, header=rows == 0)
                rows += len(chunk)
            if rows == 0:  # no answers yet: still a file with the header, so it is known as psytest's
                handle.write(_export_header() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)  # a reader never sees half a file under the final name
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows


def export(
    run: PathLike,
    *,
    csv: Optional[PathLike] = None,
    duckdb: Optional[PathLike] = None,
    table: str = "responses",
    chunksize: int = 100_000,
) -> dict:
    """Export a run's answers (one row per answer, the design cell as columns) to a CSV file, a DuckDB
    table, or both, reading the store ``chunksize`` rows at a time (``psytest export``). Returns what was
    written: ``{"csv": {"path", "rows"}, "duckdb": {"path", "table", "rows"}}`` for the targets given."""
    from psychometrics.run.export import check_table_name, to_duckdb
    from psychometrics.run.outputs import claim_file

    run, csv_path, duckdb_path = Path(run), _path(csv), _path(duckdb)
    if csv_path is None and duckdb_path is None:
        raise PsytestError("export: give --csv FILE, --duckdb FILE or both")
    check_table_name(table)
    if csv_path is not None:
        claim_file(csv_path, "--csv", _is_export_file)
    if chunksize < 1:
        raise PsytestError(f"--chunksize must be at least 1, got {chunksize}")
    from psychometrics.run.owner import open_run

    with _reading_only():
        open_run(run)  # another kind of run, or none, is named before anything is written
    written: dict[str, dict] = {}
    if csv_path is not None:
        written["csv"] = {"path": str(csv_path), "rows": _export_csv(run, csv_path, chunksize)}
    if duckdb_path is not None:
        rows = to_duckdb(run, duckdb_path, table=table, chunksize=chunksize)
        written["duckdb"] = {"path": str(duckdb_path), "table": table, "rows": rows}
    return written


# ---------------------------------------------------------------------------------------------------
# inventories, templates, personas, tasks


def list_inventories() -> list[Inventory]:
    """The shipped inventories (``psytest inventories list``)."""
    from psychometrics.inventories.library import load_all_shipped

    return load_all_shipped()


def get_inventory(name: PathLike) -> Inventory:
    """A shipped inventory by name, or an inventory YAML file by path (``psytest inventories show``)."""
    from psychometrics.inventories.library import resolve_inventory

    return resolve_inventory(str(name))


def validate_inventory(path: PathLike) -> Inventory:
    """Load and check an inventory file: structure, keys, scale membership, response range, norms
    (``psytest inventories validate``); raises :class:`~psychometrics.errors.InventoryError`."""
    from psychometrics.inventories.model import load_inventory

    return load_inventory(Path(path))


def render_templates(inventory: PathLike = "mini-ipip") -> list[RenderedTemplate]:
    """Every instruction template with the prompt it renders for the inventory's first item
    (``psytest templates``)."""
    from psychometrics.design.prompts import TEMPLATES, render_item

    inv = get_inventory(inventory)
    return [RenderedTemplate(template.id, template.label_style, render_item(inv, inv.items[0], template=template))
            for template in TEMPLATES.values()]


def list_persona_sets() -> list[PersonaSet]:
    """The shipped persona sets (``psytest personas list``)."""
    from psychometrics.design.personas import resolve_persona_set, shipped_persona_sets

    return [resolve_persona_set(name) for name in shipped_persona_sets()]


def get_persona_set(name: PathLike) -> PersonaSet:
    """A shipped persona set by name, or a persona YAML file by path (``psytest personas show``)."""
    from psychometrics.design.personas import resolve_persona_set

    return resolve_persona_set(str(name))


def list_tasks(tasks: str = "all") -> list[Task]:
    """Behavioural tasks (``psytest tasks list``): ``all``, or a comma list of task names, trait names and
    task files, sorted by trait and id."""
    from psychometrics.behavior.task import resolve_tasks

    return sorted(resolve_tasks(tasks), key=lambda t: (t.trait, t.id))


def get_task(name: PathLike) -> Task:
    """One task: a shipped task's name or a task file's path."""
    from psychometrics.behavior.task import resolve_tasks

    tasks = resolve_tasks(str(name))
    if len(tasks) != 1:
        raise PsytestError(f"tasks show {name}: give one task (a name or a file), not a trait or 'all'")
    return tasks[0]


def render_task(name: PathLike, *, variant: Optional[str] = None, seed: int = 0) -> RenderedTask:
    """A task's variant (default: its first) as the model receives it, its options in the order ``seed``
    draws (``psytest tasks show``)."""
    import numpy as np

    from psychometrics.behavior.kinds import get_kind

    task = get_task(name)
    chosen = task.variants[0]
    if variant is not None:
        try:
            chosen = task.variant(variant)
        except KeyError:
            raise PsytestError(
                f"--variant {variant}: task '{task.id}' has variants {', '.join(v.id for v in task.variants)}"
            ) from None
    rendered = get_kind(task.kind).render(task, chosen, np.random.default_rng(seed))
    return RenderedTask(task, chosen, list(rendered.turns))


def validate_task(path: PathLike) -> Task:
    """Load and check a task file (``psytest tasks validate``)."""
    from psychometrics.behavior.task import load_task

    path = Path(path)
    if not path.is_file():
        raise PsytestError(f"{path}: no such file; check the path")
    return load_task(path)
