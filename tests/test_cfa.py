"""Confirmatory factor analysis against R's lavaan (tests/reference/cfa.R), and models it cannot fit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from psychometrics.statistics.cfa import cfa
from psychometrics.statistics.reliability import reverse_key

REFERENCE = Path(__file__).parent / "reference"
GOLDEN = json.loads((REFERENCE / "golden" / "cfa.json").read_text())
MODELS = GOLDEN["models"]
SIM4 = MODELS["sim4"]["model"]


@pytest.fixture(scope="module")
def bfi() -> pd.DataFrame:
    raw = pd.read_csv(REFERENCE / "data" / "bfi25.csv")
    return reverse_key(raw, GOLDEN["meta"]["bfi_reversed"], 1, 6)


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / "sim-4factor.csv")


def _data(name, bfi, sim):
    return {"bfi5": bfi, "sim4": sim, "bfi2_first300": bfi.iloc[:300], "sim4_first21": sim.iloc[:21]}[name]


@pytest.fixture(scope="module")
def fits(bfi, sim):
    return {name: cfa(_data(name, bfi, sim), ref["model"]) for name, ref in MODELS.items()}


def _list(value):
    return value if isinstance(value, list) else [value]  # jsonlite unboxes length-1 vectors


# SRMR is not what ML minimises, so it shows the optimisers' different stopping points most: 4e-8 on the
# Big Five, 5e-7 on the ill-conditioned Heywood case (where our chi-square is 7e-9 lower than lavaan's).
FIT_ABS = {"pvalue": 1e-8, "cfi": 1e-7, "tli": 1e-7, "rmsea": 1e-8, "rmsea.ci.lower": 1e-7,
           "rmsea.ci.upper": 1e-7, "srmr": 1e-6}
FIT_REL = {"chisq": 1e-8, "logl": 1e-10, "aic": 1e-10, "bic": 1e-10, "baseline.chisq": 1e-12}


@pytest.mark.parametrize("name", list(MODELS))
def test_fit_measures_match_lavaan(name, fits):
    ref, result = MODELS[name]["fit"], fits[name]
    assert result.converged and result.n == ref["ntotal"] and result.fit is not None
    fit = result.fit
    assert (fit.df, fit.npar, fit.baseline_df) == (ref["df"], ref["npar"], ref["baseline.df"])
    for key, tol in FIT_ABS.items():
        assert getattr(fit, key.replace(".", "_")) == pytest.approx(ref[key], abs=tol), key
    for key, tol in FIT_REL.items():
        assert getattr(fit, key.replace(".", "_")) == pytest.approx(ref[key], rel=tol), key


@pytest.mark.parametrize("name", list(MODELS))
def test_estimates_match_lavaan(name, fits):
    ref, result = MODELS[name], fits[name]
    loadings = result.loadings
    assert list(loadings["factor"]) == _list(ref["loadings"]["factor"])
    assert list(loadings["item"]) == _list(ref["loadings"]["item"])
    # lavaan stops at its optimiser's tolerance (rel.tol 1e-10 on the objective); estimates agree to ~1e-5
    np.testing.assert_allclose(loadings["est"], ref["loadings"]["est"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(loadings["std_all"], ref["loadings"]["std_all"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(loadings["se"], ref["loadings"]["se"], atol=1e-5, rtol=0)

    phi = result.factor_correlations
    assert list(phi["factor1"]) == _list(ref["factor_correlations"]["lhs"])
    assert list(phi["factor2"]) == _list(ref["factor_correlations"]["rhs"])
    np.testing.assert_allclose(phi["est"], _list(ref["factor_correlations"]["est"]), atol=1e-4, rtol=0)
    np.testing.assert_allclose(phi["se"], _list(ref["factor_correlations"]["se"]), atol=1e-5, rtol=0)

    resid = result.residual_variances
    assert list(resid["item"]) == _list(ref["residual_variances"]["item"])
    np.testing.assert_allclose(resid["est"], ref["residual_variances"]["est"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(resid["std_all"], ref["residual_variances"]["std_all"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(resid["se"], ref["residual_variances"]["se"], atol=1e-5, rtol=0)


def test_big_five_fit_converges_quickly_and_tables_reshape(fits, bfi):
    """Few iterations is the machine-independent form of "fast" (the seconds are benchmarks/analysis_speed.py's:
    a wall-clock bound here failed at load average 12); a second fit is the same fit."""
    result = fits["bfi5"]
    assert result.note is None and result.iterations < 20
    again = cfa(bfi, MODELS["bfi5"]["model"])
    assert again.iterations == result.iterations and again.converged
    wide = result.loading_matrix(standardized=True)
    assert wide.shape == (25, 5) and wide.loc["A2", "A"] > 0.5 and wide.loc["A2", "C"] == 0
    phi = result.phi()
    assert np.allclose(np.diag(phi), 1) and np.allclose(phi, phi.T)
    assert phi.loc["N", "C"] == pytest.approx(
        result.factor_correlations.query("factor1 == 'C' and factor2 == 'N'")["est"].iloc[0])


def test_heywood_case_is_estimated_and_reported(fits):
    result = fits["sim4_first21"]
    assert "negative" in MODELS["sim4_first21"]["warnings"]  # lavaan warned too
    assert result.converged and result.note.startswith("Heywood case: negative residual variance for x16")
    assert result.residual_variances.set_index("item").loc["x16", "est"] < 0


def test_unkeyed_items_load_negatively_and_fit_identically(bfi, fits):
    raw = pd.read_csv(REFERENCE / "data" / "bfi25.csv")
    result = cfa(raw, MODELS["bfi5"]["model"])
    assert result.fit.chisq == pytest.approx(fits["bfi5"].fit.chisq, rel=1e-10)
    est = result.loadings.set_index("item")["est"]
    assert est["A1"] < 0 and est["A2"] > 0  # each factor's loadings sum positive


def test_missing_values_are_deleted_listwise(sim):
    data = sim.astype(float).copy()
    data.iloc[[1, 2, 3], [0, 7]] = np.nan
    result = cfa(data, SIM4)
    assert result.n == 597 and result.n_missing == 3 and "listwise deletion: 3 respondent(s)" in result.note
    assert result.fit.chisq == pytest.approx(cfa(data.dropna(), SIM4).fit.chisq, rel=1e-12)


# --------------------------------------------------------------------------- what cannot be estimated


def _not_estimated(result, fragment):
    assert fragment in result.note
    assert result.fit is None and result.loadings is None and not result.converged


def test_a_factor_with_one_indicator(sim):
    _not_estimated(cfa(sim, {"F1": ["x1"], "F2": ["x6", "x7", "x8"]}),
                   "factor 'F1' has 1 indicator(s); each factor needs at least 2")


def test_a_model_with_negative_df(sim):
    _not_estimated(cfa(sim, {"F": ["x1", "x2"]}), "not identified (df = -1")


def test_a_just_identified_model_has_no_fit_test(sim):
    result = cfa(sim, {"F": ["x1", "x2", "x3"]})
    assert result.converged and result.fit.df == 0 and result.fit.chisq == pytest.approx(0, abs=1e-8)
    assert result.fit.pvalue is result.fit.cfi is result.fit.rmsea is None
    assert "df = 0" in result.note


def test_two_indicator_factors_are_identified_through_their_correlation(sim):
    result = cfa(sim, {"F1": ["x1", "x2"], "F2": ["x6", "x7"]})
    assert result.converged and result.fit.df == 1 and result.note is None


def test_constant_item(sim):
    data = sim.copy()
    data["x3"] = 3
    _not_estimated(cfa(data, SIM4), "not positive definite (constant item(s): x3)")


def test_fewer_respondents_than_indicators(sim):
    _not_estimated(cfa(sim.iloc[:15], SIM4), "fewer respondents (15) than indicators + 1 (21)")
    _not_estimated(cfa(sim.iloc[:1], SIM4), "fewer than 2 complete respondents")


def test_linearly_dependent_indicators(sim):
    data = sim.copy()
    data["x5"] = data["x1"] + data["x2"]
    _not_estimated(cfa(data, SIM4), "linearly dependent indicators")


def test_non_convergence_is_reported(bfi):
    result = cfa(bfi, MODELS["bfi5"]["model"], max_iterations=1)
    assert not result.converged and result.fit is None and "did not converge" in result.note
    assert result.loadings is not None and np.isfinite(result.loadings["est"]).all()


def test_model_errors_raise_one_line_errors(sim):
    with pytest.raises(ValueError, match="'nope' is not a column"):
        cfa(sim, {"F": ["x1", "x2", "nope"]})
    with pytest.raises(ValueError, match="simple structure"):
        cfa(sim, {"F": ["x1", "x2", "x3"], "G": ["x3", "x4", "x5"]})
    with pytest.raises(ValueError, match="not supported"):
        cfa(sim, SIM4, estimator="ULS")
    with pytest.raises(ValueError, match="map each factor"):
        cfa(sim, {})


def test_no_nan_in_any_result(fits, sim):
    results = list(fits.values()) + [cfa(sim, {"F": ["x1", "x2", "x3"]}), cfa(sim, {"F": ["x1"]})]
    for result in results:
        if result.fit is not None:
            for value in result.fit.as_dict().values():
                assert value is None or math.isfinite(value)
        for table in (result.loadings, result.factor_correlations, result.residual_variances):
            if table is not None:
                assert np.isfinite(table.select_dtypes("number").to_numpy(float)).all()


def test_large_models_use_lbfgs_and_reach_the_same_optimum(monkeypatch):
    """Above LARGE_MODEL_PARAMETERS the exact-Hessian optimiser is replaced by L-BFGS: same fit."""
    import numpy as np
    import pandas as pd

    from psychometrics.statistics import cfa as cfa_module

    rng = np.random.default_rng(3)
    traits = rng.standard_normal((500, 3))
    columns = {f"x{j}": 0.8 * traits[:, j % 3] + rng.standard_normal(500) for j in range(30)}
    data = pd.DataFrame(columns)
    model = {f"F{f}": [f"x{j}" for j in range(30) if j % 3 == f] for f in range(3)}
    monkeypatch.setattr(cfa_module, "LARGE_MODEL_PARAMETERS", 10)
    large = cfa_module.cfa(data, model)
    monkeypatch.setattr(cfa_module, "LARGE_MODEL_PARAMETERS", 10_000)
    exact = cfa_module.cfa(data, model)
    assert large.converged and exact.converged and "L-BFGS" in large.note
    for name in ("chisq", "cfi", "tli", "rmsea", "srmr"):
        assert getattr(large.fit, name) == pytest.approx(getattr(exact.fit, name), rel=1e-7, abs=1e-9), name
    assert large.loadings["se"].isna().all() or large.loadings["se"].isnull().all()
