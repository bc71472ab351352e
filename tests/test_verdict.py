"""The verdict (psychometrics/analysis/verdict.py): each label rule at its boundary on hand-made frames,
the respondents it is over, summary.json's form, and one simulated run whose label is known in advance."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from psychometrics.analysis import verdict as v
from psychometrics.analysis.verdict import LABEL_RULES, LABELS, summary_fields, verdict_table
from psychometrics.inventories.model import inventory_from_data
from psychometrics.statistics.norms import t_mean_ci

DATA = Path(__file__).parent / "data" / "inventories" / "valid-minimal.yaml"
GOLDEN = json.loads((Path(__file__).parent / "reference" / "golden" / "norms_mtmm.json").read_text())
E_ITEMS = ["e1", "e2", "e3"]  # scale E: mean of 1..5; its norm: mean 3.2, SD 0.8 -> fragile at 0.4 points


def _inventory(norms: bool = True):
    data = yaml.safe_load(DATA.read_text())
    if not norms:
        data = copy.deepcopy(data)
        data.pop("norms")
    return inventory_from_data(data, str(DATA))


def _cell(option_order="original", template="numbered", persona="none", sample=0) -> dict:
    return {"inventory": "tiny", "option_order": option_order, "template": template, "persona": persona,
            "wording": "original", "item_order": "none", "sample": sample, "mode": "text"}


def _scores(rows: list[tuple[dict, float]], scale: str = "E") -> pd.DataFrame:
    """Score rows: (cell, score) for scale ``scale``."""
    return pd.DataFrame([{**cell, "kind": "scale", "scale": scale, "score": score, "items_answered": 3,
                          "items_total": 3} for cell, score in rows])


def _answers(rows: list[tuple[dict, str, float | None, str]]) -> pd.DataFrame:
    """Answer rows: (cell, item, semantic value or None, outcome)."""
    return pd.DataFrame([{**cell, "item_id": item, "value": value, "outcome": outcome}
                         for cell, item, value, outcome in rows])


def _all_valid(cells: list[dict], value: float = 3.0) -> pd.DataFrame:
    return _answers([(cell, item, value, "valid") for cell in cells for item in E_ITEMS])


def _row(frame: pd.DataFrame, scale: str = "E") -> pd.Series:
    return frame[frame["scale"] == scale].iloc[0]


ORDERS = [_cell("original"), _cell("reversed")]


# --- not measurable: valid answers ----------------------------------------------------------------


@pytest.mark.parametrize("valid, label", [(3, "untested"), (2, "not measurable")])
def test_half_the_answers_valid_is_enough_and_fewer_is_not(valid, label):
    cells = [_cell(sample=s) for s in range(2)]  # 6 answers, one cell, two respondents
    outcomes = ["valid"] * valid + ["unparseable"] * (6 - valid)
    answers = _answers([(cell, item, 3.0 if o == "valid" else None, o)
                        for (cell, item), o in zip([(c, i) for c in cells for i in E_ITEMS], outcomes)])
    scores = _scores([(cells[0], 3.0), (cells[1], 3.0)])
    row = _row(verdict_table(scores, answers, [_inventory()]))
    assert row["valid_share"] == pytest.approx(valid / 6)
    assert row["label"] == label
    if label == "not measurable":
        assert "33%" in row["reason"] and "valid" in row["reason"]


def test_a_scale_without_answers_or_scores_is_not_measurable():
    answers = _all_valid([_cell()])  # only E was asked; A has no answers at all
    frame = verdict_table(_scores([(_cell(), 3.0)]), answers, [_inventory()])
    assert _row(frame, "A")["label"] == "not measurable" and "no answers" in _row(frame, "A")["reason"]
    no_score = verdict_table(_scores([(_cell(), np.nan)]), answers, [_inventory()])
    assert _row(no_score)["label"] == "not measurable" and _row(no_score)["reason"].startswith("no score")


# --- not measurable: option-order flips ------------------------------------------------------------


def _flipping(flips: int, noisy: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two option orders x two templates x 3 items = 6 units; the first ``flips`` units change with the order.
    With ``noisy`` > 0 there are two samples, and the last ``noisy`` units also change between them (under both
    orders, by the same amount, so the order pairs of those units do not change because of it)."""
    rows, score_rows, unit = [], [], 0
    samples = 2 if noisy else 1
    for template in ("numbered", "worded"):
        for item in E_ITEMS:
            changed, wobbly = unit < flips, unit >= 6 - noisy
            for sample in range(samples):
                wobble = 1.0 if (wobbly and sample == 1) else 0.0
                rows.append((_cell("original", template, sample=sample), item, 3.0 + wobble, "valid"))
                rows.append((_cell("reversed", template, sample=sample), item, (4.0 if changed else 3.0) + wobble,
                             "valid"))
            unit += 1
    for template in ("numbered", "worded"):
        for order in ("original", "reversed"):
            for sample in range(samples):
                score_rows.append((_cell(order, template, sample=sample), 3.0))
    return _scores(score_rows), _answers(rows)


@pytest.mark.parametrize("flips, label", [(3, "not measurable"), (2, "interpretable")])
def test_half_the_items_flipping_with_the_option_order_is_not_measurable(flips, label):
    scores, answers = _flipping(flips)
    row = _row(verdict_table(scores, answers, [_inventory()]))
    assert row["flip_rate"] == pytest.approx(flips / 6) and row["option_orders"] == 2
    assert np.isnan(row["resample_flip_rate"]) and row["flip_excess"] == pytest.approx(flips / 6)
    assert row["label"] == label
    if label == "not measurable":
        assert "50%" in row["reason"] and "where the options are shown" in row["reason"] and "no chance baseline" in row["reason"]


@pytest.mark.parametrize("noisy, label", [(3, "not measurable"), (4, "interpretable")])
def test_flips_count_beyond_the_changes_between_samples(noisy, label):
    """All 6 units flip with the order; 3 of 6 (or 4 of 6) also change between samples: 100% - 50% = 50%
    beyond chance is position-driven, 100% - 67% is not."""
    scores, answers = _flipping(6, noisy=noisy)
    row = _row(verdict_table(scores, answers, [_inventory()]))
    assert row["flip_rate"] == pytest.approx(1.0)
    assert row["resample_flip_rate"] == pytest.approx(noisy / 6)
    assert row["flip_excess"] == pytest.approx(1 - noisy / 6)
    assert row["label"] == label
    if label == "not measurable":
        assert "between samples" in row["reason"]


def test_one_option_order_has_no_flip_rate():
    cells = [_cell(template="numbered"), _cell(template="worded")]
    row = _row(verdict_table(_scores([(c, 3.0) for c in cells]), _all_valid(cells), [_inventory()]))
    assert np.isnan(row["flip_rate"]) and row["option_orders"] == 1 and row["label"] == "interpretable"


# --- fragile: movement over design cells -----------------------------------------------------------


@pytest.mark.parametrize("moved, label", [(0.4, "fragile"), (0.39, "interpretable")])
def test_half_a_human_sd_of_movement_is_fragile(moved, label):
    scores = _scores([(ORDERS[0], 3.0), (ORDERS[1], 3.0 + moved)])
    row = _row(verdict_table(scores, _all_valid(ORDERS), [_inventory()]))
    assert row["movement_points"] == pytest.approx(moved)
    assert row["movement_share_sd"] == pytest.approx(moved / 0.8)
    assert row["fragile_threshold"] == pytest.approx(0.4) and row["norm_group"] == "test adults"
    assert (row["cell_min"], row["cell_max"]) == pytest.approx((3.0, 3.0 + moved))
    assert row["label"] == label


@pytest.mark.parametrize("moved, label", [(0.5, "fragile"), (0.49, "interpretable")])
def test_without_norms_an_eighth_of_the_range_is_fragile(moved, label):
    scores = _scores([(ORDERS[0], 2.0), (ORDERS[1], 2.0 + moved)])
    row = _row(verdict_table(scores, _all_valid(ORDERS), [_inventory(norms=False)]))
    assert np.isnan(row["norm_sd"]) and np.isnan(row["movement_share_sd"]) and np.isnan(row["z"])
    assert row["fragile_threshold"] == pytest.approx(0.5)  # 12.5% of 1..5
    assert row["movement_share_range"] == pytest.approx(moved / 4)
    assert row["label"] == label and "response range" in row["reason"]


def test_sum_scored_scales_measure_the_range_of_the_sum():
    frame = verdict_table(_scores([(_cell(), 6.0)], scale="A"), _answers([(_cell(), i, 3.0, "valid") for i in ("a1", "a2")]),
                          [_inventory(norms=False)])
    row = _row(frame, "A")
    assert (row["scale_min"], row["scale_max"]) == (2.0, 10.0) and row["fragile_threshold"] == pytest.approx(1.0)


# --- fragile: the interval over respondents --------------------------------------------------------


@pytest.mark.parametrize("half, label", [(0.41, "fragile"), (0.39, "interpretable")])
def test_an_interval_reaching_half_a_human_sd_is_fragile(half, label):
    from scipy import stats

    gap = half * 2 / stats.t.ppf(0.975, 1)  # two respondents: half-width = t(.975, 1) * |a - b| / 2
    cells = [_cell(o, sample=s) for o in ("original", "reversed") for s in (0, 1)]
    scores = _scores([(c, 3.0 + gap * c["sample"]) for c in cells])
    row = _row(verdict_table(scores, _all_valid(cells), [_inventory()]))
    assert row["n_respondents"] == 2 and row["movement_points"] == pytest.approx(0)
    assert row["ci_half_width"] == pytest.approx(half)
    assert row["score"] == pytest.approx(3.0 + gap / 2)
    assert row["z"] == pytest.approx((3.0 + gap / 2 - 3.2) / 0.8)
    assert row["label"] == label


# --- untested, interpretable -----------------------------------------------------------------------


def test_one_design_cell_is_untested_unless_the_interval_already_shows_fragility():
    wide = _scores([(_cell(sample=0), 2.0), (_cell(sample=1), 4.0)])
    cells = [_cell(sample=0), _cell(sample=1)]
    assert _row(verdict_table(wide, _all_valid(cells), [_inventory()]))["label"] == "fragile"
    one = _row(verdict_table(_scores([(_cell(), 3.0)]), _all_valid([_cell()]), [_inventory()]))
    assert one["label"] == "untested" and one["n_cells"] == 1 and "one design cell was asked" in one["reason"]
    assert np.isnan(one["movement_points"])


def test_one_respondent_has_no_interval_and_says_how_to_get_one():
    row = _row(verdict_table(_scores([(c, 3.0) for c in ORDERS]), _all_valid(ORDERS), [_inventory()]))
    assert row["label"] == "interpretable" and row["n_respondents"] == 1
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
    assert "--samples" in row["reason"] and "--personas" in row["reason"]


# --- which respondents -----------------------------------------------------------------------------


SHAPING = {"baseline": {}, "e-high": {"extraversion": 2}, "e-low": {"extraversion": -2}}


def _persona_run(personas: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    level = {"baseline": 3.0, "e-high": 4.8, "e-low": 1.2, "bio1": 2.9, "bio2": 3.1}
    cells = [_cell(o, persona=p) for p in personas for o in ("original", "reversed")]
    return _scores([(c, level[c["persona"]]) for c in cells]), _all_valid(cells)


def test_trait_shaping_personas_are_left_out_of_the_score_when_a_baseline_was_asked():
    scores, answers = _persona_run(["baseline", "e-high", "e-low"])
    row = _row(verdict_table(scores, answers, [_inventory()], SHAPING))
    assert row["score"] == pytest.approx(3.0) and row["n_respondents"] == 1
    assert "'baseline'" in row["respondents"] and "2 trait-shaping personas are left out" in row["respondents"]


def test_untargeted_personas_are_pooled():
    scores, answers = _persona_run(["bio1", "bio2"])
    row = _row(verdict_table(scores, answers, [_inventory()], {"bio1": {}, "bio2": {}}))
    assert row["score"] == pytest.approx(3.0) and row["n_respondents"] == 2 and "pooled" in row["respondents"]
    assert row["ci_low"] < 3.0 < row["ci_high"]


def test_only_trait_shaping_personas_are_pooled_and_say_so():
    scores, answers = _persona_run(["e-high", "e-low"])
    row = _row(verdict_table(scores, answers, [_inventory()], SHAPING))
    assert row["n_respondents"] == 2 and "no untargeted persona" in row["respondents"]


def test_persona_sets_are_accepted_as_shipped():
    from psychometrics.design.personas import resolve_persona_set

    scores, answers = _persona_run(["baseline"])
    scores["persona"] = answers["persona"] = "baseline"
    extra = scores.assign(persona="extraversion-very-high", score=5.0)
    row = _row(verdict_table(pd.concat([scores, extra]), answers, [_inventory()], resolve_persona_set("trait-shaping")))
    assert row["score"] == pytest.approx(3.0)


# --- the table's form, summary.json ----------------------------------------------------------------


def test_rows_columns_and_summary_fields():
    modes = [{**c, "mode": m} for c in ORDERS for m in ("text", "probs")]
    frame = verdict_table(_scores([(c, 3.0) for c in modes]), _all_valid(modes), [_inventory()])
    assert list(frame.columns) == v.COLUMNS
    assert sorted(zip(frame["mode"], frame["scale"])) == sorted((m, s) for m in ("text", "probs") for s in ("E", "A"))
    assert set(frame["label"]) <= set(LABELS) and frame["reason"].str.len().min() > 20
    fields = summary_fields(frame)
    text = json.dumps(fields, allow_nan=False)  # NaN became null
    assert json.loads(text)["verdict"][0]["ci_low"] is None
    assert [r["label"] for r in fields["verdict_rules"]] == [label for label, _ in LABEL_RULES] == list(LABELS)


def test_empty_inputs_give_an_empty_table():
    frame = verdict_table(pd.DataFrame(), pd.DataFrame(), [_inventory()])
    assert frame.empty and list(frame.columns) == v.COLUMNS
    assert summary_fields(frame)["verdict"] == []


# --- the interval against R ------------------------------------------------------------------------


def test_t_interval_matches_r_t_test():
    low, high = t_mean_ci(np.array(GOLDEN["model"]))
    mu, sigma = GOLDEN["norm_mean"], GOLDEN["norm_sd"]  # norms_mtmm.R stores t.test's interval as (ci - mu) / sigma
    assert low == pytest.approx(GOLDEN["d_ci_low"] * sigma + mu, abs=1e-10)
    assert high == pytest.approx(GOLDEN["d_ci_high"] * sigma + mu, abs=1e-10)
    assert t_mean_ci(np.array([3.0])) == (None, None) and t_mean_ci(np.array([2.0, 2.0])) == (2.0, 2.0)


# --- end to end: simulated respondents -------------------------------------------------------------


@pytest.mark.parametrize("spec, label", [("sim/position_first=8,seed=1", "not measurable"),
                                         ("sim/seed=1", "interpretable")])
def test_a_simulated_respondent_gets_the_label_its_biases_predict(tmp_path, spec, label):
    """A respondent that always picks the first option shown flips every answer when the order is reversed;
    one without biases answers the same under both orders and templates."""
    import psychometrics as pm

    run = pm.administer(spec, inventory=["mini-ipip"], option_orders="original,reversed",
                        templates="numbered,worded", out=str(tmp_path / "run"))
    from psychometrics.run.owner import open_run

    opened = open_run(tmp_path / "run")
    frame = verdict_table(opened.scores(), opened.answers().responses, opened.inventories, opened.persona_set)
    assert len(frame) == 5 and (frame["n_cells"] == 4).all()
    assert set(frame["label"]) == {label}, frame[["scale", "label", "reason"]].to_string()
    if label == "not measurable":
        assert (frame["flip_rate"] == 1.0).all()
    else:
        assert (frame["movement_points"] < v.FRAGILE_RANGE_SHARE * 4).all()
    del run


def test_administer_ends_on_the_verdict_in_the_terminal_and_in_json(tmp_path, capsys):
    """The main job's last screen is the answer: one verdict row per scale (label and the numbers it rests
    on), the rules in short, and where the evidence is; --json carries the same rows."""
    from psychometrics.testing.cli import cli

    args = ("administer", "--model", "sim/position_first=8,seed=1", "-i", "mini-ipip",
            "--option-orders", "original,reversed", "--templates", "numbered,worded")
    code, out, _ = cli(capsys, *args, "--out", str(tmp_path / "run"))
    assert code == 0
    head = out[out.index("Verdict: can these scores be read?"):]
    rows = [line for line in head.splitlines() if line.startswith("mini-ipip")]
    assert len(rows) == 5 and all("not measurable" in line and "100%" in line for line in rows), head
    assert "Rules, first that holds" in head and f"psytest report {tmp_path / 'run'}" in " ".join(head.split())
    assert "bootstrap" not in out

    code, out, _ = cli(capsys, *args, "--out", str(tmp_path / "run"), "--json")
    payload = json.loads(out)
    assert code == 0 and [row["label"] for row in payload["verdict"]] == ["not measurable"] * 5
    assert {row["scale"] for row in payload["verdict"]} == {"E", "A", "C", "N", "I"}
