"""What a run is, for resuming it: the identity of a questionnaire or behaviour run, and what changed.

A request's id is a hash of everything that changes its answer (model and settings, the messages as
rendered, labels, mode, sampling; :func:`psychometrics.design.plan.request_identity`), so a request is
never sent twice. A *run's* identity must cover the same ground, or a resumed run could mix two
versions of a prompt in one store (a template edited between two invocations, or psytest upgraded with
a different rendering, would plan 20 new ids beside the 20 answered ones, and every table would pool
them). So the identity of a questionnaire run holds, beside the model, its settings, the design and the
content hashes of its inventories and persona set, the sha256 of each template's text
(:func:`template_hashes`) and of the planned request ids in plan order (:func:`plan_hash`), which
covers every rendered prompt whatever produced it. A behaviour run's identity holds each task's prompt
hash and the hash of its planned conversation ids.

:func:`check_resumable` compares a directory's manifest with the identity a command would write and
refuses a difference with one line saying what differs. Runs from manifest format 1 have no prompt
identity; they are checked against their store instead: every stored request id must be one the
command plans (:func:`unplanned`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

from psychometrics.errors import PsytestError


def digest(payload: object) -> str:
    """sha256 of ``payload`` as canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def template_hashes(template_ids: Iterable[str]) -> dict[str, str]:
    """sha256 of the text of each template: its messages' parts and the reply rules of its label style,
    for single and several items (what :func:`psychometrics.design.prompts.render_items` puts around the
    item), and the re-ask wording (:mod:`psychometrics.engine.send`)."""
    from psychometrics.design import prompts
    from psychometrics.engine.send import REASK_RULES, REASK_TEXT

    hashes = {}
    for template_id in template_ids:
        t = prompts.get_template(template_id)
        hashes[template_id] = digest({
            "label_style": t.label_style, "system": t.system, "intro": t.intro, "lead": t.lead,
            "lead_many": t.lead_many, "reply_rule": prompts.REPLY_RULES[t.label_style],
            "reply_rule_many": prompts.REPLY_RULES_MANY[t.label_style], "reask": [REASK_TEXT, REASK_RULES],
        })
    return hashes


def plan_hash(ids: Iterable[str]) -> str:
    """sha256 of the planned request (or conversation) ids, in plan order, one per line."""
    h = hashlib.sha256()
    for request_id in ids:
        h.update(request_id.encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()


def prompt_identity(design_templates: Iterable[str], planned_ids: list[str]) -> dict:
    """The ``prompts`` entry of a questionnaire manifest."""
    return {"templates": template_hashes(design_templates), "plan": plan_hash(planned_ids),
            "requests": len(planned_ids)}


def identity_params(params: dict, previous=None) -> dict:
    """The backend settings request ids and the run's identity are computed from: ``params`` (the
    backend's, which hold no URL: ``--api-base`` is where the model is, not what it is), unless
    ``previous`` (the manifest of the run being resumed) was made when the URL was part of them: its
    ``backend_params`` hold ``api_base`` and, that aside, equal ``params``. Then they are kept as recorded,
    so its request ids come out as before and nothing answered is sent again, wherever the endpoint is now."""
    old = getattr(previous, "backend_params", None)
    if isinstance(old, dict) and "api_base" in old and {k: v for k, v in old.items() if k != "api_base"} == params:
        return dict(old)
    return params


def previous_manifest(run_dir):
    """The manifest of the run in ``run_dir``, or None when there is none or it cannot be read (then
    opening the directory for writing says why)."""
    from psychometrics.run.manifest import MANIFEST, read_manifest

    if run_dir is None or not (run_dir / MANIFEST).is_file():
        return None
    try:
        return read_manifest(run_dir, expect=None)
    except PsytestError:
        return None


def endpoints_used(previous, backend, when: str) -> list:
    """The manifest's ``endpoints``: those the run used before (``previous``'s) and, if new, the one
    ``backend`` talks to now (its URL without credentials and how it was given), first used ``when``."""
    from psychometrics.run.manifest import EndpointRecord

    recorded = list(getattr(previous, "endpoints", None) or [])
    if backend.endpoint and all(e.url != backend.endpoint for e in recorded):
        recorded.append(EndpointRecord(url=backend.endpoint, source=backend.endpoint_source, first_used=when))
    return recorded


def unplanned(stored_ids: Iterable[str], planned_ids: Iterable[str]) -> list[str]:
    """Stored ids that the plan does not hold (sorted): answers to prompts this plan would not send."""
    planned = set(planned_ids)
    return sorted(i for i in set(stored_ids) if i not in planned)


def _hashes(entries) -> dict[str, str | None]:
    return {e.id: e.content_hash for e in entries}


def _changed_hash(kind: str, old: dict, new: dict) -> str | None:
    for key in sorted(set(old) | set(new)):
        if key not in new:
            return f"{kind} '{key}', which this command does not give"
        if key not in old:
            return f"no {kind} '{key}', which this command gives"
        if old[key] != new[key]:
            return f"a changed {kind} '{key}' (its text has changed since the run)"
    return None


def differences(previous, current, stored_ids: Iterable[str] | None = None,
                planned_ids: list[str] | None = None) -> list[str]:
    """What differs between the run a directory holds (``previous``, its manifest) and the run a command
    would make (``current``, the manifest it would write), most telling first. For a format-1 run with no
    prompt identity, ``stored_ids`` and ``planned_ids`` are compared instead."""
    found: list[str] = []
    if previous.model != current.model:
        found.append(f"a different model (the run used {previous.model}, this command {current.model})")
    if previous.backend_params != current.backend_params:
        keys = sorted(k for k in set(previous.backend_params) | set(current.backend_params)
                      if previous.backend_params.get(k) != current.backend_params.get(k))
        found.append(f"different model settings ({', '.join(keys)})")
    old_design, new_design = previous.design.model_dump(mode="json"), current.design.model_dump(mode="json")
    if old_design != new_design:
        keys = sorted(k for k in set(old_design) | set(new_design) if old_design.get(k) != new_design.get(k))
        found.append(f"a different design ({', '.join(keys)})")
    if current.kind == "questionnaire":
        change = _changed_hash("inventory", _hashes(previous.inventories), _hashes(current.inventories))
    else:
        old_tasks = {t.id: t.prompt_hash for t in previous.tasks}
        change = _changed_hash("task", old_tasks, {t.id: t.prompt_hash for t in current.tasks})
    if change:
        found.append(change)
    old_personas = previous.personas.content_hash if previous.personas else None
    new_personas = current.personas.content_hash if current.personas else None
    if old_personas != new_personas:
        found.append("a different persona set" if old_personas and new_personas else
                     "a different persona set (one of the two has none)")
    if current.kind == "questionnaire" and previous.prompts is not None and current.prompts is not None:
        change = _changed_hash("template", previous.prompts.templates, current.prompts.templates)
        if change:
            found.append(change)
        elif not found and previous.prompts.plan != current.prompts.plan:
            found.append(_rendering_changed(previous, current))
    elif current.kind == "behavior" and previous.plan is not None and current.plan is not None:
        if not found and previous.plan != current.plan:
            found.append(_rendering_changed(previous, current))
    elif stored_ids is not None and planned_ids is not None and not found:
        strays = unplanned(stored_ids, planned_ids)
        if strays:
            found.append(_rendering_changed(previous, current)
                         + f": {len(strays):,} stored requests are not among those this command plans")
    return found


def _rendering_changed(previous, current) -> str:
    old, new = previous.psytest_version, current.psytest_version
    since = f" (psytest {old} made the run, this is psytest {new})" if old != new else ""
    return f"prompts rendered differently from the same inputs{since}"


def check_resumable(run_dir, previous, current, stored_ids=None, planned_ids=None) -> None:
    """Refuse to add to ``run_dir`` a run that differs from the one it holds, naming the difference."""
    if previous.kind != current.kind:
        kind = "a behaviour run" if previous.kind == "behavior" else "a questionnaire run"
        raise PsytestError(f"--out {run_dir}: this directory holds {kind}; give this run its own --out")
    found = differences(previous, current, stored_ids, planned_ids)
    if found:
        raise PsytestError(f"--out {run_dir}: this directory holds a run with {found[0]}"
                           + (f" (and {len(found) - 1} more differences)" if len(found) > 1 else "")
                           + "; choose another --out, or repeat the original command to resume it")
