"""Writing a run directory: create or resume it, record its manifest, send what is missing.

A questionnaire run (:func:`administer`) and a behaviour run (``psytest behave``,
:func:`psychometrics.behavior.runner.behave`) are written the same way (:func:`open_for_writing`): the
directory must be new, empty or already a psytest run; a store there without its manifest is refused
(it would let another study into the store); the manifest the command would write is compared with the
one there (:func:`psychometrics.run.identity.check_resumable`): the same run is resumed, sending only
what is missing, anything else is refused with one line saying what differs. The manifest is created
once, atomically, even with several processes starting on one directory at once; a resumed run rewrites
it in the current format, keeping its creation time. Reading a run is :mod:`psychometrics.run.owner`.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from psychometrics import __version__, limits
from psychometrics.design.personas import PersonaSet
from psychometrics.design.plan import Design, PlannedRequest, plan_requests
from psychometrics.engine.pool import RetryPolicy, RunStats
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


def open_for_writing(run_dir: Path, manifest: Manifest, planned_ids: list[str]) -> Manifest:
    """Create ``run_dir`` with ``manifest``, or check that it holds the same run and record it in the
    current format; returns the manifest as recorded (the run's first creation time kept)."""
    claim_run_directory(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if write_manifest(run_dir, manifest, replace=False):
        return manifest
    previous = read_manifest(run_dir, expect=None)
    stored = None
    store_path = run_dir / (BEHAVIOR_DB if previous.kind == "behavior" else RESPONSES)
    old_format = previous.prompts is None if previous.kind == "questionnaire" else previous.plan is None
    if previous.kind == manifest.kind and old_format and store_path.exists():
        stored = _stored_ids(store_path, previous.kind)
    check_resumable(run_dir, previous, manifest, stored, planned_ids)
    recorded = manifest.model_copy(update={"created_at": previous.created_at or manifest.created_at})
    if previous != recorded:
        write_manifest(run_dir, recorded, replace=True)
    return recorded


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
) -> RunResult:
    """Plan, record the manifest, send what is missing; returns the run statistics."""
    if design.personas and persona_set is None:
        from psychometrics.design.personas import resolve_persona_set

        persona_set = resolve_persona_set(design.personas)
    backend.prepare(inventories, persona_set)
    previous = previous_manifest(run_dir)
    params = identity_params(backend.params, previous)
    planned = plan_requests(inventories, design, backend.name, params, persona_set)
    ids = [p.request_id for p in planned]
    started = now_utc()
    manifest = QuestionnaireManifest(
        psytest_manifest=MANIFEST_VERSION, model=backend.name, backend_params=params, design=design,
        endpoints=endpoints_used(previous, backend, started),
        inventories=[ContentRef(id=inv.id, content_hash=inv.content_hash) for inv in inventories],
        personas=PersonaSetRef.of(persona_set, design.persona_ids) if persona_set else None,
        # Shipped inventories by name, users' files by absolute path: where to find them again.
        inventory_sources={inv.id: (inventory_sources or {}).get(inv.id, inv.id) for inv in inventories},
        requests_planned=len(planned), prompts=PromptIdentity(**prompt_identity(design.templates, ids)),
        created_at=started, packages=package_versions(), platform=f"{platform.system()} {platform.machine()}",
    )
    open_for_writing(run_dir, manifest, ids)
    with RunStore(run_dir / RESPONSES, read_only=False) as store:
        store.check_contents()
        if on_start is not None:
            on_start(len(planned))

        async def send() -> RunStats:
            try:
                return await run_requests(
                    backend, planned, store, concurrency=concurrency, timeout_s=timeout_s, retry=retry,
                    reasks=design.reasks, on_answer=on_answer,
                )
            finally:
                await backend.aclose()  # inside the loop: HTTP clients are bound to it

        stats = asyncio.run(send())
    return RunResult(run_dir, stats, planned)


CHARS_PER_TOKEN = 4  # the rule of thumb for English text with BPE tokenisers, used when no tokenizer is at hand
TOKENS_PER_MESSAGE = 4  # what a chat template adds around each message, roughly


def estimate_requests(
    backend: ModelBackend,
    inventories: list[Inventory],
    design: Design,
    persona_set: PersonaSet | None,
    run_dir: Path | None,
    probe: bool = True,
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
    """
    from psychometrics.design.breakdown import plan_breakdown
    from psychometrics.engine.pool import pending

    breakdown = plan_breakdown(inventories, design, persona_set)
    params = identity_params(backend.params, previous_manifest(run_dir))
    planned = plan_requests(inventories, design, backend.name, params, persona_set)
    answered = 0
    todo = planned
    if run_dir is not None and (run_dir / RESPONSES).exists():
        with RunStore(run_dir / RESPONSES, read_only=True) as store:
            todo, answered = pending(planned, store)
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
        "to_send": len(todo),
        "estimated_input_tokens": sum(r["input_tokens"] for r in per_inventory.values()),
        "estimated_output_tokens_max": sum(r["output_tokens_max"] for r in per_inventory.values()),
        "token_basis": (f"input: {CHARS_PER_TOKEN} characters of message text per token plus "
                        f"{TOKENS_PER_MESSAGE} per message; output: at most max_tokens ({design.max_tokens} per item) "
                        "per text request, 1 per probability request"),
        "factors": breakdown["factors"],
        "inventories": list(per_inventory.values()),
        "time": _time_estimate(backend, [p.request for p in todo], probe),
    }
    return result


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
