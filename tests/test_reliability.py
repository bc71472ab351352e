"""Reliability statistics against R's psych (tests/reference/reliability.R), and degenerate data."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.statistics.reliability import (
    _all_halves,
    _cov2cor,
    _split_coefficients,
    corrected_item_total,
    cronbach_alpha,
    guttman_lambda6,
    icc,
    reverse_key,
    split_half,
)

REFERENCE = Path(__file__).parent / "reference"
GOLDEN = json.loads((REFERENCE / "golden" / "reliability.json").read_text())


@pytest.fixture(scope="module")
def bfi() -> pd.DataFrame:
    raw = pd.read_csv(REFERENCE / "data" / "bfi25.csv")
    return reverse_key(raw, GOLDEN["meta"]["bfi_reversed"], 1, 6)


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / "sim-4factor.csv")


@pytest.fixture(scope="module")
def retest() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / "sim-retest.csv")


def _alpha_data(name: str, bfi: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    items = GOLDEN["alpha"][name]["items"]
    if name.startswith("sim"):
        return sim[items]
    if name == "bfi_A_first30":
        return bfi.iloc[:30][items]
    return bfi[items]


def _no_nan(result) -> None:
    """Every number in a result is finite or None: nothing undefined slips through as NaN."""

    def walk(value):
        if isinstance(value, float):
            assert math.isfinite(value), result
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    walk(dataclasses.asdict(result))
    json.dumps(dataclasses.asdict(result))  # serialisable as is


# ------------------------------------------------------------------------------------------ keying


def test_reverse_key_flips_only_the_named_items_and_keeps_missing_values():
    frame = pd.DataFrame({"a": [1.0, 2.0, np.nan], "b": [5.0, 4.0, 3.0]})
    keyed = reverse_key(frame, ["a"], 1, 5)
    assert keyed["a"].tolist()[:2] == [5.0, 4.0] and math.isnan(keyed["a"].iloc[2])
    assert keyed["b"].tolist() == [5.0, 4.0, 3.0]
    assert frame["a"].iloc[0] == 1.0  # the input is not modified
    assert reverse_key(np.array([[1, 2], [3, 4]]), [1], 1, 4)["item2"].tolist() == [3.0, 1.0]


def test_reverse_key_rejects_unknown_items_and_out_of_range_values():
    frame = pd.DataFrame({"a": [1, 2], "b": [5, 7]})
    with pytest.raises(ValueError, match="'c' is not among the columns"):
        reverse_key(frame, ["c"], 1, 5)
    with pytest.raises(ValueError, match="outside 1..5"):
        reverse_key(frame, ["b"], 1, 5)
    with pytest.raises(ValueError, match="below high"):
        reverse_key(frame, ["a"], 5, 1)


# ---------------------------------------------------------------------------------- alpha and co.


@pytest.mark.parametrize("name", list(GOLDEN["alpha"]))
def test_alpha_lambda6_and_item_total_match_psych(name, bfi, sim):
    ref = GOLDEN["alpha"][name]
    data = _alpha_data(name, bfi, sim)
    a = cronbach_alpha(data)
    assert a.note is None and (a.n, a.k) == (ref["n"], ref["k"])
    assert a.raw_alpha == pytest.approx(ref["raw_alpha"], abs=1e-12)
    assert a.std_alpha == pytest.approx(ref["std_alpha"], abs=1e-12)
    assert a.average_r == pytest.approx(ref["average_r"], abs=1e-12)
    assert a.median_r == pytest.approx(ref["median_r"], abs=1e-12)
    assert a.ci_low == pytest.approx(ref["feldt_lower"], abs=1e-12)
    assert a.ci_high == pytest.approx(ref["feldt_upper"], abs=1e-12)

    g6 = guttman_lambda6(data)
    assert g6.note is None and g6.lambda6 == pytest.approx(ref["g6"], abs=1e-12)

    it = corrected_item_total(data)
    assert it.note is None and list(it.items) == ref["items"]
    np.testing.assert_allclose(it.r_drop, ref["r_drop"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(it.r_cor, ref["r_cor"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(it.alpha_if_dropped, ref["alpha_if_dropped"], rtol=0, atol=1e-12)


def test_feldt_interval_level_is_configurable(bfi):
    narrow = cronbach_alpha(bfi[GOLDEN["alpha"]["A"]["items"]], confidence=0.5)
    wide = cronbach_alpha(bfi[GOLDEN["alpha"]["A"]["items"]], confidence=0.99)
    assert wide.ci_low < narrow.ci_low < narrow.raw_alpha < narrow.ci_high < wide.ci_high


# ------------------------------------------------------------------------------------------ split-half


def _split_data(name, bfi, sim):
    items = GOLDEN["split_half"][name]["items"]
    return (sim if name.startswith("sim") else bfi)[items]


SUMMARY = [("lambda4", "max"), ("beta", "min"), ("mean", "mean"), ("median", "median"), ("q025", "q025"),
           ("q975", "q975")]


@pytest.mark.parametrize("name", [n for n, v in GOLDEN["split_half"].items() if v["k"] % 2 == 0])
def test_split_half_matches_psych_for_an_even_number_of_items(name, bfi, sim):
    ref = GOLDEN["split_half"][name]
    result = split_half(_split_data(name, bfi, sim), max_splits=100_000)
    assert result.method == "all" and result.note is None
    assert result.n_splits == result.n_possible_splits == ref["psych"]["n_splits"]
    for ours, theirs in SUMMARY:
        assert getattr(result, ours) == pytest.approx(ref["psych"][theirs], abs=1e-12), ours
    # the mean over all splits of an even number of items is standardized alpha
    assert result.mean == pytest.approx(ref["psych"]["alpha"], abs=1e-12)


@pytest.mark.parametrize("name", [n for n, v in GOLDEN["split_half"].items() if v["k"] % 2 == 1])
def test_split_half_with_an_odd_number_of_items_uses_every_split(name, bfi, sim):
    ref = GOLDEN["split_half"][name]
    data = _split_data(name, bfi, sim)
    result = split_half(data)
    assert result.method == "all" and result.n_splits == ref["all"]["n_splits"]
    for ours, theirs in SUMMARY:
        assert getattr(result, ours) == pytest.approx(ref["all"][theirs], abs=1e-12), ours
    # psych visits only the first round(choose(k, m)) / 2 splits in lexicographic order (and divides
    # their sum by that count); the same coefficient on the same subset reproduces its numbers exactly.
    k = ref["k"]
    count = round(math.comb(k, k // 2)) / 2
    visited = _all_halves(k)[: math.ceil(count)]
    coef = _split_coefficients(_cov2cor(np.cov(data.to_numpy(float), rowvar=False)), visited)
    assert coef.size == ref["psych"]["n_splits"]
    assert coef.max() == pytest.approx(ref["psych"]["max"], abs=1e-12)
    assert coef.min() == pytest.approx(ref["psych"]["min"], abs=1e-12)
    assert coef.sum() / count == pytest.approx(ref["psych"]["mean"], abs=1e-12)
    assert np.median(coef) == pytest.approx(ref["psych"]["median"], abs=1e-12)


def test_split_half_samples_splits_beyond_max_splits_reproducibly(sim):
    ref = GOLDEN["split_half"]["sim_20"]["all"]  # all 92,378 splits, enumerated by psych
    first = split_half(sim)
    assert first.method == "sampled" and first.seed == 0 and first.n_splits == 10_000
    assert first.n_possible_splits == ref["n_splits"]
    assert first == split_half(sim)
    assert split_half(sim, seed=1).mean != first.mean
    assert first.lambda4 <= ref["max"] + 1e-12 and first.beta >= ref["min"] - 1e-12
    assert first.mean == pytest.approx(ref["mean"], abs=2e-3)
    assert first.median == pytest.approx(ref["median"], abs=3e-3)
    best_a, best_b = first.best_split
    assert len(best_a) == 10 and sorted(best_a + best_b) == sorted(sim.columns)


def test_split_half_of_two_items_is_spearman_brown():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 1)) + rng.normal(size=(200, 2))
    r = np.corrcoef(x, rowvar=False)[0, 1]
    result = split_half(x)
    assert result.n_splits == 1 and result.lambda4 == pytest.approx(2 * r / (1 + r), abs=1e-12)


# ------------------------------------------------------------------------------------------------- ICC


@pytest.mark.parametrize("name", list(GOLDEN["icc"]))
def test_icc_matches_psych(name, retest):
    ref = GOLDEN["icc"][name]
    data = retest if name == "retest" else retest.iloc[:10, :3]
    result = icc(data)
    assert result.note is None and (result.n, result.k) == (ref["n"], ref["k"])
    assert [f.type for f in result.forms] == ref["anova"]["type"]
    exact, lmer = ref["anova"], ref["lmer"]
    for i, form in enumerate(result.forms):
        assert (form.df1, form.df2) == (exact["df1"][i], exact["df2"][i])
        # psych::ICC(x, lmer = FALSE): the same ANOVA, so rounding error only
        assert form.icc == pytest.approx(exact["icc"][i], abs=1e-12)
        assert form.f == pytest.approx(exact["f"][i], rel=1e-12)
        assert form.p == pytest.approx(exact["p"][i], rel=1e-9)
        assert form.ci_low == pytest.approx(exact["lower"][i], abs=1e-12)
        assert form.ci_high == pytest.approx(exact["upper"][i], abs=1e-12)
        # psych's default lmer = TRUE: variance components from lme4, equal up to its optimiser
        assert form.icc == pytest.approx(lmer["icc"][i], abs=1e-6)
        assert form.f == pytest.approx(lmer["f"][i], rel=1e-6)
        assert form.ci_low == pytest.approx(lmer["lower"][i], abs=1e-6)
        assert form.ci_high == pytest.approx(lmer["upper"][i], abs=1e-6)
    assert result.test_retest is result["ICC2"]
    assert "test-retest" in result["ICC2"].description


# ------------------------------------------------------------------------------------- degenerate data


ALL_SCALE_STATS = [cronbach_alpha, guttman_lambda6, corrected_item_total, split_half]


@pytest.mark.parametrize("function", ALL_SCALE_STATS)
def test_a_scale_with_one_item_is_undefined_not_nan(function):
    result = function(pd.DataFrame({"q1": [1, 2, 3, 4, 5]}))
    assert "scale has one item" in result.note
    _no_nan(result)
    if function is cronbach_alpha:
        assert result.note == "alpha undefined: scale has one item"
        assert result.raw_alpha is result.std_alpha is result.ci_low is None


def test_constant_items_are_dropped_and_named(bfi):
    data = bfi[GOLDEN["alpha"]["A"]["items"]].copy()
    data["const"] = 3
    a = cronbach_alpha(data)
    assert a.dropped_items == ("const",) and a.k == 5 and "constant item(s) dropped" in a.note
    assert a.raw_alpha == pytest.approx(GOLDEN["alpha"]["A"]["raw_alpha"], abs=1e-12)  # as psych::alpha
    it = corrected_item_total(data)
    assert "const" not in it.items and it.r_drop == pytest.approx(GOLDEN["alpha"]["A"]["r_drop"], abs=1e-12)
    assert split_half(data).k == 5 and guttman_lambda6(data).lambda6 == pytest.approx(GOLDEN["alpha"]["A"]["g6"])
    for function in ALL_SCALE_STATS:
        _no_nan(function(data))


@pytest.mark.parametrize("function", ALL_SCALE_STATS)
def test_every_item_constant(function):
    result = function(pd.DataFrame({"a": [3, 3, 3], "b": [1, 1, 1], "c": [2, 2, 2]}))
    assert "every item is constant" in result.note
    _no_nan(result)


def test_only_one_item_varies():
    result = cronbach_alpha(pd.DataFrame({"a": [3, 3, 3], "b": [1, 2, 3]}))
    assert result.raw_alpha is None and "fewer than 2 items vary (1 of 2)" in result.note


def test_total_score_with_zero_variance():
    x = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [5, 4, 3, 2, 1]})  # b = 6 - a: the total is constant
    assert "zero variance" in cronbach_alpha(x).note and cronbach_alpha(x).raw_alpha is None
    assert "zero variance" in split_half(x).note and split_half(x).lambda4 is None
    assert corrected_item_total(x).r_drop == pytest.approx((-1.0, -1.0), abs=1e-12)
    for function in ALL_SCALE_STATS:
        _no_nan(function(x))


def test_negative_alpha_is_reported():
    rng = np.random.default_rng(0)
    z = rng.normal(size=100)
    x = np.column_stack([z + rng.normal(scale=0.5, size=100), -z + rng.normal(scale=0.5, size=100),
                         rng.normal(size=100)])
    result = cronbach_alpha(x)
    assert result.raw_alpha < 0 and "reverse keying" in result.note


def test_fewer_respondents_than_items(bfi):
    data = bfi[GOLDEN["alpha"]["bfi_all25"]["items"]].iloc[:10]
    a = cronbach_alpha(data)
    assert a.raw_alpha is not None and "fewer respondents (10) than items" in a.note
    g6 = guttman_lambda6(data)
    assert g6.lambda6 is None and "singular" in g6.note and "fewer respondents (10)" in g6.note
    it = corrected_item_total(data)
    assert it.r_cor is None and all(v is not None for v in it.r_drop) and "r.cor undefined" in it.note
    for function in ALL_SCALE_STATS:
        _no_nan(function(data))


@pytest.mark.parametrize("function", ALL_SCALE_STATS)
def test_fewer_than_two_respondents(function):
    result = function(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    assert "fewer than 2 complete respondents (n = 1)" in result.note
    _no_nan(result)


def test_missing_values_are_deleted_listwise_and_counted(bfi):
    items = GOLDEN["alpha"]["A"]["items"]
    data = bfi[items].astype(float).copy()
    data.iloc[[0, 5, 9], [1, 2, 4]] = np.nan
    complete = data.dropna()
    for function in ALL_SCALE_STATS:
        with_missing, reference = function(data), function(complete)
        assert with_missing.n_missing == 3 and with_missing.n == len(bfi) - 3
        assert "listwise deletion: 3 respondent(s)" in with_missing.note
        assert dataclasses.replace(with_missing, n_missing=0, note=None) == reference
    # no complete respondent at all
    empty = cronbach_alpha(pd.DataFrame({"a": [1, np.nan], "b": [np.nan, 2]}))
    assert empty.n == 0 and "fewer than 2 complete respondents" in empty.note


def test_invalid_input_raises_a_one_line_error():
    with pytest.raises(ValueError, match="infinite"):
        cronbach_alpha(np.array([[1.0, np.inf], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="2-D"):
        cronbach_alpha(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="numeric"):
        cronbach_alpha(pd.DataFrame({"a": ["x", "y"], "b": [1, 2]}))


def test_icc_degenerate_cases(retest):
    one_target = icc(retest.iloc[:1])
    assert "fewer than 2 complete targets" in one_target.note and one_target["ICC2"].icc is None
    one_sample = icc(retest.iloc[:, :1])
    assert "fewer than 2 samples" in one_sample.note
    identical = icc(np.full((5, 3), 4.0))
    assert identical.note == "ICC undefined: every rating is identical"
    # samples that agree exactly up to a shift per sample: ICC3 = 1, F tests undefined
    base = retest["sample1"].to_numpy()
    shifted = icc(np.column_stack([base, base + 0.5, base - 0.25]))
    assert shifted["ICC3"].icc == pytest.approx(1.0) and shifted["ICC3"].f is None and shifted["ICC3"].p is None
    assert shifted["ICC2"].icc < 1 and "no residual variance" in shifted.note
    assert shifted["ICC1"].f is not None
    # every target has the same mean: no variance between targets
    flat = icc(np.array([[1.0, 2.0], [2.0, 1.0], [1.5, 1.5]]))
    assert flat["ICC1"].icc == pytest.approx(-1.0) and flat["ICC3k"].icc is None
    for result in (one_target, one_sample, identical, shifted, flat):
        _no_nan(result)


def test_icc_missing_samples_drop_the_target(retest):
    data = retest.copy()
    data.iloc[3, 2] = np.nan
    result = icc(data)
    assert result.n == 39 and result.n_missing == 1 and "1 target(s)" in result.note
    assert result["ICC2"].icc == pytest.approx(icc(retest.drop(index=3))["ICC2"].icc, abs=1e-15)


def test_omega_is_undefined_not_huge_when_item_correlations_cancel():
    """Items whose correlations sum to 0 give a sum score without variance: every ratio over it is
    undefined; dividing by a rounding residue once reported omega total near -5.6e12."""
    import math

    import numpy as np

    from psychometrics.statistics.omega import omega

    r = np.array([[1, -0.5, -0.5], [-0.5, 1, -0.5], [-0.5, -0.5, 1.0]])
    result = omega(corr=r, n_obs=100, n_factors=1)
    assert math.isnan(result.omega_total) and math.isnan(result.alpha)
    assert "undefined" in result.note
