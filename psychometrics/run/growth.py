"""Runs that grow: extending a questionnaire run's design without changing what it already asked.

A run is extended by repeating its command with more levels: more samples, option orders, templates,
paraphrases (``none`` -> ``all``), answer modes, item orders, temperatures, personas (persona ids, or a
persona file with personas added) or inventories. Only the new cells are sent; the answers already
stored are kept and analysed with the new ones; the manifest records the extension
(:class:`psychometrics.run.manifest.DesignExtension`).

What makes this safe is a check on the plans, not on the option names: the run's own design is planned
again from the command's inputs (:func:`check_growth`), its plan hash must be the one the manifest
recorded (so no template, inventory, persona text or rendering changed under the stored answers), and
every request id of that plan must be in the new plan (so no existing cell is altered, renamed or
dropped). Changes that alter existing cells (the model or its settings, the seed, ``max_tokens``, items
per request, the invalid-answer policy, a template's text, an inventory's content) are refused with one
line naming what differs; so is a command that plans fewer cells than the run has (a run grows, it
does not shrink).
"""

from __future__ import annotations

from typing import Callable

from psychometrics.errors import PsytestError

#: Design options a run can grow in (every other option is fixed for the life of a run).
GROWABLE = ("option_orders", "templates", "paraphrases", "samples", "temperature", "modes", "personas",
            "persona_ids", "item_orders")

_FIXED_NAMES = {"seed": "seed", "max_tokens": "max_tokens", "items_per_request": "items_per_request",
                "invalid": "invalid-answer policy (invalid)"}

#: ``replan(design, inventory_ids, persona_ids)``: the request ids that design plans with this command's inputs.
Replan = Callable[[object, list[str], "list[str] | None"], list[str]]


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ",".join(_shown(v) for v in value) or "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return "(none)" if value is None else str(value)[:60]


def _refuse(run_dir, what: str) -> PsytestError:
    return PsytestError(f"--out {run_dir}: this directory holds a run with {what}; a run can grow (more samples, "
                        "option orders, templates, paraphrases, modes, item orders, temperatures, personas or "
                        "inventories) but not change its existing cells: choose another --out, or repeat the "
                        "run's own command (with levels added, to grow it)")


def design_changes(previous, current) -> dict[str, dict[str, object]]:
    """The design options that differ, ``{option: {"from": old, "to": new}}``, in the design's order."""
    old, new = previous.design.model_dump(mode="json"), current.design.model_dump(mode="json")
    return {key: {"from": old.get(key), "to": new.get(key)} for key in dict.fromkeys([*old, *new])
            if old.get(key) != new.get(key)}


def is_growth(previous, current) -> bool:
    """Whether ``current`` differs from the questionnaire run ``previous`` in what a run can grow in
    (design options, inventories or personas), with the run's prompt identity recorded (format 2)."""
    if previous.kind != "questionnaire" or current.kind != "questionnaire" or previous.prompts is None:
        return False
    same_inventories = [(i.id, i.content_hash) for i in previous.inventories] == [
        (i.id, i.content_hash) for i in current.inventories]
    return bool(design_changes(previous, current)) or not same_inventories or previous.personas != current.personas


def _persona_problem(previous, current) -> str | None:
    """Why the run's personas are not all in the command's persona set, unchanged; None when they are."""
    old, new = previous.personas, current.personas
    if old is None:
        return None  # a run without personas: its "none" cells must still be planned (checked on the plans)
    if new is None:
        return f"personas from '{old.id}', which this command does not give"
    if old.id != new.id:
        return f"a different persona set (the run used '{old.id}', this command '{new.id}')"
    if old.texts is None or new.texts is None:
        return None if old.content_hash == new.content_hash else (
            f"a changed persona set '{old.id}' (its content has changed since the run)")
    for persona, text in old.texts.items():
        if new.texts.get(persona) is None:
            return f"persona '{persona}', which this command does not plan"
        if new.texts[persona] != text:
            return f"a changed persona '{persona}' (its text has changed since the run)"
        if (old.targets or {}).get(persona) != (new.targets or {}).get(persona):
            return f"a changed persona '{persona}' (its target levels have changed since the run)"
    return None


def _shrunk(changes: dict[str, dict[str, object]], dropped_inventories: list[str]) -> str | None:
    """The first option whose change drops levels the run has, as words; None when none does."""
    if dropped_inventories:
        return f"inventory '{dropped_inventories[0]}', which this command does not give"
    for key, change in changes.items():
        old, new = change["from"], change["to"]
        if key in ("samples", "item_orders") and isinstance(old, int) and isinstance(new, int) and new < old:
            return f"{key} {old} (this command gives {new})"
        if key == "paraphrases" and old == "all" and new == "none":
            return "paraphrases all (this command gives none)"
        olds = old if isinstance(old, list) else [old]
        news = new if isinstance(new, list) else [new]
        if key in ("option_orders", "templates", "modes", "temperature", "persona_ids") and old is not None:
            missing = [level for level in olds if level not in news] if new is not None else olds
            if missing and not (key == "persona_ids" and new is None):
                return f"{key.replace('_', ' ')} {_shown(missing)}, which this command does not give"
    return None


def check_growth(run_dir, previous, current, replan: Replan, planned_ids: list[str]):
    """The :class:`~psychometrics.run.manifest.DesignExtension` that takes run ``previous`` to the command's
    ``current`` manifest (``planned_ids``: the command's plan), or a one-line refusal naming what differs.

    ``replan`` plans the run's own design with the command's inputs; the run's plan hash must come out
    as recorded, and each of its ids must be in ``planned_ids``."""
    from psychometrics.run.identity import _changed_hash, _hashes, check_resumable, plan_hash, template_hashes
    from psychometrics.run.manifest import DesignExtension

    if previous.model != current.model or previous.backend_params != current.backend_params:
        check_resumable(run_dir, previous, current)  # refuses, naming the model or its settings
    changes = design_changes(previous, current)
    for key, name in _FIXED_NAMES.items():
        if key in changes:
            raise _refuse(run_dir, f"a different {name} (the run used {_shown(changes[key]['from'])}, this command "
                                   f"{_shown(changes[key]['to'])})")
    other = [key for key in changes if key not in GROWABLE and key not in _FIXED_NAMES]
    if other:  # an option added to the design later: fixed unless listed as growable
        raise _refuse(run_dir, f"a different {other[0]} (the run used {_shown(changes[other[0]]['from'])}, this "
                               f"command {_shown(changes[other[0]]['to'])})")
    old_inventories = _hashes(previous.inventories)
    new_inventories = _hashes(current.inventories)
    dropped = [inv for inv in old_inventories if inv not in new_inventories]
    changed = _changed_hash("inventory", old_inventories,
                            {k: v for k, v in new_inventories.items() if k in old_inventories})
    if changed and not dropped:
        raise _refuse(run_dir, changed)
    shrunk = _shrunk(changes, dropped)
    if shrunk:
        raise _refuse(run_dir, shrunk)
    persona_problem = _persona_problem(previous, current)
    if persona_problem:
        raise _refuse(run_dir, persona_problem)
    old_templates = previous.prompts.templates
    changed = _changed_hash("template", old_templates,
                            {k: v for k, v in template_hashes(old_templates).items()})
    if changed:
        raise _refuse(run_dir, changed)
    persona_ids = list(previous.personas.targets) if previous.personas and previous.personas.targets else None
    old_ids = replan(previous.design, list(old_inventories), persona_ids)
    if plan_hash(old_ids) != previous.prompts.plan:
        from psychometrics.run.identity import _rendering_changed

        raise _refuse(run_dir, _rendering_changed(previous, current))
    planned = set(planned_ids)
    lost = [request_id for request_id in old_ids if request_id not in planned]
    if lost:
        raise _refuse(run_dir, f"{len(lost):,} of its {len(old_ids):,} requests, which this command would plan "
                               "differently (new levels rename or replace existing cells)")
    return DesignExtension(
        at=_now(), changed=changes, inventories_added=[inv for inv in new_inventories if inv not in old_inventories],
        previous_design=previous.design, requests_before=len(old_ids),
        requests_planned=len(planned_ids), requests_added=len(planned_ids) - len(old_ids),
    )


def _now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
