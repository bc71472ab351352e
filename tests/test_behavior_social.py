"""The repaired social battery: signal detection of over-claiming (checked against R), the task
``method`` field and the MTMM method it puts hypothetical/intention tasks in, and the file checks of the
calibration, opinion-change and rating-consistency kinds. Reply readings are in test_behavior_replies."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from psychometrics.behavior.signal_detection import signal_detection
from psychometrics.behavior.task import TaskError, load_task, resolve_tasks, shipped_tasks
from psychometrics.validity.statistics import behavior_mtmm, task_methods

REFERENCE = Path(__file__).parent / "reference"


def test_signal_detection_matches_r():
    cases = json.loads((REFERENCE / "golden" / "signal_detection.json").read_text())["cases"]
    assert len(cases) == 7
    for case in cases:
        got = signal_detection(case["hits"], case["n_signal"], case["false_alarms"], case["n_noise"])
        for key in ("hit_rate", "false_alarm_rate", "d_prime", "c"):
            assert got[key] == pytest.approx(case[key], abs=1e-12), (case, key)


@pytest.mark.parametrize("args", [(6, 5, 0, 3), (1, 5, 4, 3), (0, 0, 0, 3), (1, 5, -1, 3)])
def test_signal_detection_refuses_impossible_counts(args):
    with pytest.raises(ValueError):
        signal_detection(*args)


def _write(tmp_path, name, data) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _shipped(name: str) -> dict:
    from psychometrics.behavior.task import TASK_DIR

    return yaml.safe_load((TASK_DIR / f"{name}.yaml").read_text())


def test_method_field_is_checked_and_left_out_of_the_run_identity(tmp_path):
    data = _shipped("social-choice")
    assert data["method"] == "self-report"
    with pytest.raises(TaskError, match=r"social\.yaml: field 'method': must be one of behavior, self-report"):
        load_task(_write(tmp_path, "social", {**data, "method": "intention"}))
    labelled = load_task(_write(tmp_path, "a", data))
    unlabelled = load_task(_write(tmp_path, "b", {k: v for k, v in data.items() if k != "method"}))
    assert (labelled.method, unlabelled.method) == ("self-report", "behavior")
    assert labelled.content_hash == unlabelled.content_hash  # stored runs of the task stay its runs


def test_hypothetical_tasks_are_labelled_self_report():
    methods = {t.id: t.method for t in resolve_tasks("all")}
    hypothetical = {"social-choice", "novelty-choice", "setback-writing", "intention-sycophancy",
                    "intention-overclaiming", "intention-alternative-uses"}
    assert {t for t, m in methods.items() if m == "self-report"} == hypothetical
    assert "quiz-claim" not in shipped_tasks() and "calibration" in shipped_tasks()


def test_task_methods_from_column_or_shipped_file():
    frame = pd.DataFrame({"task": ["social-choice", "dictator-game", "my-own-task"]})
    assert task_methods(frame) == {"social-choice": "intention", "dictator-game": "behavior",
                                   "my-own-task": "behavior"}
    declared = frame.assign(method=["behavior", "self-report", "behavior"])
    assert task_methods(declared) == {"social-choice": "behavior", "dictator-game": "intention",
                                      "my-own-task": "behavior"}


def test_intention_tasks_are_their_own_mtmm_method():
    """The R reference data (validity.R) with its shipped labels: social-choice (extraversion) and
    setback-writing (neuroticism) move to the method 'intention'; their correlations are those R gives
    for them as 'behavior' when they were the trait's only tasks."""
    read = lambda name: pd.read_csv(REFERENCE / "data" / f"validity-{name}.csv")
    golden = json.loads((REFERENCE / "golden" / "validity.json").read_text())["mtmm"]
    reference = {frozenset((ref["a"], ref["b"])): ref for ref in golden["pairs"]}
    table, _ = behavior_mtmm(read("selfreport"), read("behavior"))
    assert set(table["method_a"]) | set(table["method_b"]) == {"inv-a", "inv-b", "behavior", "intention"}
    behaviour = set(table.loc[table["method_a"] == "behavior", "trait_a"]) | set(
        table.loc[table["method_b"] == "behavior", "trait_b"])
    intention = set(table.loc[table["method_a"] == "intention", "trait_a"]) | set(
        table.loc[table["method_b"] == "intention", "trait_b"])
    assert (behaviour, intention) == ({"agreeableness"}, {"extraversion", "neuroticism"})
    checked = 0
    for row in table.itertuples():
        names = [f"{'behavior' if m == 'intention' else m}|{t}"
                 for m, t in ((row.method_a, row.trait_a), (row.method_b, row.trait_b))]
        ref = reference[frozenset(names)]
        assert row.r == pytest.approx(ref["r"], abs=1e-10) and row.n == ref["n"], names
        checked += 1
    assert checked == len(table) > 0


def _calibration(**item_changes) -> dict:
    data = _shipped("calibration")
    data["variants"] = [data["variants"][0]]
    data["variants"][0]["items"][0].update(item_changes)
    return data


@pytest.mark.parametrize("changes, words", [
    ({"real": False}, "has no right answer ('real: false'); remove its 'pattern'"),
    ({"pattern": None}, "needs a 'pattern'"),
    ({"pattern": "australia"}, "matches the question itself"),
])
def test_calibration_items_are_checked(tmp_path, changes, words):
    data = _calibration(**changes)
    data["variants"][0]["items"][0] = {k: v for k, v in data["variants"][0]["items"][0].items() if v is not None}
    with pytest.raises(TaskError, match=r"calibration\.yaml: variant 'v01': field 'items'") as error:
        load_task(_write(tmp_path, "calibration", data), min_variants=1)
    assert words in str(error.value)


def test_calibration_needs_both_kinds_of_item(tmp_path):
    data = _calibration()
    data["variants"][0]["items"] = [i for i in data["variants"][0]["items"] if i.get("pattern")]
    with pytest.raises(TaskError, match="give both answerable items"):
        load_task(_write(tmp_path, "calibration", data), min_variants=1)


def test_opinion_questions_have_no_right_answer(tmp_path):
    data = _shipped("opinion-sycophancy")
    data["variants"] = [data["variants"][0]]
    data["variants"][0]["options"][0]["correct"] = True
    with pytest.raises(TaskError, match="an opinion question has no 'correct' or 'suggested' option"):
        load_task(_write(tmp_path, "opinion", data), min_variants=1)


@pytest.mark.parametrize("scoring", [{"low": 5, "high": 1}, {"low": 1.5}, {"low": True}])
def test_rating_consistency_scale_is_checked(tmp_path, scoring):
    data = {**_shipped("persona-consistency"), "scoring": scoring}
    with pytest.raises(TaskError, match="scoring: 'low' and 'high' must be whole numbers"):
        load_task(_write(tmp_path, "consistency", data))


def test_rating_consistency_needs_an_unrelated_turn(tmp_path):
    data = _shipped("persona-consistency")
    data["variants"][0]["turns"] = data["variants"][0]["turns"][:1] + data["variants"][0]["turns"][-1:]
    with pytest.raises(TaskError, match="variant 'v01': field 'turns': give the rating question"):
        load_task(_write(tmp_path, "consistency", data))
