"""A behaviour run is identified by what its tasks send: a corrected scoring rule re-scores the stored
replies (and says so), while a changed prompt is a different run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from psychometrics.behavior.analysis import behavior_frame
from psychometrics.run.owner import open_run
from psychometrics.behavior.runner import BehaviorDesign, behave, prompt_hash
from psychometrics.behavior.task import TASK_DIR, resolve_tasks
from psychometrics.errors import PsytestError
from psychometrics.models import resolve_model


def _task_file(tmp_path: Path, edit=None) -> Path:
    data = yaml.safe_load((TASK_DIR / "dictator-game.yaml").read_text(encoding="utf-8"))
    if edit is not None:
        edit(data)
    path = tmp_path / "dictator.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _run(path: Path, run_dir: Path):
    return behave(resolve_model("sim/a=1,seed=4"), resolve_tasks(str(path)), BehaviorDesign(variants=3), run_dir,
                  task_sources={"dictator-game": str(path)})


def test_prompt_hash_ignores_scoring_but_not_prompts(tmp_path):
    original = resolve_tasks(str(_task_file(tmp_path)))[0]
    rescored = resolve_tasks(str(_task_file(tmp_path, lambda d: d.update(measure=d["measure"] + " (revised)"))))[0]
    reworded = resolve_tasks(str(_task_file(
        tmp_path, lambda d: d["variants"][0].update(turns=[d["variants"][0]["turns"][0] + " Thank you."]))))[0]
    longer = resolve_tasks(str(_task_file(tmp_path, lambda d: d.update(max_tokens=d["max_tokens"] + 1))))[0]
    assert rescored.content_hash != original.content_hash
    assert prompt_hash(rescored) == prompt_hash(original)
    assert prompt_hash(reworded) != prompt_hash(original)
    assert prompt_hash(longer) != prompt_hash(original)


def test_a_scoring_change_rescores_stored_replies_and_is_noted(tmp_path):
    run_dir = tmp_path / "run"
    path = _task_file(tmp_path)
    first = _run(path, run_dir)
    assert first.stats.sent == 3
    before = behavior_frame(run_dir)["score"].to_numpy()
    assert len(before) == 3 and (before > 0).all()

    # The endowment-relative share becomes a share of twice the endowment: the same replies, half the score.
    def double_divisor(data):
        data["scoring"]["divide_by"] = "double"
        for variant in data["variants"]:
            variant["params"]["double"] = 2 * variant["params"]["endowment"]
    _task_file(tmp_path, double_divisor)
    assert open_run(run_dir, expect="behavior").changed_scoring() == ["dictator-game"]
    after = behavior_frame(run_dir)["score"].to_numpy()
    assert after == pytest.approx(before / 2)
    # Resuming after the correction sends nothing: the stored replies are still this run's.
    again = _run(path, run_dir)
    assert again.stats.sent == 0


def test_a_changed_prompt_is_refused_by_the_analysis(tmp_path):
    run_dir = tmp_path / "run"
    path = _task_file(tmp_path)
    _run(path, run_dir)
    _task_file(tmp_path, lambda d: d["variants"][1].update(turns=[d["variants"][1]["turns"][0] + " Be quick."]))
    with pytest.raises(PsytestError, match="asks something different from what the run sent"):
        behavior_frame(run_dir)


def test_variants_added_later_leave_a_run_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    path = _task_file(tmp_path)
    _run(path, run_dir)  # the first 3 variants

    def one_more(data):
        extra = dict(data["variants"][0], id="v99")
        extra["turns"] = [extra["turns"][0] + " (A new cover story would go here.)"]
        data["variants"].append(extra)
    _task_file(tmp_path, one_more)
    assert len(behavior_frame(run_dir)) == 3
    assert _run(path, run_dir).stats.sent == 0
