"""Self-report vs behaviour (psychometrics/validity.py).

Golden values come from ``tests/reference/validity.R`` (cor, cor.test, lm, p.adjust, psych::alpha, lmer) on
the data it writes to ``tests/reference/data/validity-*.csv``. Bootstrap intervals are checked for sanity
(seeded, contain r, about the Fisher-z width on a large sample), and a synthetic ground truth checks that
the analysis confirms the linked pairs and only those.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.errors import PsytestError
from psychometrics.validity import (
    bh_adjust,
    bootstrap_r,
    random_intercept_reml,
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
    return {name: read(name) for name in ("selfreport", "items", "behavior", "targets")}


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
        for key in ("r_half", "spearman_brown", "missing_rate"):
            assert row[key] == pytest.approx(ref[key], abs=TIGHT), (ref["scope"], ref["task"], key)


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
        for key in ("r", "p", "p_bh_all", "rel_self", "rel_behavior", "r_corrected"):
            assert row[key] == pytest.approx(ref[key], abs=TIGHT), where + (key,)
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
        assert row["within_df"] == 100 - 5 - 1 and row["between_df"] == 3
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
        assert row["kind"] == ref["kind"] and row["n"] == ref["n"]
        for key in ("r", "slope", "p"):
            assert row[key] == pytest.approx(ref[key], abs=TIGHT), (ref["scope"], ref["trait"], ref["measure"], key)
    # The simulated personas moved self-report and the linked behaviour in the intended direction.
    pooled = table[table["scope"] == "pooled"].set_index(["trait", "measure"])
    assert pooled.loc[("agreeableness", "self-report"), "r"] > 0.5
    assert pooled.loc[("agreeableness", "insult-reply"), "r"] > 0  # signed by its direction (-1)


def test_behaviour_joins_the_mtmm_matrix_as_a_method(tables):
    names = GOLDEN["mtmm"]["columns"]
    reference = np.array(GOLDEN["mtmm"]["cor"])
    table = tables["validity_mtmm"]
    assert set(table["method_a"]) | set(table["method_b"]) == {"inv-a", "inv-b", "behavior"}
    checked = 0
    for row in table.itertuples():
        i, j = names.index(f"{row.method_a}|{row.trait_a}"), names.index(f"{row.method_b}|{row.trait_b}")
        assert row.r == pytest.approx(reference[i, j], abs=TIGHT)
        checked += 1
    assert checked == len(names) * (len(names) - 1) // 2
    summary = tables["validity_mtmm_summary"].set_index("criterion")
    assert summary["comparisons"].iloc[0] > 0


def test_bh_adjust_matches_p_adjust_and_skips_missing():
    ref = [r for r in GOLDEN["pairs"] if r["scope"] == "m1"]
    adjusted = bh_adjust([r["p"] for r in ref])
    assert adjusted == pytest.approx([r["p_bh_all"] for r in ref], abs=1e-14)
    assert bh_adjust([0.01, None, 0.04, float("nan"), 0.03]) == pytest.approx([0.03, None, 0.04, None, 0.04])


def test_bootstrap_ci_is_seeded_and_about_the_fisher_width():
    rng = np.random.default_rng(5)
    n, rho = 2000, 0.5
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)
    r = float(np.corrcoef(x, y)[0, 1])
    low, high, failed = bootstrap_r(x, y, n_boot=2000, rng=np.random.default_rng(1))
    assert failed == 0 and low < r < high
    assert (low, high, 0) == bootstrap_r(x, y, n_boot=2000, rng=np.random.default_rng(1))
    half = 1.959964 / math.sqrt(n - 3)
    fisher = math.tanh(math.atanh(r) + half) - math.tanh(math.atanh(r) - half)
    assert (high - low) == pytest.approx(fisher, rel=0.3)
    # Within groups: resampled inside each group, centred within group, still around the pooled r.
    groups = np.repeat(["a", "b"], n // 2)
    shifted = y + np.where(groups == "a", 5.0, -5.0)
    low, high, _ = bootstrap_r(x, shifted, groups, n_boot=1000, rng=np.random.default_rng(1))
    assert low < r < high and high - low < 2 * fisher
    assert bootstrap_r(np.ones(10), np.arange(10.0), n_boot=200, rng=np.random.default_rng(0))[:2] == (None, None)


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
    from psychometrics.design import Design
    from psychometrics.library import resolve_inventory
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.run import administer
    from psychometrics.scoring import keyed_values, responses_frame
    from psychometrics.store import RunStore

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
    with pytest.raises(PsytestError, match="not a psytest run directory"):
        read_selfreport([tmp_path / "nothing"])
