"""One administration, end to end: run directory, manifest, plan, send, score.

The manifest records everything needed to repeat the run (model, backend settings, design, seeds,
inventory content hashes, package versions) and never an API key: backends expose only the settings
that change answers. Re-running with the same ``--out`` resumes; a different model, design or
inventory in the same directory is refused, so one store never mixes two studies. Several processes
may run the same command on one directory at once: they share the plan (see
:mod:`psychometrics.engine.send`) and the manifest is created once, atomically.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import platform
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from psychometrics import __version__, limits
from psychometrics.engine.send import RetryPolicy, RunStats, run_requests
from psychometrics.design.plan import Design, PlannedRequest, plan_requests
from psychometrics.errors import PsytestError
from psychometrics.inventories.model import Inventory
from psychometrics.models.base import ModelBackend
from psychometrics.design.personas import PersonaSet
from psychometrics.run.store import RunStore

MANIFEST = "manifest.json"
RESPONSES = "responses.sqlite"


@dataclass
class RunResult:
    run_dir: Path
    stats: RunStats
    planned: list[PlannedRequest]


def default_run_dir(model: str, now: _dt.datetime | None = None) -> Path:
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-")[:60]
    return Path("runs") / f"{stamp}-{slug}"


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"psytest": __version__, "python": platform.python_version()}
    for name in ("numpy", "pandas", "pydantic", "pyyaml", "typer", "llama-cpp-python", "litellm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def run_identity(
    backend: ModelBackend, design: Design, inventories: list[Inventory], persona_set: PersonaSet | None = None
) -> dict:
    """The part of the manifest that must match for a directory to be resumed."""
    return {
        "model": backend.name,
        "backend_params": backend.params,
        "design": design.as_manifest(),
        "inventories": [{"id": inv.id, "content_hash": inv.content_hash} for inv in inventories],
        "personas": {"id": persona_set.id, "content_hash": persona_set.content_hash} if persona_set else None,
    }


def write_manifest(run_dir: Path, identity: dict, extra: dict) -> None:
    """Write the manifest atomically, safe against another process starting on ``run_dir`` at once.

    The first writer creates it (a hard link of a complete temporary file: it appears whole or not at
    all); a later one with the same identity rewrites it keeping ``created_at``; one with a different
    identity is refused by :func:`check_resumable`.
    """
    path = run_dir / MANIFEST
    manifest = {"psytest_manifest": 1, **identity, **extra}
    tmp = run_dir / f".{MANIFEST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"

    def dump(content: dict) -> None:  # flushed to disk before it is linked or renamed into place
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(content, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    dump(manifest)
    try:
        try:
            os.link(tmp, path)
            return
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: create-if-absent is not atomic there
            if not path.exists():
                tmp.replace(path)
                return
        check_resumable(run_dir, identity)
        if "created_at" in extra:
            manifest["created_at"] = read_manifest(run_dir, study=None).get("created_at", extra["created_at"])
            dump(manifest)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# What commands read from a manifest, with its types, checked when the manifest is read: a damaged or
# hand-edited one is one line naming the field, never a KeyError or a TypeError deep in an analysis.
# A spec is a type (or tuple of types), a range (an int in it), [spec] (a list of them), or a dict of
# key -> (spec, required); the key "*" stands for every key.
_HASHED = {"id": (str, True), "content_hash": (str, True)}
_PERSONAS = ((type(None), _HASHED), False)
_TEXTS = ({"*": (str, False)}, False)
MANIFEST_FIELDS = {
    "questionnaire": {
        "model": (str, True), "backend_params": (dict, False), "design": ({"invalid": (str, False)}, True),
        "inventories": ([_HASHED], True), "inventory_sources": _TEXTS, "personas": _PERSONAS,
    },
    "behavior": {
        "study": (str, True), "model": (str, True), "backend_params": (dict, False), "personas": _PERSONAS,
        "design": ({
            "samples": (range(1, limits.SAMPLES + 1), False), "temperature": ((int, float), False),
            "seed": (int, False), "personas": ((type(None), str), False),
            "persona_ids": ((type(None), [str]), False), "variants": ((type(None), range(1, limits.VARIANTS + 1)), False),
        }, True),
        "tasks": ([{"id": (str, True), "prompt_hash": (str, False), "content_hash": (str, False)}], True),
        "task_sources": _TEXTS, "task_content_hashes": _TEXTS,
    },
}


def shape_problem(value, spec, where: str = "") -> str | None:
    """What is wrong with ``value`` against ``spec`` (see :data:`MANIFEST_FIELDS`), or None."""
    name = where or "the top level"
    if isinstance(spec, tuple) and any(not isinstance(s, type) for s in spec):  # alternatives, one must fit
        problems = [shape_problem(value, s, where) for s in spec]
        return None if None in problems else problems[-1]
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"'{name}' must be an object, not {_json_kind(value)}"
        for key, (sub, required) in spec.items():
            keys = value if key == "*" else [key] if key in value else []
            if required and not keys:
                return f"'{where + '.' if where else ''}{key}' is missing"
            for k in keys:
                problem = shape_problem(value[k], sub, f"{where + '.' if where else ''}{k}")
                if problem:
                    return problem
        return None
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"'{name}' must be a list, not {_json_kind(value)}"
        return next(filter(None, (shape_problem(v, spec[0], f"{where}[{i}]") for i, v in enumerate(value))), None)
    if isinstance(spec, range):
        if isinstance(value, bool) or not isinstance(value, int) or value not in spec:
            return f"'{name}' must be a whole number from {spec.start:,} to {spec.stop - 1:,}, not {str(value)[:40]}"
        return None
    types = spec if isinstance(spec, tuple) else (spec,)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        return f"'{name}' must be {' or '.join(_json_kind(t) for t in types)}, not {_json_kind(value)}"
    return None


def _json_kind(value) -> str:
    kinds = {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number", bool: "true or false",
             type(None): "null"}
    return kinds.get(value if isinstance(value, type) else type(value), type(value).__name__)


def read_manifest(run_dir: Path, study: str | None = "questionnaire") -> dict:
    """The manifest of ``run_dir``, checked (:data:`MANIFEST_FIELDS`); ``study`` is the kind of run the
    command reads ("questionnaire", "behavior", or None for either). Every problem is one line."""
    path = Path(run_dir) / MANIFEST
    try:
        manifest = limits.read_json(path, "run manifest")
    except FileNotFoundError:
        raise PsytestError(f"{run_dir}: not a psytest run directory (no {MANIFEST})") from None
    except IsADirectoryError:
        raise PsytestError(f"{path}: a directory, not a run manifest; give a run directory psytest wrote") from None
    if not isinstance(manifest, dict):
        raise PsytestError(f"{path}: {shape_problem(manifest, {})}; the manifest was changed or damaged: restore it, "
                           "or run again into a new --out")
    kind = "behavior" if manifest.get("study") == "behavior" else "questionnaire"
    if study == "questionnaire" and kind == "behavior":
        raise PsytestError(f"{run_dir}: a behaviour run (made by 'psytest behave'), not a questionnaire run; give it "
                           "to 'psytest validity --behavior' or 'psytest report RUN --behavior'")
    if study == "behavior" and kind != "behavior":
        raise PsytestError(f"{run_dir}: a questionnaire run, not a behaviour run (made by 'psytest behave')")
    problem = shape_problem(manifest, MANIFEST_FIELDS[kind])
    if problem:
        raise PsytestError(f"{path}: {problem}; the manifest was changed or damaged: restore it, or run again into "
                           "a new --out")
    return manifest


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
            read_manifest(run_dir, study=None)  # one line saying what it is instead
        manifest = limits.read_json(run_dir / MANIFEST, "run manifest")  # psytest's at all, before its fields
        if not isinstance(manifest, dict):
            read_manifest(run_dir, study=None)  # one line saying what shape it has
        if manifest.get("psytest_manifest") != 1:
            raise PsytestError(f"--out {run_dir}: its {MANIFEST} is not a psytest run manifest; give a new or empty "
                               "directory (psytest writes only into directories it made)")
        return
    entries = sorted(p.name for p in run_dir.iterdir() if not _RUN_ENTRY.match(p.name))
    if entries:
        shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
        raise PsytestError(f"--out {run_dir}: holds files psytest did not write ({shown}) and no run manifest; give "
                           "a new or empty directory (psytest writes only into directories it made)")


def manifest_sha256(run_dir: Path) -> str | None:
    from psychometrics.run.outputs import file_sha256

    try:
        return file_sha256(Path(run_dir) / MANIFEST)
    except OSError:
        return None


def run_inputs(run_dir: Path) -> dict:
    """What a run's derived files are made from: its manifest's sha256 and its store's fingerprint
    (:meth:`psychometrics.run.store.RunStore.fingerprint`, or the behaviour store's)."""
    run_dir = Path(run_dir)
    inputs: dict = {"manifest_sha256": manifest_sha256(run_dir)}
    if (run_dir / RESPONSES).exists():
        with RunStore(run_dir / RESPONSES, read_only=True) as store:
            inputs["store"] = store.fingerprint()
    elif (run_dir / "behavior.sqlite").exists():
        from psychometrics.behavior.store import BehaviorStore

        with BehaviorStore(run_dir / "behavior.sqlite", read_only=True) as store:
            inputs["store"] = store.fingerprint()
    return inputs


def check_resumable(run_dir: Path, identity: dict) -> None:
    """Refuse to add a different study to an existing run directory, or to write a run into a directory
    psytest did not make (:func:`claim_run_directory`)."""
    claim_run_directory(run_dir)
    if not (run_dir / MANIFEST).exists():
        return
    previous = read_manifest(run_dir, study=None)
    if previous.get("study") != identity.get("study"):  # questionnaire runs have no "study" key
        kind = "a behaviour run" if previous.get("study") == "behavior" else "a questionnaire run"
        raise PsytestError(f"--out {run_dir}: this directory holds {kind}; give this run its own --out")
    for key in [k for k in identity if k != "study"]:
        if previous.get(key) != identity[key]:
            raise PsytestError(
                f"--out {run_dir}: this directory holds a run with a different {key.replace('_', ' ')}; "
                "choose another --out, or repeat the original command to resume it"
            )


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
    """Plan, send what is missing, and write the manifest; returns the run statistics."""
    if design.personas and persona_set is None:
        from psychometrics.design.personas import resolve_persona_set

        persona_set = resolve_persona_set(design.personas)
    backend.prepare(inventories, persona_set)
    identity = run_identity(backend, design, inventories, persona_set)
    check_resumable(run_dir, identity)
    planned = plan_requests(inventories, design, backend.name, backend.params, persona_set)
    run_dir.mkdir(parents=True, exist_ok=True)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    extra = {
        "created_at": created,
        "requests_planned": len(planned),
        # Shipped inventories by name, users' files by absolute path: where to find them again.
        "inventory_sources": {inv.id: (inventory_sources or {}).get(inv.id, inv.id) for inv in inventories},
        "packages": _package_versions(),
        "platform": f"{platform.system()} {platform.machine()}",
    }
    write_manifest(run_dir, identity, extra)
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


def score_run(run_dir: Path, inventories: list[Inventory], invalid: str = "missing"):
    """Scale scores of a run directory: (scores per respondent, summary per scale) data frames.

    The full set of derived tables is :func:`psychometrics.analysis.tables.analyze_run` (``psytest score``).
    """
    from psychometrics.analysis.tables import score_summary
    from psychometrics.run.frame import responses_frame
    from psychometrics.statistics.scoring import scale_scores

    with RunStore(run_dir / RESPONSES, read_only=True) as store:
        frame = responses_frame(store)
    scores = scale_scores(frame, inventories, listwise=invalid == "drop")
    return scores, score_summary(scores)


def estimate_requests(
    backend: ModelBackend,
    inventories: list[Inventory],
    design: Design,
    persona_set: PersonaSet | None,
    run_dir: Path | None,
) -> dict:
    """What a run would send (``--dry-run``): requests planned, already answered, to send, and tokens.

    Input tokens are estimated at four characters per token plus a few per message for the chat
    template; output tokens are an upper bound (``max_tokens`` per text request, one per scored one).
    """
    from psychometrics.engine.send import pending

    planned = plan_requests(inventories, design, backend.name, backend.params, persona_set)
    answered = 0
    todo = planned
    if run_dir is not None and (run_dir / RESPONSES).exists():
        with RunStore(run_dir / RESPONSES, read_only=True) as store:
            todo, answered = pending(planned, store)
    input_tokens = sum(sum(len(m.content) for m in p.request.messages) // 4 + 4 * len(p.request.messages) for p in todo)
    output_tokens = sum(p.request.max_tokens if p.request.mode == "text" else 1 for p in todo)
    return {
        "requests_planned": len(planned),
        "already_answered": answered,
        "to_send": len(todo),
        "estimated_input_tokens": input_tokens,
        "estimated_output_tokens_max": output_tokens,
    }
