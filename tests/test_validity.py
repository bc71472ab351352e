"""Self-report vs behaviour (psychometrics/validity/statistics.py).

Golden values come from ``tests/reference/validity.R`` (cor, cor.test, lm, p.adjust, psych::alpha, lmer,
boot::boot.ci) on the data it writes to ``tests/reference/data/validity-*.csv``. The BCa interval is
checked against ``boot.ci`` on the very resamples boot drew, and for sanity (seeded, coverage, agreement
with the t test, no interval when r rests on one respondent); a synthetic ground truth checks that the
analysis confirms the linked pairs and only those.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.errors import PsytestError
from psychometrics.statistics.correlation import bca_interval, bh_adjust, correlation, fisher_interval, power_r, r_interval
from psychometrics.statistics.mixed_model import random_intercept_reml
from psychometrics.validity.statistics import (
    read_selfreport,
    targets_frame,
    validity_tables,
)

REFERENCE = Path(__file__).parent / "reference"
GOLDEN = json.loads((REFERENCE / "golden" / "validity.json").read_text())
TIGHT = 1e-10


@pytest.fixture(scope="module")
def data():
    read = lambda name: pd.read_csv(REFERENCE / "data" / f"validity-{name}.csv")
    data = {name: read(name) for name in ("selfreport", "items", "behavior", "targets")}
    # the R reference treats every task as behaviour; shipped social-choice and setback-writing are labelled
    # self-report (method 'intention' in the MTMM), which test_intention_tasks_are_their_own_mtmm_method checks
    data["behavior"] = data["behavior"].assign(method="behavior")
    return data


@pytest.fixture(scope="module")
def tables(data):
    return validity_tables(data["selfreport"], data["behavior"], data["targets"], items=data["items"], n_boot=400)


def _row(table: pd.DataFrame, **keys) -> pd.Series:
    mask = np.ones(len(table), bool)
    for key, value in keys.items():
        mask &= (table[key] == value).to_numpy()
    assert mask.sum() == 1, keys
    return table[mask].iloc[0]


def test_behavior_split_half_matches_r(tables):
    table = tables["behavior_reliability"]
    assert len(table) == len(GOLDEN["behavior_reliability"])
    for ref in GOLDEN["behavior_reliability"]:
        row = _row(table, scope=ref["scope"], task=ref["task"])
        assert row["n"] == ref["n"] and row["n_variants"] == ref["n_variants"]
        assert (row["n_variants_min"], row["n_variants_max"]) == (ref["n_variants_min"], ref["n_variants_max"])
        for key in ("r_half", "spearman_brown", "missing_rate", "reliability", "reliability_low", "reliability_high"):
            assert row[key] == pytest.approx(ref[key], abs=TIGHT), (ref["scope"], ref["task"], key)
        assert (row["n_alpha"], row["k_alpha"]) == (ref["n_alpha"], ref["k_alpha"])
        assert row["reliability_method"] == "alpha"
        differ = ref["n_variants_max"] > ref["n_variants"]
        assert differ == ("variant sets differ" in str(row["note"])), (ref["scope"], ref["task"], row["note"])


def test_variant_centred_scores_match_lm(tables):
    scores = tables["validity_scores"].query("kind == 'behavior'").set_index(["measure", "model", "persona"])["score"]
    checked = 0
    for ref in GOLDEN["scores"]:
        for key, value in zip(ref["key"], ref["score"]):
            model, persona = key.split(" ")
            got = scores.get((ref["task"], model, persona))
            if value is None:  # m3 p07: every setback-writing reply unreadable
                assert got is None or pd.isna(got)
            else:
                assert got == pytest.approx(value, abs=TIGHT), (ref["task"], key)
                checked += 1
    assert checked == 4 * 100 - 1


def test_missingness_table_matches_chisq_test_and_cor_test(tables):
    table = tables["behavior_missingness"]
    assert len(table) == len(GOLDEN["missingness"]) == 6 * 4
    for ref in GOLDEN["missingness"]:
        row = _row(table, scope=ref["scope"], task=ref["task"])
        where = (ref["scope"], ref["task"])
        assert row["n"] == ref["n"] and row["chi2_df"] == ref["chi2_df"], where
        for key in ("missing_rate", "missing_min", "missing_max", "chi2", "chi2_p", "r_self", "p_self", "r_score",
                    "p_score"):
            assert row[key] == pytest.approx(ref[key], abs=TIGHT), where + (key,)
    # m3 p07 lost every setback-writing reply: flagged in m3 and pooled.
    flagged = set(zip(table.loc[table["flag"], "scope"], table.loc[table["flag"], "task"]))
    assert {("m3", "setback-writing"), ("pooled", "setback-writing")} <= flagged
    scores = tables["validity_scores"].query("kind == 'behavior'").set_index(["measure", "model", "persona"])
    assert scores.loc[("setback-writing", "m3", "p07"), "missing_share"] == 1
    assert scores.loc[("setback-writing", "m3", "p07"), "variants"] == 0


def test_differing_variant_sets_are_noted_and_only_respondents_with_both_enter(tables):
    # m1 p01 has two extra dictator-game variants, m2 p05 lacks setback-writing v10 (validity.R).
    variants = {ref["task"]: ref for ref in GOLDEN["variants"]}
    assert variants["dictator-game"]["max"] == 12 and len(variants["setback-writing"]["common"]) == 9
    notes = tables["notes"]
    said = " | ".join(notes.loc[notes["table"] == "behavior_reliability", "note"])
    assert "'dictator-game': respondents' variant sets differ (10 to 12 variants); its variant-centred" in said
    assert "'setback-writing': respondents' variant sets differ (9 to 10 variants)" in said
    assert "'insult-reply'" not in said
    # 10 respondents with self-report only (p21, p22 of 5 models), 1 with behaviour only (m1 p23).
    assert any("100 respondents have both" in n and "10 with self-report only, 1 with behaviour only" in n
               for n in notes["note"])
    scores = tables["validity_scores"]
    assert len(scores[["model", "persona"]].drop_duplicates()) == GOLDEN["respondents"] == 100
    assert not scores["persona"].isin(["p21", "p22", "p23"]).any()
    assert (tables["selfreport_reliability"].query("scope == 'pooled' and inventory != 'composite'")["n"] == 100).all()


def test_selfreport_alpha_and_composite_reliability_match_psych(tables):
    table = tables["selfreport_reliability"]
    for ref in GOLDEN["self_reliability"]:
        for inventory, alpha in ref["components"].items():
            assert _row(table, scope=ref["scope"], trait=ref["trait"], inventory=inventory)["reliability"] == \
                pytest.approx(alpha, abs=TIGHT)
        if len(ref["components"]) > 1:
            composite = _row(table, scope=ref["scope"], trait=ref["trait"], inventory="composite")
            assert composite["reliability"] == pytest.approx(ref["reliability"], abs=TIGHT)


def test_pairs_match_cor_test_lm_and_p_adjust(tables):
    pairs = tables["validity_pairs"]
    assert len(pairs) == len(GOLDEN["pairs"]) == 6 * 3 * 4  # 5 models + pooled, 3 traits, 4 tasks
    for ref in GOLDEN["pairs"]:
        row = _row(pairs, scope=ref["scope"], trait=ref["trait"], task=ref["task"])
        where = (ref["scope"], ref["trait"], ref["task"])
        assert row["n"] == ref["n"] and bool(row["declared"]) == ref["declared"], where
        for key in ("r", "p", "p_bh_all", "rel_self", "rel_behavior", "power_r30"):
            assert row[key] == pytest.approx(ref[key], abs=TIGHT), where + (key,)
        for key in ("r_corrected", "r_corrected_low", "r_corrected_high"):  # none below the reliability floor
            if ref[key] is None:
                assert pd.isna(row[key]) and "below the floor 0.5" in row["note"], where + (key,)
            else:
                assert row[key] == pytest.approx(ref[key], abs=TIGHT), where + (key,)
        # cor.test's interval is Fisher's; the bootstrap one cannot match R's random stream, only bracket r
        assert row["fisher_low"] == pytest.approx(ref["ci_low"], abs=TIGHT), where
        assert row["fisher_high"] == pytest.approx(ref["ci_high"], abs=TIGHT), where
        if ref["declared"]:
            assert row["expected_sign"] == ref["expected_sign"]
            assert row["p_bh_declared"] == pytest.approx(ref["p_bh_declared"], abs=TIGHT), where
        else:
            assert pd.isna(row["p_bh_declared"]) and pd.isna(row["expected_sign"])
        assert bool(row["confirmed"]) == ref["confirmed"], where
        assert row["ci_low"] <= row["r"] <= row["ci_high"], where


def test_dissociation_index_matches_r(tables):
    table = tables["dissociation"]
    for ref in GOLDEN["dissociation"]:
        row = _row(table, scope=ref["scope"], trait=ref["trait"])
        assert (row["declared"], row["tested"], row["confirmed"]) == (ref["declared"], ref["declared"], ref["confirmed"])
        assert row["share_confirmed"] == pytest.approx(ref["share_confirmed"])
        assert row["dissociation"] == pytest.approx(1 - ref["share_confirmed"])
        for key in ("share_expected_sign", "mean_signed_r", "mean_power_r30"):
            assert row[key] == pytest.approx(ref[key], abs=TIGHT), (ref["scope"], ref["trait"], key)


def test_power_matches_the_formula_and_a_simulation():
    for ref in GOLDEN["power"]:
        assert power_r(ref["df"]) == pytest.approx(ref["formula"], abs=1e-12)
        assert power_r(ref["df"]) == pytest.approx(ref["simulated"], abs=0.015)  # 20000 draws in R
    assert power_r(1) is None and power_r(None) is None
    assert power_r(98) > power_r(38) > power_r(15)


def test_mixed_model_matches_lmer(tables):
    table = tables["validity_mixed"]
    assert len(table) == len(GOLDEN["mixed"]) == 4
    for ref in GOLDEN["mixed"]:
        row = _row(table, task=ref["task"])
        assert row["n"] == ref["n"] and row["n_models"] == 5
        assert row["within"] == pytest.approx(ref["within"], abs=1e-9)
        assert row["between"] == pytest.approx(ref["between"], abs=1e-9)
        # lme4 stops bobyqa at rhoend = 1e-12 on theta; the fixed effects are exact given theta.
        for key in ("within_se", "between_se", "model_variance", "residual_variance"):
            assert row[key] == pytest.approx(ref[key], abs=1e-7), (ref["task"], key)
        assert row["within_df"] == ref["n"] - 5 - 1 and row["between_df"] == 3
        assert 0 <= row["within_p"] <= 1 and 0 <= row["between_p"] <= 1


def test_random_intercept_reml_criterion_and_boundary_match_lmer(data, tables):
    scores = tables["validity_scores"]
    wide = scores.pivot_table(index=["model", "persona"], columns="measure", values="score")
    frame = wide[["agreeableness", "dictator-game"]].dropna()
    models = frame.index.get_level_values("model").to_numpy()
    z = lambda v: (v - v.mean()) / v.std(ddof=1)
    zs = z(frame["agreeableness"].to_numpy())
    between = pd.Series(zs).groupby(models).transform("mean").to_numpy()
    x = np.column_stack([np.ones(len(zs)), zs - between, between])
    fit = random_intercept_reml(z(frame["dictator-game"].to_numpy()), x, models)
    assert fit["reml_criterion"] == pytest.approx(GOLDEN["mixed"][0]["reml"], abs=1e-8)
    # Behaviour centred within model: lmer finds a singular fit (model variance 0); so must we.
    b = frame["dictator-game"].to_numpy()
    centred = b - pd.Series(b).groupby(models).transform("mean").to_numpy()
    ref = GOLDEN["mixed_boundary"]
    assert ref["singular"] and ref["model_variance"] == 0
    fit = random_intercept_reml(z(centred), x, models)
    assert fit["theta"] == 0 and fit["group_variance"] == 0
    for key, value in (("within", fit["beta"][1]), ("between", fit["beta"][2]), ("within_se", fit["se"][1]),
                       ("between_se", fit["se"][2]), ("residual_variance", fit["residual_variance"]),
                       ("reml", fit["reml_criterion"])):
        assert value == pytest.approx(ref[key], abs=1e-9), key


def test_manipulation_check_matches_r(tables):
    table = tables["manipulation_check"]
    assert len(table) == len(GOLDEN["manipulation"])
    for ref in GOLDEN["manipulation"]:
        row = _row(table, scope=ref["scope"], trait=ref["trait"], measure=ref["measure"])
        assert row["kind"] == ref["kind"] and row["n"] == ref["n"] and row["n_levels"] == ref["n_levels"]
        for key in ("r", "slope", "p"):
            assert row[key] == pytest.approx(ref[key], abs=TIGHT), (ref["scope"], ref["trait"], ref["measure"], key)
    # The trait's own personas (8 agreeableness ones here) and the 4 baseline ones; others left out.
    assert _row(table, scope="m1", trait="agreeableness", measure="self-report")["n"] == 12
    # The simulated personas moved self-report and the linked behaviour in the intended direction.
    pooled = table[table["scope"] == "pooled"].set_index(["trait", "measure"])
    assert pooled.loc[("agreeableness", "self-report"), "r"] > 0.5
    assert pooled.loc[("agreeableness", "insult-reply"), "r"] > 0  # signed by its direction (-1)


def test_manipulation_levels_match_r(tables):
    table = tables["manipulation_levels"]
    assert len(table) == len(GOLDEN["manipulation_levels"])
    for ref in GOLDEN["manipulation_levels"]:
        row = _row(table, scope=ref["scope"], trait=ref["trait"], measure=ref["measure"], level=ref["level"])
        where = (ref["scope"], ref["trait"], ref["measure"], ref["level"])
        assert row["kind"] == ref["kind"] and row["n"] == ref["n"], where
        assert row["mean"] == pytest.approx(ref["mean"], abs=TIGHT), where
        if ref["sd"] is None:
            assert pd.isna(row["sd"]), where
        else:
            assert row["sd"] == pytest.approx(ref["sd"], abs=TIGHT), where
    levels = table.query("scope == 'pooled' and trait == 'agreeableness' and measure == 'self-report'")
    assert levels["level"].tolist() == [-2, -1, 0, 1, 2] and levels["mean"].is_monotonic_increasing


def test_manipulation_check_marks_ties_instead_of_reporting_r_zero():
    selfreport, behavior = _ground_truth(n_models=1, n_personas=20)
    # The low and the high persona behave alike, the baseline ones differently: r = 0 exactly from ties.
    targets = pd.DataFrame({"persona": ["p1", "p2", "p3"], "trait": ["agreeableness", "agreeableness", "extraversion"],
                            "level": [-2, 2, 2]})
    behavior = behavior.copy()
    dictator = behavior["task"] == "dictator-game"
    behavior.loc[dictator, "score"] = np.where(behavior.loc[dictator, "persona"].isin(["p1", "p2"]), 1.0, 0.5)
    tables = validity_tables(selfreport, behavior, targets, n_boot=200)
    check = tables["manipulation_check"].set_index(["trait", "measure"])
    tied = check.loc[("agreeableness", "dictator-game")]
    assert pd.isna(tied["r"]) and pd.isna(tied["p"]) and "tie across target levels" in tied["note"]
    # p3 targets extraversion: not part of the agreeableness check (17 baseline + p1 + p2).
    assert tied["n"] == 19 and check.loc[("extraversion", "self-report"), "n"] == 18
    assert check.loc[("agreeableness", "self-report"), "r"] is not None
    levels = tables["manipulation_levels"].query("measure == 'dictator-game'").set_index("level")
    assert levels.loc[-2.0, "mean"] == levels.loc[2.0, "mean"] == 1.0 and levels.loc[0.0, "mean"] == 0.5
    # Only two respondents off the modal score: noted.
    few = behavior.copy()
    few.loc[dictator, "score"] = np.where(few.loc[dictator, "persona"] == "p2", 1.0, 0.5)
    row = validity_tables(selfreport, few, targets, n_boot=200)["manipulation_check"].set_index(
        ["trait", "measure"]).loc[("agreeableness", "dictator-game")]
    assert row["r"] > 0 and "rests on 1 respondent(s) off the modal score" in row["note"]


def test_behaviour_joins_the_mtmm_matrix_as_a_method(tables):
    names = GOLDEN["mtmm"]["columns"]
    reference = {frozenset((ref["a"], ref["b"])): ref for ref in GOLDEN["mtmm"]["pairs"]}
    table = tables["validity_mtmm"]
    assert set(table["method_a"]) | set(table["method_b"]) == {"inv-a", "inv-b", "behavior"}
    checked = 0
    for row in table.itertuples():
        ref = reference[frozenset((f"{row.method_a}|{row.trait_a}", f"{row.method_b}|{row.trait_b}"))]
        assert (row.n, row.df) == (ref["n"], ref["df"])  # n - k - 1 with k = 5 models, after pairwise deletion
        assert row.r == pytest.approx(ref["r"], abs=TIGHT)
        assert row.p == pytest.approx(ref["p"], abs=TIGHT)
        checked += 1
    assert checked == len(names) * (len(names) - 1) // 2
    assert set(table.loc[table["trait_a"].eq("neuroticism") & table["method_a"].eq("behavior")
                         | table["trait_b"].eq("neuroticism") & table["method_b"].eq("behavior"), "n"]) == {99}
    summary = tables["validity_mtmm_summary"].set_index("criterion")
    assert summary["comparisons"].iloc[0] > 0


def test_bh_adjust_matches_p_adjust_and_skips_missing():
    ref = [r for r in GOLDEN["pairs"] if r["scope"] == "m1"]
    adjusted = bh_adjust([r["p"] for r in ref])
    assert adjusted == pytest.approx([r["p_bh_all"] for r in ref], abs=1e-14)
    assert bh_adjust([0.01, None, 0.04, float("nan"), 0.03]) == pytest.approx([0.03, None, 0.04, None, 0.04])


def test_bca_interval_matches_boot_ci_on_the_same_resamples():
    resamples = pd.read_csv(REFERENCE / "data" / "validity-bca-resamples.csv")
    assert len(GOLDEN["bca"]) == 3
    for ref in GOLDEN["bca"]:
        rows = resamples.loc[resamples["case"] == ref["name"], "resample"]
        indices = np.array([[int(v) for v in row.split()] for row in rows])
        assert indices.shape == (999, len(ref["x"]))
        groups = np.asarray(ref["groups"]) if len(set(ref["groups"])) > 1 else None
        assert correlation(ref["x"], ref["y"], groups)["r"] == pytest.approx(ref["r"], abs=TIGHT)
        ci = bca_interval(ref["x"], ref["y"], groups, indices=indices)
        assert ci["failed"] == 0 and ci["note"] is None, ref["name"]
        assert ci["low"] == pytest.approx(ref["low"], abs=1e-10), ref["name"]
        assert ci["high"] == pytest.approx(ref["high"], abs=1e-10), ref["name"]


def test_bca_bootstrap_is_seeded_and_about_the_fisher_width():
    rng = np.random.default_rng(5)
    n, rho = 2000, 0.5
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)
    r = float(np.corrcoef(x, y)[0, 1])
    ci = r_interval(x, y, method="bca", n_boot=2000, rng=np.random.default_rng(1))
    assert ci["failed"] == 0 and ci["low"] < r < ci["high"]
    assert ci == r_interval(x, y, method="bca", n_boot=2000, rng=np.random.default_rng(1))
    fisher = fisher_interval(r, n - 2)
    assert (ci["high"] - ci["low"]) == pytest.approx(fisher[1] - fisher[0], rel=0.3)
    # Within groups: resampled inside each group, centred within group, still around the pooled r.
    groups = np.repeat(["a", "b"], n // 2)
    shifted = y + np.where(groups == "a", 5.0, -5.0)
    within = r_interval(x, shifted, groups, method="bca", n_boot=1000, rng=np.random.default_rng(1))
    assert within["low"] < r < within["high"] and within["high"] - within["low"] < 2 * (fisher[1] - fisher[0])
    pooled = r_interval(x, shifted, groups, method="fisher", n_boot=200, rng=np.random.default_rng(1))
    assert (pooled["low"], pooled["high"]) == pytest.approx(fisher_interval(correlation(x, shifted, groups)["r"], n - 3))
    for method in ("fisher", "bca"):
        constant = r_interval(np.ones(10), np.arange(10.0), method=method, n_boot=200, rng=np.random.default_rng(0))
        assert (constant["low"], constant["high"]) == (None, None) and "constant score" in constant["note"]
    with pytest.raises(ValueError, match="choose fisher or bca"):
        r_interval(x, y, method="percentile", rng=np.random.default_rng(0))


def test_no_interval_when_r_rests_on_one_varying_respondent():
    """The committed Qwen result had CIs excluding 0 with p = .53: the percentile bootstrap dropped the
    ~35% of resamples without the one respondent whose behaviour differed, conditioning on drawing it."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=17)
    for one in np.argsort(x)[::-1]:  # one respondent off the modal score: the highest self-report with p > .05
        y = np.where(np.arange(17) == one, 1.0, 0.0)
        stats = correlation(x, y)
        if stats["p"] > 0.05:
            break
    assert 0.1 < stats["r"] < 0.5 and stats["p"] > 0.05
    for method in ("fisher", "bca"):
        ci = r_interval(x, y, method=method, n_boot=2000, rng=np.random.default_rng(0))
        assert ci["low"] is None and ci["high"] is None and ci["failed"] > 0.2 * 2000
        assert "no CI" in ci["note"] and "constant score" in ci["note"]
    selfreport, behavior = _ground_truth(n_models=1, n_personas=17)
    behavior = behavior.copy()
    dictator = behavior["task"] == "dictator-game"
    behavior.loc[dictator, "score"] = np.where(behavior.loc[dictator, "persona"] == "p4", 1.0, 0.0)
    pairs = validity_tables(selfreport, behavior, n_boot=500)["validity_pairs"].set_index(["trait", "task"])
    for trait in ("agreeableness", "extraversion", "neuroticism"):
        row = pairs.loc[(trait, "dictator-game")]
        assert row["r"] is not None and pd.isna(row["ci_low"]) and pd.isna(row["ci_high"])
        assert "no CI" in row["note"] and "rests on 1 respondent(s) off the modal behaviour score" in row["note"]
    assert pairs[pairs.index.get_level_values("task") != "dictator-game"]["ci_low"].notna().all()


def test_interval_covers_and_agrees_with_the_t_test_on_ordinary_data():
    """Bivariate normal data, n = 25, one model and pooled over three: Fisher's 95% interval covers the
    true r about 95% of the time and excludes 0 when, and only when, the t test's p < .05 (the old
    percentile interval excluded 0 in 46 pairs of the committed Qwen result, of which 13 had p < .05);
    the BCa bootstrap interval, reported beside it, covers nearly as often."""
    rng = np.random.default_rng(2024)
    covered, agree, total, bca_covered = 0, 0, 0, 0
    for groups in (None, np.repeat(["a", "b", "c"], [8, 8, 9])):
        for rho in (0.0, 0.3, 0.5):
            for _ in range(100):
                x = rng.normal(size=25)
                y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=25)
                if groups is not None:
                    x, y = x + (groups == "a") * 3.0, y - (groups == "b") * 2.0
                ci = r_interval(x, y, groups, method="fisher", n_boot=200, rng=rng)
                assert ci["note"] is None
                p = correlation(x, y, groups)["p"]
                covered += ci["low"] <= rho <= ci["high"]
                bca = r_interval(x, y, groups, method="bca", n_boot=400, rng=rng)
                bca_covered += bca["low"] is not None and bca["low"] <= rho <= bca["high"]
                agree += (ci["low"] > 0 or ci["high"] < 0) == (p < 0.05)
                total += 1
    assert 0.92 <= covered / total <= 0.98, covered / total
    assert agree / total >= 0.98, agree / total
    assert 0.88 <= bca_covered / total <= 0.98, bca_covered / total


def _ground_truth(n_models: int = 2, n_personas: int = 150, seed: int = 11):
    """Known traits; behaviour 0.7 * trait + noise for linked tasks, pure noise for one declared task, and
    one task whose declared direction is wrong."""
    rng = np.random.default_rng(seed)
    traits = ["agreeableness", "extraversion", "neuroticism"]
    tasks = [("dictator-game", "agreeableness", 1, 0.7), ("insult-reply", "agreeableness", -1, -0.7),
             ("social-choice", "extraversion", 1, 0.7), ("setback-writing", "neuroticism", 1, 0.0),
             ("wrong-way", "extraversion", 1, -0.7)]
    selfreport, behavior = [], []
    for m in range(n_models):
        for p in range(n_personas):
            theta = dict(zip(traits, rng.normal(size=3)))
            for cell in range(2):
                for trait in traits:
                    selfreport.append((f"model-{m}", f"p{p}", "gt", trait[:1].upper(), trait, 1,
                                       3 + m + theta[trait] + rng.normal(0, 0.3), f"c{cell}"))
            for task, trait, direction, weight in tasks:
                for v in range(4):
                    score = 10 * m + weight * theta[trait] + rng.normal(0, 0.7)
                    behavior.append((f"model-{m}", f"p{p}", 0, task, f"v{v + 1}", trait, direction, "valid", score))
    return (pd.DataFrame(selfreport, columns=["model", "persona", "inventory", "scale", "trait", "trait_sign",
                                              "score", "cell"]),
            pd.DataFrame(behavior, columns=["model", "persona", "sample", "task", "variant", "trait", "direction",
                                            "outcome", "score"]))


def test_ground_truth_confirms_linked_pairs_and_only_those():
    selfreport, behavior = _ground_truth()
    tables = validity_tables(selfreport, behavior, n_boot=300)
    pooled = tables["validity_pairs"].query("scope == 'pooled' and declared").set_index("task")
    assert set(pooled.index[pooled["confirmed"]]) == {"dictator-game", "insult-reply", "social-choice"}
    assert pooled.loc["wrong-way", "r"] < -0.3 and pooled.loc["wrong-way", "p_bh_declared"] < 0.05  # wrong sign
    assert abs(pooled.loc["setback-writing", "r"]) < 0.15
    dissociation = tables["dissociation"].set_index(["scope", "trait"])
    assert dissociation.loc[("pooled", "all"), "share_confirmed"] == pytest.approx(3 / 5)
    assert dissociation.loc[("pooled", "all"), "dissociation"] == pytest.approx(2 / 5)
    assert dissociation.loc[("pooled", "agreeableness"), "share_confirmed"] == 1
    assert dissociation.loc[("pooled", "neuroticism"), "share_confirmed"] == 0
    # Model means differ a lot in both measures (3 + m and 10 m) but the pooled r is the within-model one.
    linked = pooled.loc["dictator-game"]
    expected = 0.7 / math.sqrt(0.7**2 + 0.7**2 / 4) / math.sqrt(1 + 0.3**2 / 2)
    assert linked["r"] == pytest.approx(expected, abs=0.08)
    mixed = tables["validity_mixed"].set_index("task")
    # On z over all respondents: within slope 0.7 / (1 + 0.3^2/2) scaled by sd(self) / sd(behaviour).
    sd_self, sd_behavior = math.sqrt(0.25 + 1 + 0.045), math.sqrt(25 + 0.49 + 0.49 / 4)
    assert mixed.loc["dictator-game", "within"] == pytest.approx(0.7 / 1.045 * sd_self / sd_behavior, abs=0.03)
    assert mixed.loc["dictator-game", "within_p"] < 1e-10
    assert mixed.loc["dictator-game", "between_p"] is None or pd.isna(mixed.loc["dictator-game", "between_p"])
    assert "2 model means" in mixed.loc["dictator-game", "note"]


def test_notes_when_data_do_not_allow_an_analysis():
    selfreport, behavior = _ground_truth(n_models=1, n_personas=40)
    tables = validity_tables(selfreport, behavior, n_boot=200)
    assert tables["validity_mixed"].empty and set(tables["validity_pairs"]["scope"]) == {"model-0"}
    notes = tables["notes"].set_index("table")["note"]
    assert "one model" in notes["validity_mixed"] and "persona targets" in notes["manipulation_check"]
    assert "not corrected" in notes["validity_pairs"]
    other = behavior.assign(persona=behavior["persona"] + "-x")
    tables = validity_tables(selfreport, other, n_boot=200)
    assert tables["validity_pairs"].empty and not tables["behavior_reliability"].empty
    assert "0 respondents" in tables["notes"]["note"].iloc[-1]
    few = validity_tables(selfreport[selfreport["persona"].isin(["p0", "p1", "p2"])], behavior, n_boot=200)
    assert few["validity_pairs"]["r"].notna().all() and few["validity_pairs"]["n"].eq(3).all()
    constant = behavior.assign(score=np.where(behavior["task"] == "dictator-game", 1.0, behavior["score"]))
    pairs = validity_tables(selfreport, constant, n_boot=200)["validity_pairs"].set_index(["trait", "task"])
    assert pd.isna(pairs.loc[("agreeableness", "dictator-game"), "r"])
    assert "constant" in pairs.loc[("agreeableness", "dictator-game"), "note"]


def test_split_half_uses_the_task_file_order_and_counts_missing():
    selfreport, behavior = _ground_truth(n_models=1, n_personas=30)
    behavior = behavior.copy()
    behavior.loc[behavior.index[::10], ["outcome", "score"]] = ["unparseable", np.nan]
    tables = validity_tables(selfreport, behavior, n_boot=200,
                             variant_order={"dictator-game": ["v1", "v2", "v3", "v4"]})
    reliability = tables["behavior_reliability"].set_index("task")
    assert reliability.loc["dictator-game", "missing_rate"] == pytest.approx(
        behavior.loc[behavior["task"] == "dictator-game", "score"].isna().mean())
    assert reliability.loc["dictator-game", "spearman_brown"] > reliability.loc["dictator-game", "r_half"] > 0.4
    reordered = validity_tables(selfreport, behavior, n_boot=200,
                                variant_order={"dictator-game": ["v1", "v3", "v2", "v4"]})["behavior_reliability"]
    assert reordered.set_index("task").loc["dictator-game", "r_half"] != reliability.loc["dictator-game", "r_half"]
    # Variants that contradict each other: odd ones follow the trait, even ones its opposite.
    flipped = behavior.copy()
    even = (flipped["task"] == "social-choice") & flipped["variant"].isin(["v2", "v4"])
    flipped.loc[even, "score"] = -flipped.loc[even, "score"]
    tables = validity_tables(selfreport, flipped, n_boot=200)
    row = tables["behavior_reliability"].set_index("task").loc["social-choice"]
    assert row["r_half"] < -0.5 and pd.isna(row["spearman_brown"]) and "not estimable" in row["note"]


def test_manipulation_check_covers_the_targeted_traits_only():
    selfreport, behavior = _ground_truth(n_models=2, n_personas=20)
    targets = pd.DataFrame({"persona": ["p1", "p2", "p3", "p4"], "trait": "agreeableness", "level": [-2, -1, 1, 2]})
    table = validity_tables(selfreport, behavior, targets, n_boot=200)["manipulation_check"]
    assert set(table["trait"]) == {"agreeableness"} and set(table["scope"]) == {"model-0", "model-1", "pooled"}
    assert set(table["measure"]) == {"self-report", "dictator-game", "insult-reply"}
    assert table["n"].tolist() == [20, 20, 20, 20, 20, 20, 40, 40, 40]
    unused = pd.DataFrame({"persona": ["nobody"], "trait": ["agreeableness"], "level": [2]})
    tables = validity_tables(selfreport, behavior, unused, n_boot=200)
    assert tables["manipulation_check"].empty
    assert "no persona in the data" in tables["notes"].set_index("table").loc["manipulation_check", "note"]


def test_bad_input_names_the_table_and_column():
    selfreport, behavior = _ground_truth(n_models=1, n_personas=5)
    with pytest.raises(PsytestError, match="behaviour data: missing column.*variant"):
        validity_tables(selfreport, behavior.drop(columns="variant"))
    with pytest.raises(PsytestError, match="self-report data: missing column.*trait_sign"):
        validity_tables(selfreport.drop(columns="trait_sign"), behavior)
    clash = behavior.copy()
    clash.loc[0, "direction"] = -1
    with pytest.raises(PsytestError, match="task 'dictator-game' has more than one trait or direction"):
        validity_tables(selfreport, clash)


def test_targets_of_the_trait_shaping_personas():
    targets = targets_frame("trait-shaping")
    assert set(targets.columns) == {"persona", "trait", "level"}
    assert "baseline" not in set(targets["persona"])  # no target: level 0 for every trait
    assert set(targets["level"]) == {-2, -1, 1, 2}
    assert targets.groupby("persona").size().eq(1).all()


def test_read_selfreport_from_a_simulated_run(tmp_path):
    from psychometrics.design.plan import Design
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.run.directory import administer
    from psychometrics.run.frame import responses_frame
    from psychometrics.statistics.scoring import keyed_values
    from psychometrics.run.store import RunStore

    personas = ["baseline", "extraversion-very-low", "extraversion-very-high", "agreeableness-very-low",
                "agreeableness-very-high"]
    design = Design(personas="trait-shaping", persona_ids=personas, option_orders=["original", "reversed"],
                    samples=2, temperature=1.0)
    administer(SimulatedRespondent("sim/seed=2"), [resolve_inventory("mini-ipip")], design, tmp_path / "run")
    scores, items = read_selfreport([tmp_path / "run"])
    assert set(scores["persona"]) == set(personas) and set(scores["model"]) == {"sim/seed=2"}
    assert scores.groupby(["persona", "scale"])["cell"].nunique().eq(4).all()  # 2 orders x 2 samples
    assert set(scores["trait"]) == {"extraversion", "agreeableness", "conscientiousness", "neuroticism", "openness"}
    # Item values: keyed answers averaged over the respondent's cells; scale scores: keyed mean per cell.
    inventory = resolve_inventory("mini-ipip")
    with RunStore(tmp_path / "run" / "responses.sqlite") as store:
        raw = responses_frame(store)
    raw["keyed"] = keyed_values(raw, inventory)
    expected_items = raw.groupby(["persona", "item_id"])["keyed"].mean()
    got_items = items.set_index(["persona", "item"])["value"]
    assert len(got_items) == 5 * 20 and got_items.to_numpy() == pytest.approx(
        expected_items.loc[got_items.index].to_numpy(), nan_ok=True)
    neuroticism = next(s for s in inventory.scales if s.trait == "neuroticism")
    cell = raw[(raw["persona"] == "baseline") & (raw["option_order"] == "reversed") & (raw["sample"] == 1)]
    score = scores[(scores["persona"] == "baseline") & (scores["scale"] == neuroticism.id)
                   & scores["cell"].str.startswith("0:reversed|") & scores["cell"].str.contains(r"\|1\|")]
    assert len(score) == 1 and score["trait_sign"].iloc[0] == neuroticism.trait_sign
    assert score["score"].iloc[0] == pytest.approx(cell[cell["item_id"].isin(neuroticism.items)]["keyed"].mean())
    assert scores.groupby(["persona", "trait"])["score"].mean()[("extraversion-very-high", "extraversion")] > \
        scores.groupby(["persona", "trait"])["score"].mean()[("extraversion-very-low", "extraversion")]
    with pytest.raises(PsytestError, match="no such run directory"):
        read_selfreport([tmp_path / "nothing"])


def test_stored_conversations_outside_the_plan_are_ignored_and_noted(tmp_path):
    """A run directory whose store also holds an earlier run's conversations with more variants (as in the
    committed Qwen result, where one persona averaged 4 variants and the others 2): only the planned ones
    are read, with a note, and every respondent's score averages the same variants."""
    import json
    import shutil

    from psychometrics.behavior.analysis import behavior_frame, planned_behavior_frame, run_plan
    from psychometrics.run.owner import open_run
    from psychometrics.behavior.runner import BehaviorDesign, behave, plan_conversations
    from psychometrics.behavior.task import resolve_tasks
    from psychometrics.design.plan import Design
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.design.personas import resolve_persona_set
    from psychometrics.run.directory import administer
    from psychometrics.validity.tables import compute_validity

    model, personas = "sim/seed=3,behavior_link=0.8", ("baseline", "agreeableness-very-low", "agreeableness-very-high",
                                                        "extraversion-very-low", "extraversion-very-high")
    administer(SimulatedRespondent(model), [resolve_inventory("mini-ipip")],
               Design(personas="trait-shaping", persona_ids=list(personas)), tmp_path / "q")
    tasks, persona_set = resolve_tasks("dictator-game,social-choice"), resolve_persona_set("trait-shaping")
    for name, variants in (("four", 4), ("two", 2)):
        behave(SimulatedRespondent(model), tasks, BehaviorDesign(personas="trait-shaping", persona_ids=personas,
                                                                 variants=variants), tmp_path / name,
               persona_set=persona_set)
    assert behavior_frame(tmp_path / "two").groupby(["persona", "task"])["variant"].nunique().eq(2).all()
    # The earlier run's store (4 variants, the first 2 the same conversations) ends up in this directory.
    shutil.copy(tmp_path / "four" / "behavior.sqlite", tmp_path / "two" / "behavior.sqlite")
    frame, notes = planned_behavior_frame(tmp_path / "two")
    assert len(frame) == 5 * 2 * 2 and frame.groupby(["persona", "task"])["variant"].nunique().eq(2).all()
    assert len(notes) == 1 and "20 stored conversation(s) outside the run's plan were ignored" in notes[0]
    assert set(frame["request_id"]) == {p.request_id for p in plan_conversations(
        tasks, BehaviorDesign(personas="trait-shaping", persona_ids=personas, variants=2), SimulatedRespondent(model).name,
        SimulatedRespondent(model).params, persona_set)}
    tables = compute_validity([tmp_path / "q"], [tmp_path / "two"], n_boot=200)
    said = " | ".join(tables["notes"]["note"])
    assert "outside the run's plan were ignored" in said and "variant sets differ" not in said
    reliability = tables["behavior_reliability"]
    assert (reliability[["n_variants", "n_variants_min", "n_variants_max"]] == 2).all().all()
    # Conversations in planned cells but sent with other parameters are not the run's either, and said so.
    path = tmp_path / "two" / "manifest.json"
    original = path.read_text()
    manifest = json.loads(original)
    path.write_text(json.dumps(manifest | {"backend_params": {"temperature_offset": 1}}))
    frame, notes = planned_behavior_frame(tmp_path / "two")
    assert frame.empty and "40 stored" in notes[0] and "20 of them are in a planned" in notes[1]
    # A persona set that changed since the run: the plan is rebuilt from the manifest's design instead.
    manifest = json.loads(original)
    manifest["personas"]["content_hash"] = "changed"
    path.write_text(json.dumps(manifest))
    two = open_run(tmp_path / "two", expect="behavior")
    plan = run_plan(two.behavior, two.tasks)
    assert plan["how"] == "key" and plan["ids"] is None and len(plan["keys"]) == 5 * 2 * 2
    frame, notes = planned_behavior_frame(tmp_path / "two")
    assert len(frame) == 20 and len(notes) == 2 and "rebuilt" in notes[0] and "20 stored" in notes[1]
