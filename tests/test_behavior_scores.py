"""Variant-centred behaviour scores, alpha across variants and the missingness check
(psychometrics/validity/behavior_scores.py).

Golden values come from ``tests/reference/behavior_scores.R`` (lm with sum contrasts, glm quasipoisson,
psych::alpha with Feldt's interval) on ``tests/reference/data/behavior-scores.csv``, where the personas
with the highest level lost the high-mean variant in one model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.statistics.correlation import correlation
from psychometrics.validity.behavior_scores import centred_scores, variant_alpha, variant_matrix
from psychometrics.validity.statistics import validity_tables

REFERENCE = Path(__file__).parent / "reference"
GOLDEN = json.loads((REFERENCE / "golden" / "behavior_scores.json").read_text())
TIGHT = 1e-10


@pytest.fixture(scope="module")
def frame():
    """The R data set as a behaviour frame: task ``give`` (interval) and ``talk`` (reply length, ratio)."""
    data = pd.read_csv(REFERENCE / "data" / "behavior-scores.csv")
    common = data[["model", "persona", "sample", "variant"]]
    give = common.assign(task="give", trait="agreeableness", direction=1, score=data["amount"], ratio=False)
    talk = common.assign(task="talk", trait="extraversion", direction=1, score=data["words"], ratio=True)
    both = pd.concat([give, talk], ignore_index=True)
    return both.assign(outcome=np.where(both["score"].isna(), "unparseable", "valid"))


def test_centred_scores_match_lm_and_glm(frame):
    scores, notes = centred_scores(frame)
    assert notes == []
    for model, ref in GOLDEN["scores"].items():
        index = pd.MultiIndex.from_arrays([[model] * len(ref["persona"]), ref["persona"]])
        assert scores.loc[index, "give"].to_numpy() == pytest.approx(ref["interval"], abs=TIGHT)
        assert scores.loc[index, "talk"].to_numpy() == pytest.approx(ref["ratio"], abs=TIGHT)
    # The personas that lost v03 (the high-mean variant) in model a: the plain mean drops them, the
    # centred score does not (the model is additive up to noise of SD .05 / sqrt(2)).
    ref = GOLDEN["scores"]["a"]
    lost = [ref["persona"].index(p) for p in ("p09", "p10", "p11", "p12")]
    shift = np.array(ref["interval"])[lost] - np.array(ref["plain_interval"])[lost]
    assert (shift > 0.05).all()
    # Cross-check: with variant as a random effect (lmer, crossed with the respondent) the respondents'
    # predicted levels order them as the centred scores do; the plain mean does not.
    index = pd.MultiIndex.from_arrays([["a"] * len(ref["persona"]), ref["persona"]])
    ours = scores.loc[index, "give"].to_numpy()
    assert np.corrcoef(ours, ref["mixed_interval"])[0, 1] > 0.9999
    assert np.corrcoef(ref["plain_interval"], ref["mixed_interval"])[0, 1] < 0.98


def test_alpha_and_feldt_interval_match_psych(frame):
    for ref in GOLDEN["alpha"]:
        task = "give" if ref["column"] == "amount" else "talk"
        models = None if ref["scope"] == "pooled" else [ref["scope"]]
        got = variant_alpha(variant_matrix(frame, task, models, ratio=task == "talk"))
        where = (ref["column"], ref["scope"])
        assert (got["n"], got["k"]) == (ref["n"], ref["k"]), where
        for key, name in (("reliability", "reliability"), ("low", "low"), ("high", "high")):
            assert got[key] == pytest.approx(ref[name], abs=TIGHT), where + (key,)
        assert got["low"] < got["reliability"] < got["high"]


def _additive(n_personas=12, ratio=False, seed=3):
    rng = np.random.default_rng(seed)
    levels = rng.normal(size=n_personas)
    effects = np.array([41.0, 80.0, 211.0, 120.0]) if ratio else np.array([-1.0, 0.0, 4.0, 0.5])
    rows = []
    for p, level in enumerate(levels):
        for v, effect in enumerate(effects):
            score = effect * np.exp(0.3 * level) if ratio else effect + level
            rows.append(("m", f"p{p:02d}", 0, "t", f"v{v + 1}", "extraversion", 1, "valid", score, ratio))
    return pd.DataFrame(rows, columns=["model", "persona", "sample", "task", "variant", "trait", "direction",
                                       "outcome", "score", "ratio"])


@pytest.mark.parametrize("ratio", [False, True], ids=["interval", "ratio"])
def test_a_respondent_missing_the_high_mean_variant_keeps_its_score(ratio):
    complete = _additive(ratio=ratio)
    before = centred_scores(complete)[0]["t"]
    lost = complete.copy()
    lost.loc[(lost["persona"] == "p03") & (lost["variant"] == "v3"), ["score", "outcome"]] = [np.nan, "unparseable"]
    after = centred_scores(lost)[0]["t"]
    assert after.to_numpy() == pytest.approx(before.to_numpy(), abs=1e-9)
    # The plain mean over readable variants moves it far (v3's mean is 4 points / 2.6 times the others').
    plain = lost[lost["score"].notna()].groupby("persona")["score"].mean()
    full = complete.groupby("persona")["score"].mean()
    assert abs(plain["p03"] / full["p03"] - 1) > 0.25 if ratio else abs(plain["p03"] - full["p03"]) > 1.0
    # Complete data: the plain mean over variants (ratio: divided by the model's mean).
    expected = full / full.mean() if ratio else full
    assert before.to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-9)


def _artefact(seed=11, n_personas=40):
    """Self-report and behaviour level independent; personas with a high self-report lose variant v3,
    whose mean is 3 points above the others (as v03 in the committed Qwen study)."""
    rng = np.random.default_rng(seed)
    selfs, behavior = [], []
    for p in range(n_personas):
        self_score, level = rng.normal(), rng.normal(0, 0.5)
        for cell in range(2):
            selfs.append(("m", f"p{p:02d}", "inv", "N", "narcissism", 1, self_score, f"c{cell}"))
        for v, effect in enumerate([0.0, 0.0, 3.0, 0.0]):
            for sample in range(2):
                missing = v == 2 and self_score > 0.3
                score = np.nan if missing else effect + level + rng.normal(0, 0.3)
                behavior.append(("m", f"p{p:02d}", sample, "overclaiming", f"v{v + 1}", "narcissism", 1,
                                 "unparseable" if missing else "valid", score))
    return (pd.DataFrame(selfs, columns=["model", "persona", "inventory", "scale", "trait", "trait_sign", "score",
                                         "cell"]),
            pd.DataFrame(behavior, columns=["model", "persona", "sample", "task", "variant", "trait", "direction",
                                            "outcome", "score"]))


def test_missingness_that_tracks_self_report_no_longer_makes_a_spurious_correlation():
    selfreport, behavior = _artefact()
    tables = validity_tables(selfreport, behavior, n_boot=200)
    pair = tables["validity_pairs"].set_index("task").loc["overclaiming"]
    assert abs(pair["r"]) < 0.2 and pair["p"] > 0.2
    # The plain mean over readable variants: a strong spurious (negative) r.
    plain = behavior.dropna(subset=["score"]).groupby("persona")["score"].mean()
    selfs = selfreport.groupby("persona")["score"].mean()
    spurious = correlation(selfs.to_numpy(), plain.reindex(selfs.index).to_numpy())
    assert spurious["r"] < -0.4 and spurious["p"] < 0.01
    # The missingness check flags it; each respondent's missing share is in validity_scores.
    check = tables["behavior_missingness"].set_index("task").loc["overclaiming"]
    assert bool(check["flag"]) and check["r_self"] > 0.6 and check["p_self"] < 1e-6
    assert "tracks the self-report" in check["note"]
    assert any("overclaiming" in n for n in tables["notes"].query("table == 'behavior_missingness'")["note"])
    scores = tables["validity_scores"].query("kind == 'behavior'").set_index("persona")
    high = selfs[selfs > 0.3].index
    assert scores.loc[high, "missing_share"].eq(0.25).all() and scores.loc[high, "variants"].eq(3).all()
    assert scores.drop(high)["missing_share"].eq(0).all()
    assert tables["validity_scores"].query("kind == 'self-report'")["missing_share"].isna().all()


def test_alpha_is_the_reliability_that_corrects_and_is_stable_with_few_variants():
    selfreport, behavior = _artefact()
    tables = validity_tables(selfreport, behavior, n_boot=200)
    row = tables["behavior_reliability"].set_index("task").loc["overclaiming"]
    assert row["reliability_method"] == "alpha" and row["k_alpha"] == 4 and row["n_alpha"] == 40
    assert row["reliability_low"] < row["reliability"] < row["reliability_high"]
    assert row["reliability"] > 0.8  # level SD .5 against noise .3 / sqrt(2) per variant
    pair = tables["validity_pairs"].set_index("task").loc["overclaiming"]
    assert pair["rel_behavior"] == row["reliability"]


def test_respondents_sharing_no_variant_with_the_others_get_no_score_and_a_note():
    frame = _additive()
    apart = pd.DataFrame({"model": "m", "persona": ["q1", "q2"], "sample": 0, "task": "t", "variant": "v9",
                          "trait": "extraversion", "direction": 1, "outcome": "valid", "score": [5.0, 7.0],
                          "ratio": False})
    scores, notes = centred_scores(pd.concat([frame, apart], ignore_index=True))
    assert scores.loc[("m", "q1"), "t"] != scores.loc[("m", "q1"), "t"]  # NaN
    assert scores["t"].notna().sum() == 12
    assert len(notes) == 1 and "2 respondent(s) share no variant with the others" in notes[0]


def test_odd_tables_give_scores_or_nan_never_an_error():
    frame = _additive(ratio=True)
    # A zero-word reply (kept as data) is a valid ratio cell; a variant nobody answered is ignored.
    zero = frame.copy()
    zero.loc[(zero["persona"] == "p01") & (zero["variant"] == "v1"), "score"] = 0.0
    scores, notes = centred_scores(zero)
    assert scores["t"].notna().all() and notes == []
    assert scores.loc[("m", "p01"), "t"] < centred_scores(frame)[0].loc[("m", "p01"), "t"]
    silent = frame.copy()
    silent.loc[silent["variant"] == "v4", "score"] = 0.0
    assert centred_scores(silent)[0]["t"].notna().all()
    # Every reply unreadable: no score; one variant: the cell itself (interval) or relative to the mean (ratio).
    assert centred_scores(frame.assign(score=np.nan))[0]["t"].isna().all()
    one = _additive()[lambda f: f["variant"] == "v1"]
    assert centred_scores(one)[0]["t"].to_numpy() == pytest.approx(one["score"].to_numpy(), abs=1e-12)
    # Negative values on a "ratio" task: scored as an interval measure, with a note.
    negative = _additive().assign(ratio=True)
    scores, notes = centred_scores(negative)
    assert scores["t"].notna().all() and "negative scores on a ratio measure" in notes[0]
    # Alpha with one variant, or with too few respondents: None and why.
    assert variant_alpha(variant_matrix(one, "t", None, ratio=False))["reliability"] is None
    assert "2 or more variants" in variant_alpha(variant_matrix(one, "t", None, ratio=False))["note"]
