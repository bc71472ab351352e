"""Behaviour scores of a behaviour run: one row per conversation, summaries per task and per respondent.

Every conversation is re-scored from its stored replies with the current scoring rule (the stored score
is not trusted), so a corrected parser applies to old runs. Conversations that failed or whose replies
could not be read are missing data: they count in the missing rate, never as a score of zero.

Only the conversations the run's manifest plans are read (:func:`run_plan`): a store can hold others,
e.g. leftovers of an earlier, interrupted run with more ``--variants`` in the same directory, and they
would otherwise give some personas more variants than others. How many were ignored is reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from psychometrics.behavior.kinds import Rendered
from psychometrics.behavior.runner import score_conversation, truncated_turns
from psychometrics.behavior.task import Task
from psychometrics.errors import PsytestError

if TYPE_CHECKING:
    from psychometrics.run.manifest import BehaviorManifest
    from psychometrics.run.owner import Run

FRAME_COLUMNS = [
    "model", "persona", "sample", "task", "variant", "trait", "direction", "outcome", "score",
    "first_position", "truncated", "request_id", "mode", "first_probability", "options_shown",
]
#: How a probability-mode measure is named where text and probability scores of one task must stay apart
#: (validity, reliability): ``TASK@probs``.
PROBS_SUFFIX = "@probs"


def as_behavior_run(run: "Run | Path") -> "Run":
    """``run`` itself, or the behaviour run directory it names opened by the run owner."""
    from psychometrics.run.owner import Run, open_run

    return run if isinstance(run, Run) else open_run(run, expect="behavior")


def run_plan(manifest: "BehaviorManifest", tasks: dict[str, Task]) -> dict:
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

    stored = manifest.design
    design = BehaviorDesign(
        samples=stored.samples, temperature=float(stored.temperature), seed=stored.seed, personas=stored.personas,
        persona_ids=tuple(stored.persona_ids) if stored.persona_ids else None, variants=stored.variants,
        order=stored.order, mode=stored.mode,
    )
    ordered = [tasks[entry.id] for entry in manifest.tasks if entry.id in tasks]
    persona_set, usable = None, not design.personas
    if design.personas:
        from psychometrics.design.personas import resolve_persona_set

        try:
            persona_set = resolve_persona_set(design.personas)
            recorded = manifest.personas.content_hash if manifest.personas else None
            usable = recorded is not None and persona_set.content_hash == recorded
            if usable and design.persona_ids:
                persona_set.select(list(design.persona_ids))
        except PsytestError:
            usable = False
    if usable:
        planned = plan_conversations(ordered, design, manifest.model, manifest.backend_params, persona_set)
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


def behavior_frame(run_dir: "Run | Path") -> pd.DataFrame:
    """One row per planned conversation: model, persona, sample, task, variant, trait, direction, outcome,
    score (NaN unless valid), whether the chosen option was the first displayed, whether the last reply
    was cut off, the request id, the answer ``mode`` (``text``, or ``probs``: the score is the
    probability-weighted value of the options), in probs mode the probability of the option displayed
    first (``first_probability``), and the number of options or items displayed (``options_shown``, 0
    when none). Stored conversations outside the run's plan are left out (:func:`planned_behavior_frame`
    counts them)."""
    return planned_behavior_frame(run_dir)[0]


def planned_behavior_frame(run_dir: "Run | Path") -> tuple[pd.DataFrame, list[str]]:
    """:func:`behavior_frame` and notes: how many stored conversations lay outside the run's plan
    (:func:`run_plan`) and were ignored, and how the plan was rebuilt when it could not be exactly."""
    run = as_behavior_run(run_dir)
    run_dir, manifest = run.path, run.behavior
    tasks = run.tasks
    plan = run_plan(manifest, tasks)
    records, ignored, unmatched = [], 0, 0
    with run.store() as store:
        store.check_contents()
        turn_tokens = store.turn_output_tokens()
        for row in store.rows():
            in_cells = _in_cells(plan["keys"], row)
            if not (in_cells if plan["ids"] is None else row.request_id in plan["ids"]):
                ignored += 1
                unmatched += in_cells
                continue
            task = tasks.get(row.task)
            score, outcome, first, cut, first_p = np.nan, row.outcome, np.nan, np.nan, np.nan
            mode = "probs" if isinstance(row.detail, dict) and row.detail.get("mode") == "probs" else "text"
            if row.error is not None:
                outcome = "error"
            elif task is not None and mode == "probs":
                scored = _score_probs(run, task, row)
                outcome = scored.outcome
                if scored.outcome == "valid" and scored.score is not None:
                    score = float(scored.score)
                    first_p = float(scored.detail["first_probability"])
            elif task is not None:
                try:
                    variant = task.variant(row.variant)
                except KeyError:
                    raise PsytestError(f"{run.store_path}: conversation {row.request_id[:12]} names variant "
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
            records.append((manifest.model, row.persona, row.sample, row.task, row.variant, row.trait, row.direction,
                            outcome, score, first, cut, row.request_id, mode, first_p, len(row.display)))
    notes = []
    if manifest.design.mode == "both":
        from psychometrics.behavior.runner import BehaviorDesign, probs_tasks

        design = BehaviorDesign(variants=manifest.design.variants, mode="both")
        skipped = probs_tasks([tasks[t.id] for t in manifest.tasks if t.id in tasks], design)[1]
        if skipped:
            notes.append(f"{run_dir}: --mode both: {', '.join(t.id for t in skipped)} cannot be read from option-label "
                         "probabilities (only single-turn choice tasks can); text only")
    if plan["how"] == "key":
        notes.append(f"{run_dir}: the persona set the run used could not be loaded unchanged; its plan was rebuilt "
                     "from the manifest's tasks, variants, samples and persona ids instead of request ids")
    if ignored:
        recorded = manifest.design
        notes.append(f"{run_dir}: {ignored} stored conversation(s) outside the run's plan were ignored (the manifest "
                     f"plans {recorded.variants or 'all'} variant(s) per task, {recorded.samples} "
                     "sample(s) and its personas; e.g. leftovers of an earlier run in the same directory)")
    if unmatched:
        notes.append(f"{run_dir}: {unmatched} of them are in a planned persona x sample x task x variant cell but "
                     "were sent differently (another request id: persona text, rendering, seed or backend "
                     "parameters differ from what the manifest plans)")
    return pd.DataFrame.from_records(records, columns=FRAME_COLUMNS), notes


def _score_probs(run: "Run", task: Task, row):
    """Re-score a probability-mode conversation from the label log-probabilities its turn stored."""
    from psychometrics.behavior.kinds import get_kind
    from psychometrics.behavior.runner import stored_logprobs
    from psychometrics.models.base import MalformedReply

    try:
        variant = task.variant(row.variant)
    except KeyError:
        raise PsytestError(f"{run.store_path}: conversation {row.request_id[:12]} names variant '{row.variant}', which "
                           f"task '{task.id}' does not have; the store was changed or damaged: restore it, or run "
                           "again into a new --out") from None
    try:
        logprobs = stored_logprobs(json.dumps((row.detail or {}).get("logprobs") or {}))
    except MalformedReply as exc:
        raise PsytestError(f"{run.store_path}: conversation {row.request_id[:12]}: its stored label log-probabilities "
                           f"are not ones ({exc}); the store was changed or damaged: restore it, or run again into a "
                           "new --out") from None
    return get_kind(task.kind).score_probs(task, variant, Rendered(_user_turns(row.transcript), tuple(row.display)),
                                           logprobs)


def by_measure(frame: pd.DataFrame, variant_order: dict[str, list[str]] | None = None):
    """``frame`` with probability-mode rows renamed to task ``TASK@probs`` (:data:`PROBS_SUFFIX`): text
    and probability scores of one task are different measures (validity pairs, reliability, respondent
    scores keep them apart). With ``variant_order``, also that mapping extended to the renamed tasks."""
    if "mode" in frame.columns and (frame["mode"] == "probs").any():
        frame = frame.copy()
        probs = frame["mode"] == "probs"
        frame.loc[probs, "task"] = frame.loc[probs, "task"] + PROBS_SUFFIX
        if variant_order is not None:
            variant_order = {**variant_order, **{t + PROBS_SUFFIX: v for t, v in variant_order.items()}}
    return frame if variant_order is None else (frame, variant_order)


def relative_to_model(frame: pd.DataFrame, tasks: dict[str, Task]) -> pd.DataFrame:
    """``frame`` with the scores of tasks whose kind is relative to the model (:attr:`Kind.relative_to_model`,
    e.g. reply length) divided by that model's mean valid score on the task: 1 is the model's usual.
    (The validity analysis scores such tasks with a respondent x variant ratio model instead:
    :mod:`psychometrics.validity.behavior_scores`.)"""
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
    share of choices that fell on the first displayed option (text mode) or the mean probability of the
    first displayed option (probability mode), each beside its chance level, the mean of 1/k over the
    conversations showing k options (position-bias checks), and the share of last replies cut off at the
    task's ``max_tokens`` (a ceiling on free-text scores)."""
    rows = []
    for (task, trait, direction), part in frame.groupby(["task", "trait", "direction"], sort=True):
        valid = part["score"].dropna()
        reasons = part.loc[part["outcome"] != "valid", "outcome"].value_counts()
        first = part["first_position"].dropna()
        first_p = part["first_probability"].dropna()
        k = part.loc[part["first_position"].notna() | part["first_probability"].notna(), "options_shown"]
        k = k[k >= 2]
        cut = part["truncated"].dropna()
        rows.append({
            "task": task, "trait": trait, "direction": int(direction), "conversations": len(part),
            "valid": len(valid), "valid_share": len(valid) / len(part) if len(part) else np.nan,
            "missing_reasons": "; ".join(f"{k} {v}" for k, v in reasons.items()),
            "mean": valid.mean() if len(valid) else np.nan,
            "sd": valid.std(ddof=1) if len(valid) > 1 else np.nan,
            "min": valid.min() if len(valid) else np.nan, "max": valid.max() if len(valid) else np.nan,
            "first_option_share": first.mean() if len(first) else np.nan,
            "first_option_probability": first_p.mean() if len(first_p) else np.nan,
            "first_option_chance": (1.0 / k).mean() if len(k) else np.nan,
            "truncated_share": cut.mean() if len(cut) else np.nan,
        })
    return pd.DataFrame(rows)


def respondent_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Per respondent (model x persona) and task: mean valid score over variants and samples, with counts."""
    grouped = frame.groupby(["model", "persona", "task", "trait", "direction"], sort=True)
    out = grouped["score"].agg(score="mean", valid="count").reset_index()
    out["conversations"] = grouped.size().to_numpy()
    return out


def behavior_tables(run_dir: "Run | Path") -> dict[str, pd.DataFrame]:
    """All tables of one behaviour run (behaviour reliability comes from :mod:`psychometrics.validity.statistics`)."""
    run = as_behavior_run(run_dir)
    frame, notes = planned_behavior_frame(run)
    tasks = run.tasks
    measures, variant_order = by_measure(frame, {task.id: [v.id for v in task.variants] for task in tasks.values()})
    tables = {
        "behavior_scores": frame,
        "behavior_summary": task_summary(measures),
        "behavior_by_respondent": respondent_scores(measures),
    }
    from psychometrics.validity.behavior_scores import mark_ratio_tasks
    from psychometrics.validity.statistics import behavior_reliability

    tables["behavior_reliability"] = behavior_reliability(mark_ratio_tasks(measures, run.tasks), variant_order)
    if notes:
        tables["behavior_notes"] = pd.DataFrame({"note": notes})
    return tables
