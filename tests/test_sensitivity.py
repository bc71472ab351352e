"""Design sensitivity and response styles: checked against R, and against simulated respondents with
known biases run through psytest end to end.

Golden values come from ``tests/reference/sensitivity.R`` (aov, lmer, t.test, effectsize, chisq.test,
and direct R computations), run on ``tests/reference/data/sensitivity-*.csv``. Those CSVs were written
by this file: ``python tests/test_sensitivity.py`` regenerates them from a simulated respondent, and
``test_reference_data_is_reproducible`` checks that psytest still produces exactly them.
"""

from __future__ import annotations

import json
import math
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.conditions import ordered_levels
from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.directory import administer
from psychometrics.run.owner import open_run
from psychometrics.run.frame import responses_frame
from psychometrics.statistics.design_effects import factor_effects, option_order_flips, variance_decomposition
from psychometrics.statistics.response_styles import acquiescence, position_bias, response_style_rates
from psychometrics.run.store import RunStore

REFERENCE = Path(__file__).parent / "reference"
SCORES_CSV = REFERENCE / "data" / "sensitivity-scores.csv"
RESPONSES_CSV = REFERENCE / "data" / "sensitivity-responses.csv"
GOLDEN = REFERENCE / "golden" / "sensitivity.json"

# Position bias and acquiescence to detect, refusals to drop, and two biographies that are different
# people (persona_spread), so that two design factors have real effects on the scale scores.
REFERENCE_MODEL = "sim/seed=3,position_first=1.5,acquiescence=0.5,noise=0.5,refusal=0.03,persona_spread=1"
REFERENCE_DESIGN = dict(option_orders=["original", "reversed"], templates=["numbered", "lettered", "worded"],
                        paraphrases="all", personas="neutral-biographies", persona_ids=["bio01", "bio02"],
                        samples=2, temperature=1.0)
RESPONSE_COLUMNS = ["inventory", "item_id", "scale", "reverse_keyed", "option_order", "template", "persona", "wording",
                    "item_order", "sample", "mode", "outcome", "position", "value"]


# ---------------------------------------------------------------------------------------------------
# running psytest


def run_sim(tmp: Path, model: str, inventory: str = "bfi-44", **design) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Administer ``inventory`` to a simulated respondent through psytest; (responses, scores, inventories)."""
    inventories = [resolve_inventory(inventory)]
    administer(SimulatedRespondent(model), inventories, Design(**design), tmp)
    scores = open_run(tmp).scores()
    with RunStore(tmp / "responses.sqlite") as store:
        responses = responses_frame(store)
    return responses, scores, inventories


def make_reference_data(tmp: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference data: (responses, scores) as written to the CSVs the R script reads."""
    responses, scores, inventories = run_sim(tmp, REFERENCE_MODEL, **REFERENCE_DESIGN)
    inventory = inventories[0]
    responses = responses.assign(
        scale=responses["item_id"].map(inventory.scale_of_item),
        reverse_keyed=responses["item_id"].map({i.id: i.reverse_keyed for i in inventory.items}),
    )[RESPONSE_COLUMNS]
    return responses.reset_index(drop=True), scores


@lru_cache(maxsize=None)
def reference_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    responses = pd.read_csv(RESPONSES_CSV, keep_default_na=False, na_values=[""])
    scores = pd.read_csv(SCORES_CSV, keep_default_na=False, na_values=[""])
    return responses, scores


@lru_cache(maxsize=None)
def golden() -> dict:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


if __name__ == "__main__":  # regenerate the reference CSVs
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        responses, scores = make_reference_data(Path(tmp))
    responses.to_csv(RESPONSES_CSV, index=False)
    scores.to_csv(SCORES_CSV, index=False)
    print(f"wrote {RESPONSES_CSV} ({len(responses)} rows) and {SCORES_CSV} ({len(scores)} rows)", file=sys.stderr)


def close(actual, expected, rel=1e-8, abs_=1e-12) -> bool:
    if expected is None:
        return actual is None or (isinstance(actual, float) and math.isnan(actual))
    return math.isclose(float(actual), float(expected), rel_tol=rel, abs_tol=abs_)


def assert_close(actual, expected, what: str, rel=1e-8, abs_=1e-12) -> None:
    assert close(actual, expected, rel, abs_), f"{what}: python {actual!r} vs R {expected!r}"


def assert_notes_explain_nan(frame: pd.DataFrame, columns: list[str]) -> None:
    """A statistic is NaN only in a row whose note says why."""
    missing = frame[columns].isna().any(axis=1)
    unexplained = frame[missing & (frame["note"] == "")]
    assert unexplained.empty, unexplained


# ---------------------------------------------------------------------------------------------------
# (a) agreement with R on the reference data


def test_reference_data_matches_inventory_and_is_small():
    responses, scores = reference_frames()
    inventory = resolve_inventory("bfi-44")
    assert (responses["scale"] == responses["item_id"].map(inventory.scale_of_item)).all()
    keyed = responses["item_id"].map({i.id: i.reverse_keyed for i in inventory.items})
    assert (responses["reverse_keyed"].astype(bool) == keyed).all()
    assert RESPONSES_CSV.stat().st_size + SCORES_CSV.stat().st_size < 400_000
    assert golden()["meta"]["generated_by"] == "tests/reference/sensitivity.R"


def test_reference_data_is_reproducible(tmp_path):
    """psytest still produces exactly the answers and scores the R script was run on."""
    responses, scores = make_reference_data(tmp_path)
    stored_responses, stored_scores = reference_frames()
    pd.testing.assert_frame_equal(responses.reset_index(drop=True), stored_responses, check_dtype=False)
    pd.testing.assert_frame_equal(scores.reset_index(drop=True), stored_scores, check_dtype=False, rtol=1e-12)


def _drop_unbalanced(scores: pd.DataFrame) -> pd.DataFrame:
    """The same rows sensitivity.R removes for its unbalanced comparison."""
    drop = ((scores["sample"] == 1) & (scores["template"] == "worded")) | (
        (scores["persona"] == "bio02") & (scores["wording"] == "original") & (scores["option_order"] == "reversed"))
    return scores[~drop]


@pytest.mark.parametrize("variant", ["balanced", "unbalanced", "unbalanced_reordered"])
def test_sequential_anova_matches_aov(variant):
    _, scores = reference_frames()
    reference = golden()["aov"][variant]
    data = scores if variant == "balanced" else _drop_unbalanced(scores)
    result = variance_decomposition(data, reference["factors"]).set_index(["scale", "source"])
    if variant == "balanced":  # the default factor set is the varied factors but sample
        default = variance_decomposition(data).set_index(["scale", "source"])
        pd.testing.assert_frame_equal(default, result)
    assert len(reference["rows"]) == len(result)
    for row in reference["rows"]:
        ours = result.loc[(row["scale"], row["source"])]
        what = f"{variant} {row['scale']} {row['source']}"
        assert ours["df"] == row["df"], what
        assert_close(ours["sum_sq"], row["sum_sq"], what + " SS")
        assert_close(ours["mean_sq"], row["mean_sq"], what + " MS")
        assert_close(ours["statistic"], row["F"], what + " F")
        assert_close(ours["p_value"], row["p"], what + " p", rel=1e-7, abs_=1e-15)
        assert ours["balanced"] == (variant == "balanced")
    if variant != "balanced":
        assert result["variance_component"].isna().all()
        assert result["note"].str.contains("not balanced").all()
    shares = result.groupby(level="scale")["share"].sum()
    assert np.allclose(shares, 1.0)


def test_variance_components_match_lmer():
    _, scores = reference_frames()
    compared = 0
    for block in golden()["lmer"]:
        result = variance_decomposition(scores, block["factors"]).set_index(["scale", "source"])
        for row in block["rows"]:
            ours = result.loc[row["scale"]]
            truncated = ours["note"].iloc[0].find("truncated at zero") >= 0
            assert truncated == row["boundary"], f"{block['factors']} {row['scale']}: boundary disagrees with lmer"
            if row["boundary"]:
                continue
            for source, value in row["components"].items():
                assert_close(ours.loc[source, "variance_component"], value,
                             f"{block['factors']} {row['scale']} {source}", rel=1e-4, abs_=1e-7)
                compared += 1
            assert np.isclose(ours["component_share"].sum(), 1.0)
    assert compared >= 10  # C with four factors; A, C and O with two


def noncentral_t_cdf(t: float, df: int, ncp: float) -> float:
    """P(T <= t) for the noncentral t, by quadrature over the chi-square (independent of scipy.stats.nct)."""
    from scipy import integrate, stats

    def integrand(v):
        return stats.norm.cdf(t * math.sqrt(v / df) - ncp) * stats.chi2.pdf(v, df)

    return integrate.quad(integrand, 0, np.inf, epsabs=1e-14, epsrel=1e-12, limit=500)[0]


def test_paired_t_and_dz_match_t_test_and_effectsize():
    _, scores = reference_frames()
    by_factor = {}
    compared = 0
    for row in golden()["paired_t"]:
        if row["factor"] not in by_factor:
            by_factor[row["factor"]] = factor_effects(scores, row["factor"]).set_index(["scale", "test", "level"])
        ours = by_factor[row["factor"]].loc[(row["scale"], "paired_t", row["level"])]
        what = f"{row['factor']} {row['level']} vs {row['reference']} {row['scale']}"
        assert ours["reference"] == row["reference"] and ours["n"] == row["n"] and ours["df"] == row["df"], what
        assert ours["cells_dropped"] == 0 and ours["note"] == "", what
        for ours_key, r_key in [("mean_diff", "mean_diff"), ("ci_low", "ci_low"), ("ci_high", "ci_high"),
                                ("statistic", "t"), ("effect_size", "d_z")]:
            assert_close(ours[ours_key], row[r_key], f"{what} {ours_key}")
        assert_close(ours["p_value"], row["p"], what + " p", rel=1e-7, abs_=1e-15)
        assert_close(ours["p_holm"], row["p_holm"], what + " p_holm", rel=1e-7, abs_=1e-15)
        # d_z interval: the noncentral-t roots. R's pt() is accurate only for |ncp| < 37.62 (?pt); beyond
        # that the roots are checked by quadrature instead. effectsize finds them with optim (to ~1e-5).
        for bound, tail in (("low", 0.975), ("high", 0.025)):
            value = ours[f"effect_size_ci_{bound}"]
            ncp = value * math.sqrt(row["n"])
            if abs(ncp) < 37.62:
                compared += 1
                assert_close(value, row[f"d_z_ci_{bound}_exact"], f"{what} d_z CI {bound}", rel=1e-7, abs_=1e-9)
                assert_close(value, row[f"d_z_ci_{bound}"], f"{what} d_z CI {bound} (effectsize)", rel=1e-4, abs_=1e-4)
            else:
                assert math.isclose(noncentral_t_cdf(row["t"], row["df"], ncp), tail, abs_tol=1e-9), what
    assert compared >= 40
    assert set(by_factor) == {"option_order", "template", "persona", "wording"}


def test_repeated_measures_anova_matches_aov_error_strata():
    _, scores = reference_frames()
    for row in golden()["rm_anova"]:
        ours = factor_effects(scores, row["factor"]).set_index(["scale", "test"]).loc[(row["scale"], "rm_anova")]
        what = f"{row['factor']} {row['scale']}"
        assert (ours["n"], ours["df"], ours["df2"]) == (row["blocks"], row["df1"], row["df2"]), what
        assert ours["effect_size_type"] == "partial_eta_sq"
        for ours_key, r_key in [("statistic", "F"), ("effect_size", "partial_eta_sq"), ("gg_epsilon", "gg_epsilon")]:
            assert_close(ours[ours_key], row[r_key], f"{what} {ours_key}")
        assert_close(ours["p_value"], row["p"], what + " p", rel=1e-7, abs_=1e-15)
        assert_close(ours["p_gg"], row["p_gg"], what + " p_gg", rel=1e-7, abs_=1e-15)


def test_position_bias_matches_chisq_test():
    responses, _ = reference_frames()
    result = position_bias(responses, [resolve_inventory("bfi-44")])
    for row in golden()["chisq"]:
        ours = result[result["scheme"] == row["scheme"]].sort_values("position")
        assert ours["count"].tolist() == row["counts"]
        first = ours.iloc[0]
        assert first["n"] == row["n"] and first["df"] == row["df"]
        assert_close(first["chi_square"], row["chi_square"], row["scheme"] + " X2")
        assert_close(first["p_value"], row["p"], row["scheme"] + " p", rel=1e-7, abs_=1e-300)
        assert np.allclose(ours["residual"], row["residuals"], rtol=1e-10)
        assert_close(first["first_rate"], row["first_rate"], "first rate")
        assert_close(first["last_rate"], row["last_rate"], "last rate")
    pooled = result[result["scheme"] == "all"]
    assert pooled["option_orders"].iloc[0] == 2 and not pooled["content_balanced"].iloc[0]


def test_option_order_flips_match_r():
    responses, _ = reference_frames()
    ours = option_order_flips(responses).iloc[0]
    reference = golden()["flips"]
    for key, value in reference.items():
        assert_close(ours[key], value, f"flips {key}")
    assert ours["pair_flips"] == ours["flips"]  # two orders: one pair per unit


def test_acquiescence_matches_r():
    responses, _ = reference_frames()
    result = acquiescence(responses, [resolve_inventory("bfi-44")], per_scale=True).set_index("scale")
    for row in golden()["acquiescence"]:
        ours = result.loc[row["scale"]]
        for key, value in row.items():
            if key == "scale":
                continue
            ours_key = {"t": "statistic", "p": "p_value"}.get(key, key)
            assert_close(ours[ours_key], value, f"acquiescence {row['scale']} {key}", abs_=1e-15)
    assert result.loc["all", "scales_used"] == "E;A;C;N;O" and result.loc["all", "scales_excluded"] == ""


def test_response_style_rates_match_r():
    responses, _ = reference_frames()
    result = response_style_rates(responses, [resolve_inventory("bfi-44")]).set_index(["factor", "level"])
    for row in golden()["rates"]:
        ours = result.loc[(row["factor"], row["level"])]
        for key in ("n", "n_valid", "midpoint_rate", "extreme_rate", "refusal_rate", "invalid_rate"):
            assert_close(ours[key], row[key], f"rates {row['factor']}={row['level']} {key}")
    assert set(result.index.get_level_values("factor")) == {"all", "option_order", "template", "persona", "wording", "sample"}


# ---------------------------------------------------------------------------------------------------
# (b) ground truth: simulated respondents with known biases, run through psytest end to end


def test_injected_acquiescence_is_detected(tmp_path):
    design = dict(temperature=1.0, samples=3)
    plain = acquiescence(*run_sim(tmp_path / "plain", "sim/seed=1", **design)[::2]).iloc[0]
    yea = acquiescence(*run_sim(tmp_path / "yea", "sim/seed=1,acquiescence=1.5", **design)[::2]).iloc[0]
    assert yea["scales_used"] == "E;A;C;N;O" and yea["n_cells"] == 3
    assert abs(plain["balanced_acquiescence"]) < 0.2 and abs(plain["mean_raw_minus_midpoint"]) < 0.2
    assert yea["balanced_acquiescence"] > 1.0 and yea["mean_raw_minus_midpoint"] > 1.0
    assert yea["ci_low"] > 0 and yea["p_value"] < 0.01
    assert plain["agree_both_rate"] < 0.15 and yea["agree_both_rate"] > 0.6
    assert yea["agree_both_rate"] > 10 * yea["disagree_both_rate"]


def test_injected_position_bias_is_detected_under_both_orders(tmp_path):
    design = dict(option_orders=["original", "reversed"], templates=["numbered", "lettered", "worded"],
                  temperature=1.0, samples=3)
    responses, scores, inventories = run_sim(tmp_path / "biased", "sim/seed=1,position_first=3", **design)
    bias = position_bias(responses, inventories)
    first = bias[bias["position"] == 0].set_index("scheme")
    assert list(first.index) == ["original", "reversed", "all"]
    for scheme in ("original", "reversed"):  # the same position wins although it holds opposite values
        assert first.loc[scheme, "p_value"] < 1e-20 and first.loc[scheme, "first_rate"] > 0.45
        assert first.loc[scheme, "residual"] > 10 and first.loc[scheme, "last_rate"] < 0.1
    # ... so the answers flip with the option order, far more often than between samples,
    flips = option_order_flips(responses).iloc[0]
    assert flips["flip_rate"] > 0.85 and flips["large_flip_rate"] > 0.5
    assert flips["pair_flip_rate"] > flips["resample_flip_rate"] + 0.2
    # ... and the scale scores move: most on Openness (10 of 12 items keyed the same way)
    effects = factor_effects(scores, "option_order").set_index("scale")
    assert effects.loc["O", "mean_diff"] > 1.0 and effects.loc["O", "effect_size"] > 1.5
    assert effects.loc["O", "p_value"] < 0.001 and effects.loc["O", "effect_size_ci_low"] > 0.5
    shares = variance_decomposition(scores).set_index(["scale", "source"])["share"]
    assert shares[("O", "option_order")] > 0.6

    unbiased_flips = option_order_flips(run_sim(tmp_path / "plain", "sim/seed=1", **design)[0]).iloc[0]
    assert abs(unbiased_flips["pair_flip_rate"] - unbiased_flips["resample_flip_rate"]) < 0.1


def test_position_bias_under_a_content_balanced_latin_square(tmp_path):
    """A Williams square shows every value at every position: chance stays chance, bias is bias."""
    plain = position_bias(*run_sim(tmp_path / "plain", "sim/seed=1", option_orders=["latin-square"],
                                   temperature=1.0)[::2])
    biased = position_bias(*run_sim(tmp_path / "biased", "sim/seed=1,position_first=3",
                                    option_orders=["latin-square"], temperature=1.0)[::2])
    for frame in (plain, biased):
        assert set(frame["scheme"]) == {"latin"} and frame["content_balanced"].all()
        assert (frame["option_orders"] == 10).all()
    assert plain["p_value"].iloc[0] > 0.01
    assert biased["p_value"].iloc[0] < 1e-50 and biased["first_rate"].iloc[0] > 0.6


def test_unbiased_respondent_at_temperature_zero_never_flips(tmp_path):
    design = dict(option_orders=["original", "reversed"], templates=["numbered", "worded"], temperature=0.0,
                  samples=2)
    flips = option_order_flips(run_sim(tmp_path / "plain", "sim/seed=1", **design)[0]).iloc[0]
    assert flips["units"] == 44 * 2 * 2 and flips["units_incomplete"] == 0
    assert flips["flips"] == 0 and flips["flip_rate"] == 0 and flips["mean_abs_diff"] == 0
    assert flips["resample_flip_rate"] == 0 and flips["note"] == ""
    biased = option_order_flips(run_sim(tmp_path / "biased", "sim/seed=1,position_first=3", **design)[0]).iloc[0]
    assert biased["flip_rate"] > 0.9 and biased["resample_flip_rate"] == 0


def test_midpoint_preference_shows_in_the_midpoint_rate(tmp_path):
    design = dict(temperature=1.0, samples=3)
    plain = response_style_rates(*run_sim(tmp_path / "plain", "sim/seed=1", **design)[::2]).set_index("factor")
    middle = response_style_rates(*run_sim(tmp_path / "mid", "sim/seed=1,midpoint=2", **design)[::2]).set_index("factor")
    assert middle.loc["all", "midpoint_rate"] > plain.loc["all", "midpoint_rate"] + 0.25
    assert middle.loc["all", "midpoint_rate"] > 0.75
    assert middle.loc["all", "extreme_rate"] < plain.loc["all", "extreme_rate"]
    assert plain.loc["all", "valid_rate"] == 1 and plain.loc["all", "invalid_rate"] == 0
    assert list(plain.loc["sample", "level"]) == [0, 1, 2]


def test_results_are_per_answer_mode(tmp_path):
    responses, scores, inventories = run_sim(tmp_path, "sim/seed=1,position_first=2", modes=["text", "probs"],
                                             option_orders=["original", "reversed"], temperature=1.0)
    flips = option_order_flips(responses).set_index("mode")
    assert flips.loc["text", "threshold"] == 0 and flips.loc["probs", "threshold"] == 0.5
    assert flips.loc["probs", "flip_rate"] > 0.5
    assert set(position_bias(responses, inventories)["mode"]) == {"text", "probs"}
    effects = factor_effects(scores, "option_order")
    assert set(effects["mode"]) == {"text", "probs"} and len(effects) == 10
    with pytest.raises(ValueError, match="not a design factor"):
        factor_effects(scores, "mode")


# ---------------------------------------------------------------------------------------------------
# degenerate cases: a note, never a crash or an unexplained NaN


def test_single_level_factor_is_not_varied():
    _, scores = reference_frames()
    effects = factor_effects(scores, "item_order")
    assert (effects["test"] == "none").all() and effects["note"].str.startswith("not varied").all()
    decomposition = variance_decomposition(scores, ["option_order", "item_order"]).set_index(["scale", "source"])
    assert decomposition.loc[("E", "item_order"), "df"] == 0
    assert decomposition.loc[("E", "item_order"), "note"].startswith("not varied")
    assert decomposition.loc[("E", "residual"), "df"] == 72 - 2


def test_constant_scores():
    _, scores = reference_frames()
    constant = scores.assign(score=3.0)
    effects = factor_effects(constant, "template")
    assert effects["note"].str.contains("no difference in any matched pair|constant").all()
    assert_notes_explain_nan(effects, ["statistic", "p_value", "effect_size"])
    decomposition = variance_decomposition(constant)
    assert decomposition["note"].str.contains("scores constant").all()
    assert_notes_explain_nan(decomposition, ["share", "variance_component"])
    shifted = scores.copy()  # every reversed cell exactly 0.5 higher: constant differences
    shifted.loc[shifted["option_order"] == "reversed", "score"] = (
        shifted.loc[shifted["option_order"] == "original", "score"].to_numpy() + 0.5)
    effects = factor_effects(shifted, "option_order")
    assert np.allclose(effects["mean_diff"], 0.5) and effects["statistic"].isna().all()
    assert effects["note"].str.contains("same in every matched pair").all()


def test_unmatched_and_unscored_cells_are_dropped_and_counted():
    _, scores = reference_frames()
    e_reversed = scores.index[(scores["scale"] == "E") & (scores["option_order"] == "reversed")]
    damaged = scores.drop(e_reversed[:3]).copy()
    damaged.loc[e_reversed[3], "score"] = np.nan
    effects = factor_effects(damaged, "option_order").set_index("scale")
    assert effects.loc["E", "n"] == 36 - 4 and effects.loc["E", "cells_dropped"] == 3 + 2
    assert "5 unmatched or unscored cells dropped" in effects.loc["E", "note"]
    assert effects.loc["A", "cells_dropped"] == 0 and effects.loc["A", "note"] == ""
    template = factor_effects(damaged, "template").set_index(["scale", "test"]).loc[("E", "rm_anova")]
    assert template["n"] == 24 - 4 and template["cells_dropped"] == 69 - 60
    decomposition = variance_decomposition(damaged).set_index(["scale", "source"])
    assert not decomposition.loc[("E", "residual"), "balanced"] and decomposition.loc[("A", "residual"), "balanced"]
    assert "1 unscored cells dropped" in decomposition.loc[("E", "residual"), "note"]
    with pytest.raises(ValueError, match="more than one row per design cell"):
        factor_effects(pd.concat([scores, scores]), "option_order")


def test_no_valid_answers(tmp_path):
    responses, scores, inventories = run_sim(tmp_path, "sim/seed=1,refusal=1", option_orders=["original", "reversed"])
    assert (responses["outcome"] == "refusal").all() and scores["score"].isna().all()
    bias = position_bias(responses, inventories)
    assert (bias["note"] == "no valid answers").all() and (bias["count"] == 0).all()
    flips = option_order_flips(responses).iloc[0]
    assert flips["note"] == "no valid answers" and flips["units_incomplete"] == 44
    acq = acquiescence(responses, inventories).iloc[0]
    assert acq["n_answers"] == 0 and "no valid answers" in acq["note"]
    rates = response_style_rates(responses, inventories).iloc[0]
    assert rates["refusal_rate"] == 1 and rates["invalid_rate"] == 1 and rates["note"] == "no valid answers"
    effects = factor_effects(scores, "option_order")
    assert (effects["note"] == "no matched pairs; 2 unmatched or unscored cells dropped").all()
    decomposition = variance_decomposition(scores)
    assert decomposition["note"].str.contains("no scored cells").all()
    for frame, columns in [(bias, ["chi_square", "p_value"]), (acq.to_frame().T, ["balanced_acquiescence"]),
                           (effects, ["statistic", "p_value"]), (decomposition, ["share"])]:
        assert_notes_explain_nan(frame, columns)


def test_scale_without_reverse_keyed_items_is_excluded(tmp_path):
    responses, _, inventories = run_sim(tmp_path, "sim/seed=1,acquiescence=1", inventory="sd3", temperature=1.0)
    result = acquiescence(responses, inventories, per_scale=True).set_index("scale")
    assert result.loc["all", "scales_used"] == "N;P" and result.loc["all", "scales_excluded"] == "M"
    assert result.loc["M", "note"] == "scale has items keyed in one direction only"
    assert result.loc["all", "n_answers"] == result.loc["N", "n_answers"] + result.loc["P", "n_answers"]
    assert result.loc["all", "balanced_acquiescence"] > 0.5


def test_inventory_without_balanced_scales_and_without_midpoint():
    from psychometrics.inventories.model import inventory_from_data

    data = {"id": "tiny4", "name": "Tiny", "version": "1", "citation": "test", "licence": "CC0",
            "instructions": "Rate each phrase.",
            "response_scale": {"min": 1, "max": 4, "labels": {1: "No", 2: "Rather no", 3: "Rather yes", 4: "Yes"}},
            "items": [{"id": "e1", "text": "Make friends easily."}, {"id": "e2", "text": "Talk a lot."}],
            "scales": [{"id": "E", "name": "Extraversion", "items": ["e1", "e2"]}]}
    inventory = inventory_from_data(data, "test")
    responses = pd.DataFrame({
        "inventory": "tiny4", "item_id": ["e1", "e2"] * 2, "option_order": ["original"] * 2 + ["reversed"] * 2,
        "template": "numbered", "persona": "none", "wording": "original", "item_order": "none", "sample": 0,
        "mode": "text", "outcome": "valid", "position": [0, 3, 3, 0], "value": [1.0, 4.0, 1.0, 4.0]})
    acq = acquiescence(responses, [inventory]).iloc[0]
    assert acq["scales_excluded"] == "E" and "no scale has both keying directions" in acq["note"]
    rates = response_style_rates(responses, [inventory]).set_index(["factor", "level"])
    assert rates.loc[("all", "all"), "extreme_rate"] == 1
    assert "no midpoint" in rates.loc[("all", "all"), "note"] and math.isnan(rates.loc[("all", "all"), "midpoint_rate"])
    flips = option_order_flips(responses).iloc[0]
    assert flips["flips"] == 0 and flips["note"] == "one sample per cell: no resampling baseline"
    bias = position_bias(responses, [inventory])
    assert "expected count below 5" in bias["note"].iloc[0] and not bias["content_balanced"].any()


def test_outputs_are_plain_csv_tables(tmp_path):
    responses, scores = reference_frames()
    inventories = [resolve_inventory("bfi-44")]
    frames = {
        "effects": factor_effects(scores, "wording"),
        "variance": variance_decomposition(scores),
        "flips": option_order_flips(responses),
        "position": position_bias(responses, inventories),
        "acquiescence": acquiescence(responses, inventories),
        "styles": response_style_rates(responses, inventories),
    }
    for name, frame in frames.items():
        assert all(isinstance(c, str) and c.isidentifier() for c in frame.columns), name
        assert frame["note"].map(lambda v: isinstance(v, str)).all(), name
        path = tmp_path / f"{name}.csv"
        frame.to_csv(path, index=False)
        assert len(pd.read_csv(path)) == len(frame)


def test_level_order_puts_the_design_default_first():
    assert ordered_levels(["worded", "lettered", "numbered"], "template") == ["numbered", "lettered", "worded"]
    assert ordered_levels(["paraphrase10", "paraphrase2", "original"], "wording") == ["original", "paraphrase2", "paraphrase10"]
    assert ordered_levels([2, 0, 1, None], "sample") == [0, 1, 2]


def test_explicit_reference_level():
    _, scores = reference_frames()
    effects = factor_effects(scores, "template", reference="worded")
    assert set(effects.loc[effects["test"] == "paired_t", "level"]) == {"numbered", "lettered"}
    assert (effects["reference"] == "worded").all()
    with pytest.raises(ValueError, match="not a level of template"):
        factor_effects(scores, "template", reference="survey")


def test_equal_mean_squares_give_a_zero_component_on_every_rounding():
    """BFI-44 C in text mode of the committed Qwen run: option order's mean square equals the residual's
    in exact arithmetic, so its component is 0; a last-bit change in the scores (another BLAS build sums
    in another order) must neither make it negative nor add a 'truncated' note."""
    stored = pd.read_csv(Path(__file__).parent.parent / "reports/qwen2.5-0.5b/analysis/scores.csv")
    scores = stored[(stored["inventory"] == "bfi-44") & (stored["mode"] == "text") & (stored["scale"] == "C")]
    rng = np.random.default_rng(0)
    for _ in range(20):
        nudged = scores.assign(score=scores["score"] * (1 + rng.choice([-1, 0, 1], len(scores)) * 2.2e-16))
        result = variance_decomposition(nudged).set_index("source")
        assert result.loc["option_order", "variance_component"] == 0
        assert (result["note"].fillna("") == "").all(), result["note"].tolist()


def _crossed_scores(rng, templates_equal: bool, noise: float) -> pd.DataFrame:
    """BFI-44-like scale scores of 3 option orders x 3 templates x 4 personas; with ``templates_equal``
    every template gives the same score in each cell (its effect is zero in exact arithmetic)."""
    rows = []
    base = {(o, p): 3 + rng.normal() for o in ("original", "reversed", "rotation1")
            for p in ("none", "bio01", "bio02", "bio03")}
    shift = {"numbered": 0.0, "lettered": 0.3, "worded": -0.1}
    for (order, persona), value in base.items():
        for template in shift:
            score = value + (0.0 if templates_equal else shift[template]) + noise * rng.normal()
            rows.append({"inventory": "bfi-44", "mode": "text", "kind": "scale", "scale": "E",
                         "option_order": order, "template": template, "persona": persona,
                         "wording": "original", "item_order": "none", "sample": 0, "score": score})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(5))
def test_a_factor_with_equal_level_means_gets_exactly_zero_and_p_one(seed):
    """Issue 13: SS as a difference of residual sums of squares left ~1e-17 of rounding (its size and sign
    set by the BLAS kernel) and p = 0.99999999; sums of squared QR effects give 0 and p = 1 exactly."""
    scores = _crossed_scores(np.random.default_rng(seed), templates_equal=True, noise=0.0)
    scores["score"] = scores["score"].round(4) / 7  # awkward binary fractions, identical per template
    for order in (["option_order", "template", "persona"], ["template", "persona", "option_order"]):
        result = variance_decomposition(scores, order).set_index("source")
        template = result.loc["template"]
        assert template["df"] == 2 and template["sum_sq"] == 0.0 and template["statistic"] == 0.0
        assert template["p_value"] == 1.0 and template["share"] == 0.0
        assert template["variance_component"] == 0.0
        assert result.loc["persona", "sum_sq"] > 0 and result.loc["persona", "p_value"] < 1


def test_an_exact_fit_has_no_residual_and_no_f():
    """Additive scores without noise: the residual is zero in exact arithmetic, so F would be a ratio of
    rounding errors (it varied from 45 to 135 between BLAS kernels); it is not reported."""
    scores = _crossed_scores(np.random.default_rng(1), templates_equal=False, noise=0.0)
    scores = scores[scores["persona"] == "none"]  # option order x template, one score per cell
    result = variance_decomposition(scores).set_index("source")
    assert result.loc["residual", "sum_sq"] == 0.0 and result.loc["residual", "df"] == 4
    assert result["statistic"].isna().all() and result["p_value"].isna().all()
    assert result["note"].str.contains("no residual variation").all()
    assert np.isclose(result["share"].sum(), 1.0)


def test_small_real_effects_are_kept():
    """The rounding bound (n p eps ||y - mean||) is far below any effect a score can show."""
    scores = _crossed_scores(np.random.default_rng(2), templates_equal=True, noise=0.0)
    scores.loc[scores["template"] == "lettered", "score"] += 1e-9
    template = variance_decomposition(scores, ["option_order", "template", "persona"]).set_index("source").loc["template"]
    expected = 36 * (1e-9) ** 2 * (1 / 3) * (2 / 3)  # n * d^2 * p * (1 - p): one level shifted by d
    assert template["sum_sq"] == pytest.approx(expected, rel=1e-6) and template["statistic"] > 0
