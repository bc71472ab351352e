"""Behaviour scores of a behaviour run: one row per conversation, summaries per task and per respondent.

Every conversation is re-scored from its stored replies with the current scoring rule (the stored score
is not trusted), so a corrected parser applies to old runs. Conversations that failed or whose replies
could not be read are missing data: they count in the missing rate, never as a score of zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from psychometrics.behavior.kinds import Rendered
from psychometrics.behavior.runner import BEHAVIOR_DB, MANIFEST, score_conversation
from psychometrics.behavior.store import BehaviorStore
from psychometrics.behavior.task import Task, resolve_tasks
from psychometrics.errors import PsytestError

FRAME_COLUMNS = [
    "model", "persona", "sample", "task", "variant", "trait", "direction", "outcome", "score",
    "first_position", "request_id",
]


def read_behavior_manifest(run_dir: Path) -> dict:
    path = Path(run_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PsytestError(f"{run_dir}: not a psytest run directory (no {MANIFEST})") from None
    except json.JSONDecodeError as exc:
        raise PsytestError(f"{path}: corrupt manifest ({exc.msg} at line {exc.lineno})") from None
    if manifest.get("study") != "behavior":
        raise PsytestError(f"{run_dir}: a questionnaire run, not a behaviour run (made by 'psytest behave')")
    return manifest


def run_tasks(manifest: dict) -> dict[str, Task]:
    """The run's tasks, loaded again from where the run found them. What they send must be what the run
    sent (their prompt hash); their scoring may have changed since, and then applies to the stored replies
    (:func:`changed_scoring` names those tasks)."""
    from psychometrics.behavior.runner import prompt_hash

    tasks = {}
    for entry in manifest.get("tasks", []):
        source = manifest.get("task_sources", {}).get(entry["id"], entry["id"])
        task = resolve_tasks(source)[0]
        same = (prompt_hash(task) == entry["prompt_hash"]) if "prompt_hash" in entry else (
            task.content_hash == entry.get("content_hash"))
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


def _user_turns(transcript: list[list[str]]) -> tuple[str, ...]:
    return tuple(content for role, content in transcript if role == "user")


def _replies(transcript: list[list[str]]) -> list[str | None]:
    return [content for role, content in transcript if role == "assistant"]


def behavior_frame(run_dir: Path) -> pd.DataFrame:
    """One row per conversation: model, persona, sample, task, variant, trait, direction, outcome, score
    (NaN unless valid), whether the chosen option was the first displayed, and the request id."""
    run_dir = Path(run_dir)
    manifest = read_behavior_manifest(run_dir)
    tasks = run_tasks(manifest)
    records = []
    with BehaviorStore(run_dir / BEHAVIOR_DB) as store:
        for row in store.rows():
            task = tasks.get(row.task)
            score, outcome, first = np.nan, row.outcome, np.nan
            if row.error is not None:
                outcome = "error"
            elif task is not None:
                variant = task.variant(row.variant)
                scored = score_conversation(task, variant, Rendered(_user_turns(row.transcript), tuple(row.display)),
                                            _replies(row.transcript))
                outcome = scored.outcome
                if scored.outcome == "valid" and scored.score is not None:
                    score = float(scored.score)
                chosen = (scored.detail or {}).get("chosen")
                if row.display and chosen in row.display:
                    first = float(row.display.index(chosen) == 0)
            records.append((manifest["model"], row.persona, row.sample, row.task, row.variant, row.trait, row.direction,
                            outcome, score, first, row.request_id))
    return pd.DataFrame.from_records(records, columns=FRAME_COLUMNS)


def task_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task: conversations, valid share, missing by reason, mean, SD and range of valid scores, and
    the share of choices that fell on the first displayed option (a position-bias check)."""
    rows = []
    for (task, trait, direction), part in frame.groupby(["task", "trait", "direction"], sort=True):
        valid = part["score"].dropna()
        reasons = part.loc[part["outcome"] != "valid", "outcome"].value_counts()
        first = part["first_position"].dropna()
        rows.append({
            "task": task, "trait": trait, "direction": int(direction), "conversations": len(part),
            "valid": len(valid), "valid_share": len(valid) / len(part) if len(part) else np.nan,
            "missing_reasons": "; ".join(f"{k} {v}" for k, v in reasons.items()),
            "mean": valid.mean() if len(valid) else np.nan,
            "sd": valid.std(ddof=1) if len(valid) > 1 else np.nan,
            "min": valid.min() if len(valid) else np.nan, "max": valid.max() if len(valid) else np.nan,
            "first_option_share": first.mean() if len(first) else np.nan,
        })
    return pd.DataFrame(rows)


def respondent_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Per respondent (model x persona) and task: mean valid score over variants and samples, with counts."""
    grouped = frame.groupby(["model", "persona", "task", "trait", "direction"], sort=True)
    out = grouped["score"].agg(score="mean", valid="count").reset_index()
    out["conversations"] = grouped.size().to_numpy()
    return out


def behavior_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """All tables of one behaviour run (behaviour reliability comes from :mod:`psychometrics.validity`)."""
    frame = behavior_frame(run_dir)
    tables = {
        "behavior_scores": frame,
        "behavior_summary": task_summary(frame),
        "behavior_by_respondent": respondent_scores(frame),
    }
    from psychometrics.validity import behavior_reliability

    tasks = run_tasks(read_behavior_manifest(Path(run_dir)))
    tables["behavior_reliability"] = behavior_reliability(
        frame, {task.id: [v.id for v in task.variants] for task in tasks.values()}
    )
    return tables
