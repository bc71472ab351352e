"""Writing a run directory: create or resume it, record its manifest, send what is missing.

A questionnaire run (:func:`administer`) and a behaviour run (``psytest behave``,
:func:`psychometrics.behavior.runner.behave`) are written the same way (:func:`open_for_writing`): the
directory must be new, empty or already a psytest run; a store there without its manifest is refused
(it would let another study into the store); the manifest the command would write is compared with the
one there (:func:`psychometrics.run.identity.check_resumable`): the same run is resumed, sending only
what is missing; a questionnaire run whose design the command extends grows, sending only the new cells
(:mod:`psychometrics.run.growth`, recorded in the manifest's ``extensions``); anything else is refused
with one line saying what differs. ``--reuse`` copies answers to identical requests from other runs
before sending (:mod:`psychometrics.run.reuse`, recorded in ``reused``). The manifest is created
once, atomically, even with several processes starting on one directory at once; a resumed run rewrites
it in the current format, keeping its creation time. Reading a run is :mod:`psychometrics.run.owner`.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
import platform
import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psychometrics import __version__, limits
from psychometrics.design.personas import PersonaSet
from psychometrics.design.plan import Design, PlannedRequest, plan_requests
from psychometrics.engine.pool import RetryPolicy, RunStats
from psychometrics.engine.probe import Prefetched
from psychometrics.engine.send import run_requests
from psychometrics.errors import PsytestError
from psychometrics.inventories.model import Inventory
from psychometrics.models.base import ModelBackend
from psychometrics.run.identity import (
    check_resumable, endpoints_used, identity_params, previous_manifest, prompt_identity,
)
from psychometrics.run.manifest import (
    MANIFEST, MANIFEST_VERSION, ContentRef, Manifest, PersonaSetRef, PromptIdentity, QuestionnaireManifest,
    read_manifest, write_manifest,
)
from psychometrics.run.owner import BEHAVIOR_DB, RESPONSES
from psychometrics.run.store import RunStore


@dataclass
class RunResult:
    run_dir: Path
    stats: RunStats
    planned: list[PlannedRequest]
    reused: int = 0  # requests answered by copying from other runs (--reuse) in this call


def default_run_dir(model: str, now: _dt.datetime | None = None) -> Path:
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-")[:60]
    return Path("runs") / f"{stamp}-{slug}"


def package_versions() -> dict[str, str]:
    """Versions of psytest, Python and the packages that change what a run sends or computes."""
    from importlib import metadata

    versions = {"psytest": __version__, "python": platform.python_version()}
    for name in ("numpy", "pandas", "pydantic", "pyyaml", "typer", "llama-cpp-python", "litellm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


_RUN_ENTRY = re.compile(r"^\.manifest\.json\..+\.tmp$")  # a manifest being written by another process


def claim_run_directory(run_dir: Path) -> None:
    """Refuse ``--out`` unless it is new, empty, or a psytest run directory (its ``manifest.json`` is
    psytest's): a folder of someone's files is never written into."""
    if run_dir.exists() and not run_dir.is_dir():
        raise PsytestError(f"--out {run_dir}: is a file, not a directory; give a directory for the run")
    if not run_dir.is_dir():
        return
    if (run_dir / MANIFEST).exists():
        if not (run_dir / MANIFEST).is_file():
            read_manifest(run_dir, expect=None)  # one line saying what it is instead
        manifest = limits.read_json(run_dir / MANIFEST, "run manifest")  # psytest's at all, before its fields
        if not isinstance(manifest, dict):
            read_manifest(run_dir, expect=None)  # one line saying what shape it has
        if not isinstance(manifest.get("psytest_manifest"), int):
            raise PsytestError(f"--out {run_dir}: its {MANIFEST} is not a psytest run manifest; give a new or empty "
                               "directory (psytest writes only into directories it made)")
        return
    stores = [name for name in (RESPONSES, BEHAVIOR_DB) if (run_dir / name).exists()]
    if stores:
        raise PsytestError(f"--out {run_dir}: holds a store ({stores[0]}) but no {MANIFEST}; without its manifest "
                           "nothing says which study it holds, so psytest will not write to it: restore the "
                           "manifest, or give a new --out")
    entries = sorted(p.name for p in run_dir.iterdir() if not _RUN_ENTRY.match(p.name))
    if entries:
        shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
        raise PsytestError(f"--out {run_dir}: holds files psytest did not write ({shown}) and no run manifest; give "
                           "a new or empty directory (psytest writes only into directories it made)")


def open_for_writing(run_dir: Path, manifest: Manifest, planned_ids: list[str], replan=None) -> Manifest:
    """Create ``run_dir`` with ``manifest``, or check that it holds the same run and record it in the
    current format; returns the manifest as recorded (the run's first creation time, extensions and reuse
    records kept). With ``replan`` (:data:`psychometrics.run.growth.Replan`), a questionnaire run the
    command extends grows, and the extension is recorded."""
    claim_run_directory(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if write_manifest(run_dir, manifest, replace=False):
        return manifest
    with _directory_lock(run_dir):  # two commands growing one run differently: the second sees the first's
        previous = read_manifest(run_dir, expect=None)
        recorded = recorded_manifest(run_dir, previous, manifest, planned_ids, replan)
        if previous != recorded:
            write_manifest(run_dir, recorded, replace=True)
    return recorded


@contextmanager
def _directory_lock(run_dir: Path):
    """An exclusive lock on ``run_dir`` itself (flock on the directory: no file added to it) while its
    manifest is compared and rewritten; where directories cannot be locked, no lock (as before)."""
    try:
        import fcntl

        handle = os.open(run_dir, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(handle)  # releases the lock


def recorded_manifest(run_dir: Path, previous: Manifest, manifest: Manifest, planned_ids: list[str],
                      replan=None) -> Manifest:
    """The manifest to record when the command's ``manifest`` resumes (or, with ``replan``, grows) the run
    ``previous`` in ``run_dir``: the command's, with the run's creation time, extensions (one more when it
    grows) and reuse records; a one-line refusal naming the difference when it is another run."""
    from psychometrics.run.growth import check_growth, is_growth

    stored = None
    store_path = run_dir / (BEHAVIOR_DB if previous.kind == "behavior" else RESPONSES)
    old_format = previous.prompts is None if previous.kind == "questionnaire" else previous.plan is None
    if previous.kind == manifest.kind and old_format and store_path.exists():
        stored = _stored_ids(store_path, previous.kind)
    history: dict = {"created_at": previous.created_at or manifest.created_at}
    in_flight = [n for n in (getattr(previous, "most_in_flight", None), getattr(manifest, "most_in_flight", None)) if n]
    if in_flight:
        history["most_in_flight"] = max(in_flight)
    if replan is not None and is_growth(previous, manifest):
        assert isinstance(previous, QuestionnaireManifest)  # is_growth: questionnaire runs only
        extension = check_growth(run_dir, previous, manifest, replan, planned_ids)
        history.update(extensions=[*previous.extensions, extension], reused=previous.reused)
    else:
        check_resumable(run_dir, previous, manifest, stored, planned_ids)
        if isinstance(previous, QuestionnaireManifest) and manifest.kind == "questionnaire":
            history.update(extensions=previous.extensions, reused=previous.reused)
    return manifest.model_copy(update=history)


def _stored_ids(store_path: Path, kind: str) -> set[str]:
    if kind == "behavior":
        from psychometrics.behavior.store import BehaviorStore

        with BehaviorStore(store_path, read_only=True) as store:
            return {row[0] for row in store.conn.execute("SELECT DISTINCT request_id FROM conversations")}
    with RunStore(store_path, read_only=True) as store:
        return {row[0] for row in store.conn.execute("SELECT DISTINCT request_id FROM responses")}


def administer(
    backend: ModelBackend,
    inventories: list[Inventory],
    design: Design,
    run_dir: Path,
    *,
    persona_set: PersonaSet | None = None,
    inventory_sources: dict[str, str] | None = None,
    concurrency: int = 4,
    timeout_s: float | None = None,
    retry: RetryPolicy = RetryPolicy(),
    on_start=None,
    on_answer=None,
    reuse: list[Path] | tuple[Path, ...] = (),
    price=None,
    batch: bool = False,
    batch_poll_s: float = 60.0,
    batch_size: int | None = None,
    check_plan: Callable[[list[PlannedRequest]], None] | None = None,
) -> RunResult:
    """Plan, record the manifest (growing the run when the design extends it), copy answers to identical
    requests from the runs in ``reuse``, send what is missing; returns the run statistics. ``price``
    (:class:`psychometrics.cost.prices.Price`) prices each answer from its usage (``responses.cost``).
    With ``batch`` the pending requests go through the provider's batch API
    (:mod:`psychometrics.engine.batch`), polled every ``batch_poll_s`` seconds, at most ``batch_size``
    requests per batch. ``check_plan(planned)`` is called with the plan before anything is sent or written (the
    cost check and ``--max-cost``: it raises to stop the run), so a run is planned once."""
    if batch:
        from psychometrics.engine.batch import check_batchable

        check_batchable(design)
    persona_set = _persona_set(design, persona_set)
    backend.prepare(inventories, persona_set)
    previous = previous_manifest(run_dir)
    params = identity_params(backend.params, previous)
    planned = plan_requests(inventories, design, backend.name, params, persona_set)
    if check_plan is not None:
        check_plan(planned)
    ids = [p.request_id for p in planned]
    started = now_utc()
    manifest = questionnaire_manifest(backend, inventories, design, persona_set, inventory_sources, ids,
                                      params=params, endpoints=endpoints_used(previous, backend, started),
                                      created_at=started)
    if not batch:  # what a rerun must allow for (psychometrics.analysis.reproduce)
        manifest = manifest.model_copy(update={"most_in_flight": max(concurrency, getattr(previous, "most_in_flight", None) or 1)})
    from psychometrics.run.reuse import check_sources, reuse_answers

    sources = check_sources(reuse, run_dir)
    reused = 0
    # before anything is written; a batch run does not probe (its one direct request would be paid twice)
    prefetched = Prefetched() if batch else _probe(backend, planned, run_dir, timeout_s, retry)
    recorded = open_for_writing(run_dir, manifest, ids, replanner(backend, inventories, persona_set, params))
    with RunStore(run_dir / RESPONSES, read_only=False) as store:
        store.check_contents()
        if sources:
            from psychometrics.run.manifest import ReuseRecord

            records = reuse_answers(store, planned, sources)
            reused = sum(record["requests"] for record in records)
            if records:  # answers first, then the record (each copied row names its source run anyway)
                assert isinstance(recorded, QuestionnaireManifest)
                write_manifest(run_dir, recorded.model_copy(update={
                    "reused": [*recorded.reused, *(ReuseRecord(**r) for r in records)]}), replace=True)
        if on_start is not None:
            on_start(len(planned))

        async def send() -> RunStats:
            try:
                if batch:
                    from psychometrics.engine.batch import run_batch

                    return await run_batch(backend, planned, store, poll_s=batch_poll_s, retry=retry,
                                           max_requests=batch_size, on_answer=on_answer, price=price)
                from psychometrics.engine.batch import refuse_direct_send

                refuse_direct_send(store)
                return await run_requests(
                    backend, planned, store, concurrency=concurrency, timeout_s=timeout_s, retry=retry,
                    reasks=design.reasks, on_answer=on_answer, price=price, longer=design.longer_reasks,
                    prefetched=prefetched,
                )
            finally:
                await backend.aclose()  # inside the loop: HTTP clients are bound to it

        stats = asyncio.run(send())
    return RunResult(run_dir, stats, planned, reused)


def _persona_set(design: Design, persona_set: PersonaSet | None) -> PersonaSet | None:
    if design.personas and persona_set is None:
        from psychometrics.design.personas import resolve_persona_set

        return resolve_persona_set(design.personas)
    return persona_set


def questionnaire_manifest(backend: ModelBackend, inventories: list[Inventory], design: Design,
                           persona_set: PersonaSet | None, inventory_sources: dict[str, str] | None,
                           ids: list[str], *, params: dict | None = None, endpoints: list | None = None,
                           created_at: str | None = None) -> QuestionnaireManifest:
    """The manifest a questionnaire run of this plan (``ids``, in plan order) records: ``params`` are the
    identity params (:func:`psychometrics.run.identity.identity_params`; default the backend's),
    ``endpoints`` the URLs used (:func:`psychometrics.run.identity.endpoints_used`)."""
    return QuestionnaireManifest(
        psytest_manifest=MANIFEST_VERSION, model=backend.name,
        backend_params=backend.params if params is None else params, design=design, endpoints=endpoints or [],
        inventories=[ContentRef(id=inv.id, content_hash=inv.content_hash) for inv in inventories],
        personas=PersonaSetRef.of(persona_set, design.persona_ids) if persona_set else None,
        # Shipped inventories by name, users' files by absolute path: where to find them again.
        inventory_sources={inv.id: (inventory_sources or {}).get(inv.id, inv.id) for inv in inventories},
        requests_planned=len(ids), prompts=PromptIdentity(**prompt_identity(design.templates, ids)),
        created_at=created_at or now_utc(), packages=package_versions(),
        platform=f"{platform.system()} {platform.machine()}",
    )


def replanner(backend: ModelBackend, inventories: list[Inventory], persona_set: PersonaSet | None,
              params: dict | None = None):
    """:data:`psychometrics.run.growth.Replan` for this command's inputs: the ids an earlier design of a
    run plans with them (its personas given by id: a persona set may have grown since)."""
    by_id = {inv.id: inv for inv in inventories}

    def replan(old_design: Design, inventory_ids: list[str], persona_ids: list[str] | None) -> list[str]:
        if persona_ids is not None:
            old_design = old_design.model_copy(update={"persona_ids": persona_ids})
        old = plan_requests([by_id[i] for i in inventory_ids], old_design, backend.name,
                            backend.params if params is None else params, persona_set)
        return [p.request_id for p in old]

    return replan


def _probe(backend: ModelBackend, planned: list, run_dir: Path, timeout_s: float | None, retry: RetryPolicy):
    """Log-probabilities checked before a run that needs them (:func:`psychometrics.engine.probe.probe_before_run`)."""
    from psychometrics.engine.probe import probe_before_run

    if not any(p.request.mode == "probs" for p in planned):
        return Prefetched()
    answered: set[str] = set()
    if (run_dir / RESPONSES).exists():
        with RunStore(run_dir / RESPONSES, read_only=True) as store:
            answered = store.answered_ids()
    return probe_before_run(backend, ((p.request_id, p.request) for p in planned), timeout_s, answered, retry)


CHARS_PER_TOKEN = 4  # the rule of thumb for English text with BPE tokenisers, used when no tokenizer is at hand
TOKENS_PER_MESSAGE = 4  # what a chat template adds around each message, roughly


def estimate_requests(
    backend: ModelBackend,
    inventories: list[Inventory],
    design: Design,
    persona_set: PersonaSet | None,
    run_dir: Path | None,
    probe: bool = True,
    reuse: list[Path] | tuple[Path, ...] = (),
    *,
    prices: dict | None = None,
    batch: bool = False,
) -> dict:
    """What a run would send (``--dry-run``): the plan factor by factor, requests planned, already
    answered and to send, tokens per inventory, and for a local model an estimated time.

    Input tokens are estimated at four characters of message text per token plus four per message for
    the chat template; output tokens are an upper bound (``max_tokens`` per text request, one per scored
    one). For a local model (``probe``), a few of the plan's own requests are timed on this machine
    (:meth:`~psychometrics.models.local.LocalModel.probe_speed`); the time estimate adds, request by
    request in plan order, the tokens not shared with the previous prompt (the part a run evaluates: the
    shared prefix stays in the model's cache) at the measured speed, and the measured reply length of a
    greedy text reply at the measured generation speed.

    ``cost`` is :func:`psychometrics.cost.estimate.estimate_cost` of the requests to send: tokens counted
    with the model's tokenizer where one is offline, the price from ``prices`` (a user's price file,
    :func:`psychometrics.cost.prices.load_price_file`) or litellm's map, the cached-prefix discount, and
    the batch prices with ``batch``.
    """
    from psychometrics.design.breakdown import plan_breakdown
    from psychometrics.engine.pool import pending

    breakdown = plan_breakdown(inventories, design, persona_set)
    params = identity_params(backend.params, previous_manifest(run_dir))
    planned = plan_requests(inventories, design, backend.name, params, persona_set)
    answered = 0
    todo = planned
    growth = _growth_preview(backend, inventories, design, persona_set, run_dir, [p.request_id for p in planned],
                             params)
    if run_dir is not None and (run_dir / RESPONSES).exists():
        with RunStore(run_dir / RESPONSES, read_only=True) as store:
            todo, answered = pending(planned, store)
    reused: dict[str, int] = {}
    sources = []
    if reuse:
        from psychometrics.run.reuse import check_sources, reusable

        sources = check_sources(reuse, run_dir)
        done = {p.request_id for p in planned} - {p.request_id for p in todo}
        found = reusable(todo, done, sources)
        reused = {source: len(ids) for source, ids in found.items()}
        copied = {request_id for ids in found.values() for request_id in ids}
        todo = [p for p in todo if p.request_id not in copied]
    per_inventory: dict[str, dict] = {row["inventory"]: {**row, "to_send": 0, "input_tokens": 0, "output_tokens_max": 0}
                                      for row in breakdown["inventories"]}
    for p in todo:
        row = per_inventory[p.inventory.id]
        row["to_send"] += 1
        row["input_tokens"] += (sum(len(m.content) for m in p.request.messages) // CHARS_PER_TOKEN
                                + TOKENS_PER_MESSAGE * len(p.request.messages))
        row["output_tokens_max"] += p.request.max_tokens if p.request.mode == "text" else 1
    result = {
        "requests_planned": len(planned),
        "already_answered": answered,
        **({"reused": reused, "to_reuse": sum(reused.values())} if sources else {}),
        **({"extension": growth} if growth else {}),
        "to_send": len(todo),
        "estimated_input_tokens": sum(r["input_tokens"] for r in per_inventory.values()),
        "estimated_output_tokens_max": sum(r["output_tokens_max"] for r in per_inventory.values()),
        "token_basis": (f"input: {CHARS_PER_TOKEN} characters of message text per token plus "
                        f"{TOKENS_PER_MESSAGE} per message; output: at most max_tokens ({design.max_tokens} per item) "
                        "per text request, 1 per probability request"),
        "factors": breakdown["factors"],
        "inventories": list(per_inventory.values()),
        "time": _time_estimate(backend, [p.request for p in todo], probe),
        "cost": plan_cost(backend.name, todo, prices, batch),
    }
    return result


def _growth_preview(backend: ModelBackend, inventories: list[Inventory], design: Design,
                    persona_set: PersonaSet | None, run_dir: Path | None, ids: list[str],
                    params: dict | None = None) -> dict | None:
    """For ``--dry-run`` into an existing run: the extension the command would record (what changed,
    requests added), None when it resumes the same design; the real run's one-line refusal when it
    would be refused. Nothing is written."""
    if run_dir is None or not (run_dir / MANIFEST).is_file():
        return None
    claim_run_directory(run_dir)
    previous = read_manifest(run_dir, expect=None)
    manifest = questionnaire_manifest(backend, inventories, design, persona_set, None, ids, params=params,
                                      endpoints=endpoints_used(previous, backend, now_utc()))
    recorded = recorded_manifest(run_dir, previous, manifest, ids, replanner(backend, inventories, persona_set, params))
    if not isinstance(previous, QuestionnaireManifest) or not isinstance(recorded, QuestionnaireManifest) \
            or len(recorded.extensions) == len(previous.extensions):
        return None
    extension = recorded.extensions[-1]
    return {"changed": extension.changed, "inventories_added": extension.inventories_added,
            "requests_before": extension.requests_before, "requests_added": extension.requests_added}
def plan_cost(model: str, todo: list[PlannedRequest], prices: dict | None = None, batch: bool = False) -> dict:
    """The estimated cost of sending ``todo`` to ``model`` (:mod:`psychometrics.cost.estimate`)."""
    from psychometrics.cost.estimate import estimate_cost
    from psychometrics.cost.prices import price_for

    return estimate_cost(model, todo, price_for(model, prices), batch=batch)


def shared_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix of two strings (binary search on slices: fast for long ones)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _time_estimate(backend: ModelBackend, requests: list, probe: bool) -> dict:
    """An estimated sending time: measured for local models, stated as unknown otherwise."""
    from psychometrics.models.local import LocalModel

    if backend.name.startswith("sim/"):
        return {"seconds": None, "basis": "a simulated respondent: no model time (about 1,000+ requests/s here)"}
    if not isinstance(backend, LocalModel):
        return {"seconds": None, "basis": "a remote model: the time depends on the server's latency, concurrency and "
                "rate limits; send a small run first and read its items/s"}
    if not requests:
        return {"seconds": 0.0, "basis": "nothing to send"}
    if not probe:
        return {"seconds": None, "basis": "not measured (no probe)"}
    speed = backend.probe_speed(requests)
    cpt, per_token, tail = speed["chars_per_token"], speed["seconds_per_prompt_token"], speed["template_tokens"]
    prompt_tokens = 0.0
    previous = ""
    for request in requests:
        text = "".join(m.content for m in request.messages)
        shared = shared_prefix(previous, text)
        prompt_tokens += max(1.0, (len(text) - shared) / cpt + tail)
        previous = text
    texts = sum(r.mode == "text" for r in requests)
    output_tokens = texts * min(max(1, speed["reply_tokens"]), max((r.max_tokens for r in requests), default=1))
    seconds = speed["load_s"] + prompt_tokens * per_token + output_tokens * (speed["seconds_per_output_token"] or 0.0)
    return {
        "seconds": seconds,
        "prompt_tokens_evaluated": round(prompt_tokens),
        "output_tokens": output_tokens,
        "probe": speed,
        "basis": (f"measured here on {speed['prompt_tokens_measured']} prompt tokens of this plan's first requests "
                  f"({per_token * 1000:.2f} ms per prompt token after the cached prefix"
                  + (f", {speed['seconds_per_output_token'] * 1000:.1f} ms per generated token, "
                     f"{speed['reply_tokens']} token(s) in a greedy reply" if speed["seconds_per_output_token"] else "")
                  + f", {speed['load_s']:.1f} s to load); {round(prompt_tokens):,} prompt tokens not shared with the "
                  "previous request; an estimate: the machine's load changes it"),
    }
