"""Replies cut off at a task's reply limit, and scores on a scale each model sets for itself (length)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from psychometrics.behavior.analysis import behavior_frame, relative_to_model, task_summary
from psychometrics.behavior.kinds import get_kind
from psychometrics.behavior.runner import BehaviorDesign, behave, score_conversation, truncated_turns
from psychometrics.behavior.store import BehaviorStore
from psychometrics.behavior.task import resolve_tasks
from psychometrics.models.base import ModelBackend, ModelReply, ModelRequest


def _rendered(task, variant):
    return get_kind(task.kind).render(task, variant, np.random.default_rng(0))


def test_truncated_turns_compares_with_the_reply_limit():
    task = resolve_tasks("alternative-uses")[0]
    assert truncated_turns(task, [task.max_tokens, task.max_tokens - 1, None]) == [True, False, None]


def test_a_cut_off_list_does_not_count_its_unfinished_last_line():
    task = resolve_tasks("alternative-uses")[0]
    variant = task.variants[0]
    reply = "1. Hang a photo on a string\n2. Clip a bag of crisps shut\n3. Hold a tablecloth down in wi"
    whole = score_conversation(task, variant, _rendered(task, variant), [reply])
    cut = score_conversation(task, variant, _rendered(task, variant), [reply], [True])
    assert whole.outcome == cut.outcome == "valid"
    assert cut.score == whole.score - 1 and cut.detail["truncated"] is True
    assert "truncated" not in whole.detail


def test_a_cut_off_reply_to_formatting_constraints_is_judged_as_written():
    """Compliance allows a value: a reply still running at the token limit did not stop within the words
    every variant allows, nor end as asked; what it wrote is judged."""
    task = resolve_tasks("formatting-constraints")[0]
    variant = task.variants[0]  # 40 to 80 words, "mountain", no "plastic", no commas, ends "Stay refreshed."
    reply = "Take this steel bottle up any mountain trail and " + "it keeps water cold all day long and " * 20
    scored = score_conversation(task, variant, _rendered(task, variant), [reply], [True])
    assert scored.outcome == "valid" and scored.detail["truncated"]
    assert sorted(scored.detail["failed"]) == ["ends_with", "max_words"]
    assert scored.score == pytest.approx(4 / 6)


def test_a_cut_off_number_reply_is_still_read_and_flagged():
    task = resolve_tasks("dictator-game")[0]
    variant = task.variants[0]
    scored = score_conversation(task, variant, _rendered(task, variant), ["I pass 40 dollars, because"], [True])
    assert scored.outcome == "valid" and scored.score == pytest.approx(0.4) and scored.detail["truncated"]


class _Wordy(ModelBackend):
    """Replies with a list whose last line is always cut off at the reply limit."""

    name = "wordy"

    async def complete(self, request: ModelRequest) -> ModelReply:
        text = "1. Prop a door open\n2. Mark a page in a book\n3. Hold cables tid"
        return ModelReply(text=text, input_tokens=50, output_tokens=request.max_tokens)


def test_the_analysis_reads_truncation_from_the_stored_turns(tmp_path):
    tasks = resolve_tasks("alternative-uses")
    behave(_Wordy(), tasks, BehaviorDesign(variants=2), tmp_path / "run")
    frame = behavior_frame(tmp_path / "run")
    assert frame["truncated"].tolist() == [1.0, 1.0] and frame["score"].tolist() == [2.0, 2.0]
    summary = task_summary(frame)
    assert summary.loc[0, "truncated_share"] == 1.0
    with BehaviorStore(tmp_path / "run" / "behavior.sqlite") as store:
        assert all(row.detail["truncated"] for row in store.rows())


def test_length_scores_are_relative_to_each_models_mean():
    tasks = {t.id: t for t in resolve_tasks("expressiveness,dictator-game")}
    frame = pd.DataFrame({
        "model": ["terse"] * 3 + ["wordy"] * 3 + ["terse"],
        "task": ["expressiveness"] * 6 + ["dictator-game"],
        "score": [10.0, 20.0, np.nan, 100.0, 300.0, 200.0, 0.4],
    })
    relative = relative_to_model(frame, tasks)
    assert relative["score"].iloc[:6].tolist()[:2] == [pytest.approx(2 / 3), pytest.approx(4 / 3)]
    assert np.isnan(relative["score"].iloc[2])
    assert relative["score"].iloc[3:6].tolist() == [pytest.approx(0.5), pytest.approx(1.5), pytest.approx(1.0)]
    assert relative["score"].iloc[6] == 0.4  # other tasks keep their own units
    assert frame["score"].iloc[0] == 10.0  # the input is not changed
