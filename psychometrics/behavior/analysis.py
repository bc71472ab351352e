"""Behaviour scores of a behaviour run: one row per conversation, summaries per task and per respondent.

Every conversation is re-scored from its stored replies with the current scoring rule (the stored score
is not trusted), so a corrected parser applies to old runs. Conversations that failed or whose replies
could not be read are missing data: they count in the missing rate, never as a score of zero.

Only the conversations the run's manifest plans are read (:func:`run_plan`): a store can hold others,
e.g. leftovers of an earlier, interrupted run with more ``--variants`` in the same directory, and they
would otherwise give some personas more variants than others. How many were ignored is reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from psychometrics.behavior.kinds import Rendered
from psychometrics.behavior.runner import BEHAVIOR_DB, score_conversation, truncated_turns
from psychometrics.behavior.store import BehaviorStore
from psychometrics.behavior.task import Task, resolve_tasks
from psychometrics.errors import PsytestError

FRAME_COLUMNS = [
    "model", "persona", "sample", "task", "variant", "trait", "direction", "outcome", "score",
    "first_position", "truncated", "request_id",
]


def read_behavior_manifest(run_dir: Path) -> dict:
    from psychometrics.run.directory import read_manifest

    return read_manifest(Path(run_dir), study="behavior")


def run_tasks(manifest: dict) -> dict[str, Task]:
    """The run's tasks, loaded again from where the run found them. What they send must be what the run
    sent (their prompt hash); their scoring may have changed since, and then applies to the stored replies
    (:func:`changed_scoring` names those tasks)."""
    from psychometrics.behavior.runner import prompt_hash

    tasks = {}
    n_variants = (manifest.get("design") or {}).get("variants")
    for entry in manifest.get("tasks", []):
        source = manifest.get("task_sources", {}).get(entry["id"], entry["id"])
        task = resolve_tasks(source)[0]
        if "prompt_hash" in entry:
            same = entry["prompt_hash"] == prompt_hash(task, n_variants)
        else:  # older manifests identified a task by its whole content
            same = task.content_hash == entry.get("content_hash")
        if not same:
            raise PsytestError(
                f"task '{entry['id']}' ({source}) asks something different from what the run sent; its scores would "
                "not match the stored replies. Restore the file the run used"
            )
        tasks[task.id] = task
    return tasks


def changed_scoring(manifest: dict, tasks: dict[str, Task]) -> list[str]:
    """Tasks whose file changed since the run without changing what they send (a corrected scoring rule)."""
    recorded = manifest.get("task_content_hashes", {})
    return sorted(t for t, task in tasks.items() if t in recorded and recorded[t] != task.content_hash)


def run_plan(manifest: dict, tasks: dict[str, Task]) -> dict:
    """What the run planned, rebuilt from its manifest.

    Returns ``{"how", "ids", "keys"}``. ``keys`` are the planned ``(persona or None, sample, task, variant)``
    cells: the first ``design.variants`` variants of each task, samples ``0 .. samples-1`` and the
    ``persona_ids`` when the run named them (None matches any persona). When the persona set can be
    loaded and is the one the run used (same content hash), ``how`` is ``"request_id"`` and ``ids`` the
    request ids of :func:`~psychometrics.behavior.runner.plan_conversations` for the manifest's model,
    backend parameters, design and tasks (a stored row must match one exactly); otherwise ``how`` is
    ``"key"``, ``ids`` None, and a row must fall in a planned cell.
    """
    from psychometrics.behavior.runner import BehaviorDesign, plan_conversations

    design_entry = manifest.get("design") or {}
    design = BehaviorDesign(
        samples=int(design_entry.get("samples", 1)), temperature=float(design_entry.get("temperature", 0.0)),
        seed=int(design_entry.get("seed", 0)), personas=design_entry.get("personas"),
        persona_ids=tuple(design_entry["persona_ids"]) if design_entry.get("persona_ids") else None,
        variants=design_entry.get("variants"),
    )
    ordered = [tasks[entry["id"]] for entry in manifest.get("tasks", []) if entry["id"] in tasks]
    persona_set, usable = None, not design.personas
    if design.personas:
        from psychometrics.design.personas import resolve_persona_set

        try:
            persona_set = resolve_persona_set(design.personas)
            recorded = (manifest.get("personas") or {}).get("content_hash")
            usable = recorded is not None and persona_set.content_hash == recorded
            if usable and design.persona_ids:
                persona_set.select(list(design.persona_ids))
        except PsytestError:
            usable = False
    if usable and "backend_params" in manifest:
        planned = plan_conversations(ordered, design, manifest["model"], manifest["backend_params"], persona_set)
        return {"how": "request_id", "ids": {p.request_id for p in planned},
                "keys": {(p.persona, p.sample, p.task.id, p.variant.id) for p in planned}}
    personas = list(design.persona_ids) if design.persona_ids else [None if design.personas else "none"]
    keys = set()
    for task in ordered:
        variants = task.variants[: design.variants] if design.variants else task.variants
        keys |= {(persona, sample, task.id, variant.id) for persona in personas for sample in range(design.samples)
                 for variant in variants}
    return {"how": "key", "ids": None, "keys": keys}


def _in_cells(keys: set, row) -> bool:
    return (row.persona, row.sample, row.task, row.variant) in keys or (None, row.sample, row.task, row.variant) in keys


def _user_turns(transcript: list[list[str]]) -> tuple[str, ...]:
    return tuple(content for role, content in transcript if role == "user")


def _replies(transcript: list[list[str]]) -> list[str | None]:
    return [content for role, content in transcript if role == "assistant"]


def behavior_frame(run_dir: Path) -> pd.DataFrame:
    """One row per planned conversation: model, persona, sample, task, variant, trait, direction, outcome,
    score (NaN unless valid), whether the chosen option was the first displayed, and the request id.
    Stored conversations outside the run's plan are left out (:func:`planned_behavior_frame` counts them)."""
    return planned_behavior_frame(run_dir)[0]


def planned_behavior_frame(run_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """:func:`behavior_frame` and notes: how many stored conversations lay outside the run's plan
    (:func:`run_plan`) and were ignored, and how the plan was rebuilt when it could not be exactly."""
    run_dir = Path(run_dir)
    manifest = read_behavior_manifest(run_dir)
    tasks = run_tasks(manifest)
    plan = run_plan(manifest, tasks)
    records, ignored, unmatched = [], 0, 0
    with BehaviorStore(run_dir / BEHAVIOR_DB) as store:
        store.check_contents()
        turn_tokens = store.turn_output_tokens()
        for row in store.rows():
            in_cells = _in_cells(plan["keys"], row)
            if not (in_cells if plan["ids"] is None else row.request_id in plan["ids"]):
                ignored += 1
                unmatched += in_cells
                continue
            task = tasks.get(row.task)
            score, outcome, first, cut = np.nan, row.outcome, np.nan, np.nan
            if row.error is not None:
                outcome = "error"
            elif task is not None:
                try:
                    variant = task.variant(row.variant)
                except KeyError:
                    raise PsytestError(f"{run_dir / BEHAVIOR_DB}: conversation {row.request_id[:12]} names variant "
                                       f"'{row.variant}', which task '{task.id}' does not have; the store was changed "
                                       "or damaged: restore it, or run again into a new --out") from None
                truncated = truncated_turns(task, turn_tokens.get(row.request_id, []))
                if truncated and truncated[-1] is not None:
                    cut = float(truncated[-1])
                scored = score_conversation(task, variant, Rendered(_user_turns(row.transcript), tuple(row.display)),
                                            _replies(row.transcript), truncated)
                outcome = scored.outcome
                if scored.outcome == "valid" and scored.score is not None:
                    score = float(scored.score)
                chosen = (scored.detail or {}).get("chosen")
                if row.display and chosen in row.display:
                    first = float(row.display.index(chosen) == 0)
            records.append((manifest["model"], row.persona, row.sample, row.task, row.variant, row.trait, row.direction,
                            outcome, score, first, cut, row.request_id))
    notes = []
    if plan["how"] == "key":
        notes.append(f"{run_dir}: the persona set the run used could not be loaded unchanged; its plan was rebuilt "
                     "from the manifest's tasks, variants, samples and persona ids instead of request ids")
    if ignored:
        design = manifest.get("design") or {}
        notes.append(f"{run_dir}: {ignored} stored conversation(s) outside the run's plan were ignored (the manifest "
                     f"plans {design.get('variants') or 'all'} variant(s) per task, {design.get('samples', 1)} "
                     "sample(s) and its personas; e.g. leftovers of an earlier run in the same directory)")
    if unmatched:
        notes.append(f"{run_dir}: {unmatched} of them are in a planned persona x sample x task x variant cell but "
                     "were sent differently (another request id: persona text, rendering, seed or backend "
                     "parameters differ from what the manifest plans)")
    return pd.DataFrame.from_records(records, columns=FRAME_COLUMNS), notes


def relative_to_model(frame: pd.DataFrame, tasks: dict[str, Task]) -> pd.DataFrame:
    """``frame`` with the scores of tasks whose kind is relative to the model (:attr:`Kind.relative_to_model`,
    e.g. reply length) divided by that model's mean valid score on the task: 1 is the model's usual."""
    from psychometrics.behavior.kinds import get_kind

    relative = [t for t, task in tasks.items() if get_kind(task.kind).relative_to_model]
    rows = frame["task"].isin(relative)
    if not rows.any():
        return frame
    frame = frame.copy()
    means = frame[rows].groupby(["model", "task"])["score"].transform("mean")
    frame.loc[rows, "score"] = frame.loc[rows, "score"] / means.where(means > 0)
    return frame


def task_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task: conversations, valid share, missing by reason, mean, SD and range of valid scores, the
    share of choices that fell on the first displayed option (a position-bias check) and the share of
    last replies cut off at the task's ``max_tokens`` (a ceiling on free-text scores)."""
    rows = []
    for (task, trait, direction), part in frame.groupby(["task", "trait", "direction"], sort=True):
        valid = part["score"].dropna()
        reasons = part.loc[part["outcome"] != "valid", "outcome"].value_counts()
        first = part["first_position"].dropna()
        cut = part["truncated"].dropna()
        rows.append({
            "task": task, "trait": trait, "direction": int(direction), "conversations": len(part),
            "valid": len(valid), "valid_share": len(valid) / len(part) if len(part) else np.nan,
            "missing_reasons": "; ".join(f"{k} {v}" for k, v in reasons.items()),
            "mean": valid.mean() if len(valid) else np.nan,
            "sd": valid.std(ddof=1) if len(valid) > 1 else np.nan,
            "min": valid.min() if len(valid) else np.nan, "max": valid.max() if len(valid) else np.nan,
            "first_option_share": first.mean() if len(first) else np.nan,
            "truncated_share": cut.mean() if len(cut) else np.nan,
        })
    return pd.DataFrame(rows)


def respondent_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Per respondent (model x persona) and task: mean valid score over variants and samples, with counts."""
    grouped = frame.groupby(["model", "persona", "task", "trait", "direction"], sort=True)
    out = grouped["score"].agg(score="mean", valid="count").reset_index()
    out["conversations"] = grouped.size().to_numpy()
    return out


def behavior_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """All tables of one behaviour run (behaviour reliability comes from :mod:`psychometrics.validity.statistics`)."""
    frame, notes = planned_behavior_frame(run_dir)
    tables = {
        "behavior_scores": frame,
        "behavior_summary": task_summary(frame),
        "behavior_by_respondent": respondent_scores(frame),
    }
    from psychometrics.validity.statistics import behavior_reliability

    tasks = run_tasks(read_behavior_manifest(Path(run_dir)))
    tables["behavior_reliability"] = behavior_reliability(
        frame, {task.id: [v.id for v in task.variants] for task in tasks.values()}
    )
    if notes:
        tables["behavior_notes"] = pd.DataFrame({"note": notes})
    return tables
