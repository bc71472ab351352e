"""Incremental validity: does the self-report predict behaviour *beyond* what the persona asked for?

A persona prompt that sets a trait's target level moves the model's questionnaire answers and its
behaviour at once. Across personas the two then correlate although nothing the model *says about itself*
predicts what it does: the target level is a common cause. :mod:`psychometrics.validity.statistics`
gives the plain correlation; this module asks the question a reviewer asks next.

Respondents, scopes and scores are those of :func:`~psychometrics.validity.statistics.validity_pairs`
(model x persona; each model, and pooled over models). ``T`` holds the persona's target levels on *every*
trait some persona of the data targets (0 where the persona sets none; a trait-shaping persona sets one
trait, a multi-trait profile all of them): the pair's own trait as indicators of its levels (a category
per level, so that *any* function of the level is removed; pooled, a category per model x level, so that
each model's own response to the level is removed), the other traits' levels linearly; pooled, model
indicators join it (model as fixed effects). Columns that do not vary in a scope drop out (the rank
of the design decides the degrees of freedom). Why categories for the own trait: a target's effect is
not linear in the level (a response scale's ceiling, a choice share's bounds); with the level entered
linearly, simulated respondents whose self-report and behaviour followed only the target level (120
multi-trait personas, levels -3..3) kept partial r up to .75 from the curvature alone, and 16 of 19 pairs
"predicted beyond the persona". The other traits enter linearly because a one-trait-per-persona set
(33 personas) has no degrees of freedom for all of them as categories.

Per declared pair (:func:`incremental_pairs`), with self-report :math:`s` and behaviour :math:`b`:

``partial_r``
    :math:`r_{sb\\cdot T} = \\operatorname{cor}(e_s, e_b)` with :math:`e_s, e_b` the residuals of ``s`` and
    ``b`` on :math:`[1, T]` (the residual method; ``ppcor::pcor``'s value for these covariates). Its test
    has :math:`df = n - \\operatorname{rank}[1, T, s]` degrees of freedom:
    :math:`t = r\\sqrt{df / (1 - r^2)}`, the t test of ``s`` in ``lm(b ~ T + s)``.
``delta_r2``, ``f``, ``p_incremental``
    :math:`\\Delta R^2 = R^2_{b \\sim T + s} - R^2_{b \\sim T}` and its F test
    :math:`F = \\Delta R^2 / ((1 - R^2_{b \\sim T + s}) / df)` on (1, df) degrees of freedom
    (``anova(lm0, lm1)``); :math:`F = t^2`, so its p is the partial r's.
``p_bh_incremental``, ``incremental_confirmed``
    Benjamini-Hochberg over the scope's declared pairs; confirmed when the partial r has the declared
    sign and the adjusted p is below .05.
``p_equivalence``, ``equivalent``
    Two one-sided tests (Schuirmann, 1987; Lakens, 2017) of :math:`|\\rho| <` ``equivalence_bound``
    (the smallest effect of interest, .2 by default) on Fisher's z:
    :math:`p = \\max(1 - \\Phi((z + z_\\delta) / se), \\Phi((z - z_\\delta) / se))` with
    :math:`z = \\operatorname{atanh} r`, :math:`z_\\delta = \\operatorname{atanh} \\delta` and
    :math:`se = 1 / \\sqrt{df - 1}` (:math:`1/\\sqrt{n - q - 3}` for q covariates, as the Fisher interval of
    :func:`~psychometrics.statistics.correlation.fisher_interval`); equivalent when :math:`p < .05`
    (the 90% interval lies inside :math:`(-\\delta, \\delta)`). On the partial r where targets exist.

Without persona targets (a neutral persona set, runs without personas) nothing can be partialled out: the
row says so (``basis``) and every test above is on the plain r (within model when pooled).

Limitations: a curved effect of *another* trait's level is not removed, nor (pooled) a model difference in
how another trait's level works. Measured on the committed five-model study before the model x level
categories: pooled, a pair "predicted beyond the persona" that no model showed on its own.

Gating (:func:`self_report_check`): a pair says something about the model's self-knowledge only when the
persona moved the self-report. Per scope and trait, the self-report row of
:func:`~psychometrics.validity.statistics.manipulation_check` must have r > 0 and p < .05; otherwise every
pair of the trait is "not interpretable: the persona did not move the self-report (r = .., p = ..)".

Persona-effect ratio (:func:`persona_effect_ratio`), per scope, trait and task of the trait: how far the
persona's target moves behaviour compared with the self-report, in each measure's own SD units. With
:math:`\\beta_m` the OLS coefficient of the trait's target level in ``lm(m ~ T)`` (all traits' targets,
plus model indicators when pooled) and :math:`sd_m` the measure's SD over the scope's respondents
(pooled: within model, :math:`\\sqrt{\\sum (m - \\bar m_{model})^2 / (n - k)}`),

.. math:: d_m = \\beta_m / sd_m, \\qquad \\text{ratio} = d_{behaviour} / d_{self\\text{-}report}

over the respondents with both scores, behaviour signed by the task's direction. 1: the persona moves
behaviour as far as what the model says about itself; 0: it moves the words only. The 95% interval is the
percentile interval of the ratio over bootstrap resamples of the respondents (stratified by model when
pooled); none when :math:`d_{self\\text{-}report} \\le 0` in more than 1% of the resamples (the ratio is then
unbounded).

Conclusions (:func:`conclude`): one label per pair from :data:`CONCLUSIONS`, the first rule of
:data:`CONCLUSION_RULES` that holds, with the sentence and numbers it rests on.

Checked against R (``tests/reference/incremental.R``): residual-method partial r, ``anova(lm0, lm1)``,
``p.adjust``, the TOST p from ``pnorm``, the ratio from ``lm`` coefficients.

References
----------
Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power approach for
assessing the equivalence of average bioavailability. J. Pharmacokinet. Biopharm., 15, 657-680.
Lakens, D. (2017). Equivalence tests: A practical primer for t tests, correlations, and meta-analyses.
Social Psychological and Personality Science, 8, 355-362.
Sechrest, L. (1963). Incremental validity: A recommendation. Educational and Psychological Measurement, 23,
153-158.
Hunsley, J., & Meyer, G. J. (2003). The incremental validity of psychological testing and assessment.
Psychological Assessment, 15, 446-455.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from psychometrics.errors import PsytestError
from psychometrics.statistics.correlation import MAX_DEGENERATE_SHARE, bh_adjust, bootstrap_indices, correlation

#: Default smallest effect of interest for the equivalence test (|rho| below it counts as no association).
EQUIVALENCE_BOUND = 0.2
ALPHA = 0.05

PREDICTS_BEYOND = "predicts beyond persona"
PREDICTS_UNCONTROLLED = "predicts (persona not controlled)"
EXPLAINED = "explained by persona"
EQUIVALENT = "does not predict (equivalent)"
INCONCLUSIVE = "inconclusive"
REVERSED = "reversed"
NOT_INTERPRETABLE = "not interpretable"
NOT_TESTABLE = "not testable"
CONCLUSIONS = (PREDICTS_BEYOND, PREDICTS_UNCONTROLLED, EXPLAINED, EQUIVALENT, INCONCLUSIVE, REVERSED,
               NOT_INTERPRETABLE, NOT_TESTABLE)


def conclusion_rules(bound: float = EQUIVALENCE_BOUND) -> list[tuple[str, str]]:
    """The rules of :func:`conclude`, in the order they are applied (the first that holds gives the label)."""
    return [
        (NOT_TESTABLE, "r could not be computed (too few respondents with both scores, a constant score, or "
                       "nothing left beyond the target levels while the plain r is not confirmed)"),
        (NOT_INTERPRETABLE, "the persona's target level did not move the self-report of the trait in this scope "
                            "(manipulation check: r <= 0 or p >= .05): the pair says nothing about self-knowledge"),
        (REVERSED, "the tested r has the sign opposite to the declared one with BH-adjusted p < .05"),
        (PREDICTS_BEYOND, "the partial r given every trait's target level (and model, pooled) has the declared "
                          "sign with BH-adjusted p < .05 (delta R^2 of the self-report beyond the targets, F test)"),
        (PREDICTS_UNCONTROLLED, "no persona targets to partial out: the plain r has the declared sign with "
                                "BH-adjusted p < .05 (a common cause is not ruled out)"),
        (EXPLAINED, f"the plain r is confirmed, but beyond the targets the partial r is equivalent to 0 "
                    f"(TOST, |rho| < {bound:g}, p < .05), or the self-report is a function of the target levels"),
        (EQUIVALENT, f"the tested r is equivalent to 0 (TOST against |rho| < {bound:g}, p < .05)"),
        (INCONCLUSIVE, "none of the above: neither a confirmed association nor an equivalence to 0"),
    ]


def check_bound(bound: float) -> float:
    if not isinstance(bound, (int, float)) or not math.isfinite(bound) or not 0 < bound < 1:
        raise PsytestError(f"--equivalence-bound {bound}: give the smallest correlation of interest, between 0 and 1 "
                           "(exclusive), e.g. 0.2")
    return float(bound)


# ------------------------------------------------------------------------------------------ tests


def tost_r(r: float | None, df: int | None, bound: float = EQUIVALENCE_BOUND) -> float | None:
    """TOST p of :math:`|\\rho| < \\delta` on Fisher's z with :math:`se = 1/\\sqrt{df - 1}` (module docstring)."""
    from scipy.stats import norm

    if r is None or df is None or df < 2:
        return None
    if abs(r) >= 1:
        return 1.0
    se = 1 / math.sqrt(df - 1)
    z, zb = math.atanh(r), math.atanh(bound)
    return float(max(norm.sf((z + zb) / se), norm.cdf((z - zb) / se)))


def _design(covariates: np.ndarray, groups) -> np.ndarray:
    """``[1, covariates, model indicators]`` (indicators for all but the first model when ``groups``)."""
    columns = [np.ones(len(covariates)), *covariates.T]
    if groups is not None:
        labels = pd.unique(np.asarray(groups))
        columns += [(np.asarray(groups) == g).astype(float) for g in labels[1:]]
    return np.column_stack(columns)


def _residuals(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return y - x @ coef


def _rank(x: np.ndarray) -> int:
    return int(np.linalg.matrix_rank(x)) if x.size else 0


def partial_test(s, b, covariates: np.ndarray, groups=None) -> dict:
    """Partial r of ``s`` and ``b`` given ``[1, covariates (+ model)]`` with delta R^2 and its F test.

    Returns ``n``, ``q`` (rank of the covariates beside the intercept), ``partial_r``, ``df``, ``p``,
    ``delta_r2``, ``r2_base``, ``f``, ``note`` (None values when undefined) and ``self_determined`` (the
    self-report is a function of the covariates: no variance of its own).
    """
    from scipy import stats

    s, b = np.asarray(s, float), np.asarray(b, float)
    covariates = np.asarray(covariates, float).reshape(len(s), -1)
    keep = ~(np.isnan(s) | np.isnan(b)) & ~np.isnan(covariates).any(axis=1)
    s, b, covariates = s[keep], b[keep], covariates[keep]
    g = None if groups is None else np.asarray(groups)[keep]
    n = int(keep.sum())
    out: dict = {"n": n, "q": None, "partial_r": None, "df": None, "p": None, "delta_r2": None, "r2_base": None,
           "f": None, "note": None, "self_determined": False}
    if n < 3:
        out["note"] = f"too few respondents with both scores ({n})"
        return out
    x0 = _design(covariates, g)
    rank0 = _rank(x0)
    out["q"] = rank0 - 1
    df = n - _rank(np.column_stack([x0, s]))
    es, eb = _residuals(s, x0), _residuals(b, x0)
    sss, sst = float(es @ es), float(((b - b.mean()) ** 2).sum())
    if df < 1 or n - rank0 - 1 < 1:
        out["note"] = f"too few respondents ({n}) for {rank0 - 1} covariate(s)"
        return out
    if sss <= 1e-12 * max(1.0, float(((s - s.mean()) ** 2).sum())) or df == n - rank0:
        out["note"] = "the self-report is a function of the persona's target levels (nothing left to partial)"
        out["self_determined"] = True
        return out
    sse0 = float(eb @ eb)
    if sst <= 1e-24:
        out["note"] = "the behaviour score is the same for every respondent (nothing to predict)"
        return out
    if sse0 <= 1e-12 * max(1.0, sst):
        out["note"] = "the behaviour is a function of the persona's target levels (nothing left to predict)"
        return out
    r = max(-1.0, min(1.0, float(es @ eb) / math.sqrt(sss * sse0)))
    sse1 = sse0 * (1 - r * r)
    f = (sse0 - sse1) / (sse1 / df) if sse1 > 0 else math.inf
    out.update(partial_r=r, df=df, delta_r2=(sse0 - sse1) / sst, r2_base=1 - sse0 / sst, f=f,
               p=float(stats.f.sf(f, 1, df)) if math.isfinite(f) else 0.0)
    return out


# -------------------------------------------------------------------------------------- the pairs


def self_report_check(manipulation: pd.DataFrame | None) -> dict[tuple[str, str], dict]:
    """``(scope, trait) -> {"passed", "r", "p", "sentence"}`` from the self-report rows of the manipulation
    check: passed when r > 0 and p < .05."""
    out: dict[tuple[str, str], dict] = {}
    if manipulation is None or manipulation.empty:
        return out
    rows = manipulation[manipulation["kind"] == "self-report"]
    for row in rows.itertuples(index=False):
        r, p = _value(row.r), _value(row.p)
        passed = r is not None and p is not None and r > 0 and p < ALPHA
        shown = (f"r = {r:.2f}, p {_p(p)}" if r is not None and p is not None
                 else f"r not estimable: {row.note}" if isinstance(row.note, str) else "r not estimable")
        out[(row.scope, row.trait)] = {
            "passed": passed, "r": r, "p": p,
            "sentence": f"not interpretable: the persona did not move the self-report ({shown})"}
    return out


def _value(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _p(p: float) -> str:
    """``"= .032"``, ``"< .001"`` or ``"= 1"``: to follow "p "."""
    return "< .001" if p < 0.001 else "= " + (f"{p:.3f}".lstrip("0") if p < 0.9995 else "1")


def _r(r: float) -> str:
    return f"{r:.2f}"


def target_matrix(targets: pd.DataFrame | None, index: pd.Index) -> pd.DataFrame:
    """Respondents x every trait some persona targets (a non-zero level): the persona's level, 0 where unset."""
    from psychometrics.validity.statistics import target_levels

    if targets is None or not (targets["level"] != 0).any():
        return pd.DataFrame(index=index)
    traits = sorted(set(targets.loc[targets["level"] != 0, "trait"]))
    return target_levels(targets, index, traits)


def target_covariates(levels: pd.DataFrame, trait: str, groups=None) -> np.ndarray:
    """The covariates of a pair of ``trait``: indicators of the trait's own target levels (all but the lowest,
    so any function of the level is removed; with ``groups``, of each model x level cell, so that each model's
    own response to the level is removed) and the other traits' levels as they are (linearly)."""
    others = [levels[c].to_numpy(float) for c in levels.columns if c != trait]
    own = []
    if trait in levels.columns:
        values = levels[trait].to_numpy(float)
        if groups is None:
            own = [(values == level).astype(float) for level in sorted(set(values))[1:]]
        else:
            labels = np.asarray(groups)
            cells = sorted(set(zip(labels, values)))
            own = [((labels == g) & (values == level)).astype(float) for g, level in cells[1:]]
    columns = own + others
    return np.column_stack(columns) if columns else np.zeros((len(levels), 0))


def incremental_pairs(selfs: pd.DataFrame, behaviours: pd.DataFrame, info: pd.DataFrame,
                      targets: pd.DataFrame | None, manipulation: pd.DataFrame | None = None, *,
                      bound: float = EQUIVALENCE_BOUND,
                      declared: dict[tuple[str, str], int] | None = None) -> pd.DataFrame:
    """Per scope and declared pair: r, partial r beyond the targets (and model), delta R^2, TOST, BH, the
    gate and the conclusion (module docstring). ``selfs``/``behaviours`` are the respondent scores of the
    respondents with both measures (same index); ``declared`` (``{(trait, task): sign}``) gives the pairs
    explicitly, by default each task with its own trait and direction."""
    from psychometrics.validity.statistics import POOLED, _in_scope, _scopes

    bound = check_bound(bound)
    index = selfs.index
    levels = target_matrix(targets, index)
    has_targets = levels.shape[1] > 0
    gate = self_report_check(manipulation)
    models = index.get_level_values("model")
    rows = []
    for scope in _scopes(models):
        mask = _in_scope(index, scope)
        groups = models[mask] if scope == POOLED else None
        block = []
        pairs = (list(declared.items()) if declared is not None
                 else [((trait, task), direction) for task, (trait, direction) in info.iterrows()])
        for (trait, task), direction in pairs:
            if trait not in selfs.columns or task not in behaviours.columns:
                continue
            s, b = selfs.loc[mask, trait].to_numpy(float), behaviours.loc[mask, task].to_numpy(float)
            plain = correlation(s, b, groups)
            row = {"scope": scope, "trait": trait, "task": task, "expected_sign": int(direction), "self_determined": False,
                   "n": plain["n"], "r": plain["r"], "p": plain["p"], "n_targets": levels.shape[1],
                   "partial_r": None, "df": None, "delta_r2": None, "r2_targets": None, "f": None,
                   "p_incremental": None}
            notes = [plain["note"]]
            if has_targets:
                test = partial_test(s, b, target_covariates(levels.loc[mask], trait, groups), groups)
                row.update(partial_r=test["partial_r"], df=test["df"], delta_r2=test["delta_r2"],
                           r2_targets=test["r2_base"], f=test["f"], p_incremental=test["p"])
                row["basis"] = ("partial r given target levels and model" if scope == POOLED
                                else "partial r given target levels")
                notes.append(test["note"])
                tested_r, tested_df = test["partial_r"], test["df"]
                row["self_determined"] = test["self_determined"]
            else:
                row["basis"] = ("plain r within model (no persona targets)" if scope == POOLED
                                else "plain r (no persona targets)")
                row["p_incremental"] = plain["p"]
                tested_r, tested_df = plain["r"], plain["df"]
            row["tested_r"] = tested_r
            row["p_equivalence"] = tost_r(tested_r, tested_df, bound)
            row["equivalent"] = bool(row["p_equivalence"] is not None and row["p_equivalence"] < ALPHA)
            check = gate.get((scope, trait))
            row["manipulation_r"] = check["r"] if check else None
            row["manipulation_p"] = check["p"] if check else None
            row["interpretable"] = None if check is None else check["passed"]
            if has_targets and check is None:
                notes.append(f"no persona targets {trait} here: no manipulation check; the partial r is beyond the "
                             "other traits' targets")
            row["note"] = notes
            block.append((row, check))
        plain_bh = bh_adjust([row["p"] for row, _ in block])
        tested_bh = bh_adjust([row["p_incremental"] for row, _ in block])
        for (row, check), p_plain, p_tested in zip(block, plain_bh, tested_bh):
            row["p_bh"], row["p_bh_incremental"] = p_plain, p_tested
            row["confirmed"] = _confirmed(row["r"], p_plain, row["expected_sign"])
            row["incremental_confirmed"] = (_confirmed(row["partial_r"], p_tested, row["expected_sign"])
                                            if has_targets else None)
            row["conclusion"], row["reason"] = conclude(row, check, has_targets, bound)
            row["note"] = "; ".join(dict.fromkeys(n for n in row["note"] if n)) or None
            rows.append(row)
    return pd.DataFrame(rows, columns=INCREMENTAL_COLUMNS)


INCREMENTAL_COLUMNS = ["scope", "trait", "task", "expected_sign", "conclusion", "reason", "n", "r", "p", "p_bh",
                       "confirmed", "basis", "n_targets", "partial_r", "df", "delta_r2", "r2_targets", "f",
                       "p_incremental", "p_bh_incremental", "incremental_confirmed", "tested_r", "p_equivalence",
                       "equivalent", "manipulation_r", "manipulation_p", "interpretable", "note"]


def _confirmed(r, p_bh, sign) -> bool:
    return bool(r is not None and p_bh is not None and not math.isnan(p_bh) and np.sign(r) == sign and p_bh < ALPHA)


def conclude(row: dict, check: dict | None, has_targets: bool, bound: float = EQUIVALENCE_BOUND) -> tuple[str, str]:
    """The first rule of :func:`conclusion_rules` that holds for a row of :func:`incremental_pairs`, with its
    sentence."""
    tested, p_bh = row["tested_r"], row["p_bh_incremental"]
    what = "beyond the persona's targets" if has_targets else "(no persona targets)"
    if row["r"] is None or (not row.get("self_determined") and (tested is None or p_bh is None)):
        said = [n for n in row["note"] if n] if isinstance(row["note"], list) else [row["note"]] if row["note"] else []
        return NOT_TESTABLE, "not testable: r could not be computed" + (f" ({said[-1]})" if said else "")
    if check is not None and not check["passed"]:
        return NOT_INTERPRETABLE, check["sentence"]
    if row.get("self_determined"):
        if row["confirmed"]:
            return EXPLAINED, (f"explained by persona: plain r = {_r(row['r'])} (BH p {_p(row['p_bh'])}), but the "
                               "self-report is a function of the persona's target levels (no variance of its own)")
        return NOT_TESTABLE, ("not testable: the self-report is a function of the persona's target levels and the "
                              f"plain r is not confirmed (r = {_r(row['r'])})")
    numbers = f"r {what} = {_r(tested)}, BH p {_p(p_bh)}"
    if np.sign(tested) == -row["expected_sign"] and p_bh < ALPHA:
        return REVERSED, f"reversed: opposite to the declared direction ({numbers})"
    if has_targets and row["incremental_confirmed"]:
        return PREDICTS_BEYOND, f"predicts beyond persona ({numbers}; delta R^2 = {row['delta_r2']:.3f})"
    if not has_targets and row["confirmed"]:
        return PREDICTS_UNCONTROLLED, f"predicts, but the persona is not controlled ({numbers})"
    tost = (f"TOST p {_p(row['p_equivalence'])} for |rho| < {bound:g}" if row["p_equivalence"] is not None
            else "too few respondents for the equivalence test")
    if has_targets and row["confirmed"] and row["equivalent"]:
        return EXPLAINED, (f"explained by persona: plain r = {_r(row['r'])} (BH p {_p(row['p_bh'])}), {numbers}, "
                           f"{tost}")
    if row["equivalent"]:
        return EQUIVALENT, f"does not predict: {numbers}, {tost}"
    plain = f"plain r = {_r(row['r'])}, BH p {_p(row['p_bh'])}; " if has_targets and row["r"] is not None else ""
    return INCONCLUSIVE, f"inconclusive: {plain}{numbers}, not equivalent to 0 ({tost})"


def _count_column(label: str) -> str:
    return "n_" + "_".join(label.replace("(", "").replace(")", "").split())


def incremental_dissociation(incremental: pd.DataFrame) -> pd.DataFrame:
    """Per scope, overall and per trait: pairs confirmed beyond the persona, their share and the dissociation
    index on incremental validity (1 - share), and how many pairs got each conclusion."""
    rows = []
    for scope in dict.fromkeys(incremental["scope"]) if len(incremental) else []:
        part = incremental[incremental["scope"] == scope]
        for trait in ["all", *sorted(set(part["trait"]))]:
            sel = part if trait == "all" else part[part["trait"] == trait]
            tested = int(sel["tested_r"].notna().sum())
            confirmed = int((sel["conclusion"].isin([PREDICTS_BEYOND, PREDICTS_UNCONTROLLED])).sum())
            share = confirmed / tested if tested else None
            row = {"scope": scope, "trait": trait, "tested_incremental": tested,
                   "confirmed_incremental": confirmed, "share_confirmed_incremental": share,
                   "dissociation_incremental": None if share is None else 1 - share}
            row |= {_count_column(label): int((sel["conclusion"] == label).sum()) for label in CONCLUSIONS}
            rows.append(row)
    return pd.DataFrame(rows, columns=["scope", "trait", "tested_incremental", "confirmed_incremental",
                                       "share_confirmed_incremental", "dissociation_incremental",
                                       *[_count_column(label) for label in CONCLUSIONS]])


# ------------------------------------------------------------------------------ persona-effect ratio


def _batched_d(s: np.ndarray, b: np.ndarray, x: np.ndarray, column: int, codes: np.ndarray | None) -> np.ndarray:
    """``(B, 2)``: d of the self-report and of the behaviour for a batch of data sets (first axis B): the
    coefficient of design column ``column`` (OLS, minimum-norm where the design is rank-deficient) over
    the measure's SD (within group, ``codes`` being each column's group, when given)."""
    y = np.stack([s, b], axis=-1)  # B x n x 2
    coef = np.linalg.pinv(x) @ y  # B x p x 2
    if codes is None:
        sd = y.std(axis=1, ddof=1)
    else:
        centred = y.copy()
        for code in np.unique(codes):
            cols = codes == code
            centred[:, cols] -= centred[:, cols].mean(axis=1, keepdims=True)
        k = len(np.unique(codes))
        sd = np.sqrt((centred ** 2).sum(axis=1) / max(y.shape[1] - k, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 1e-12, coef[:, column, :] / sd, np.nan)


def effect_sizes(s, b, levels: np.ndarray, column: int, groups=None) -> tuple[float, float]:
    """(d_self-report, d_behaviour): the standardized target-level coefficients of the module docstring."""
    codes = None if groups is None else pd.factorize(np.asarray(groups))[0]
    x = _design(np.asarray(levels, float), groups)
    d = _batched_d(np.asarray(s, float)[None], np.asarray(b, float)[None], x[None], column + 1, codes)[0]
    return float(d[0]), float(d[1])


def persona_effect_ratio(selfs: pd.DataFrame, behaviours: pd.DataFrame, info: pd.DataFrame,
                         targets: pd.DataFrame | None, manipulation: pd.DataFrame | None = None, *,
                         seed: int = 0, n_boot: int = 2000, confidence: float = 0.95) -> pd.DataFrame:
    """Per scope, targeted trait and task of the trait: d_self-report, d_behaviour and their ratio with a
    percentile bootstrap interval (module docstring)."""
    from psychometrics.validity.statistics import POOLED, _in_scope, _rng, _scopes

    index = selfs.index
    levels = target_matrix(targets, index)
    gate = self_report_check(manipulation)
    models = index.get_level_values("model")
    rows = []
    for scope in _scopes(models):
        mask = _in_scope(index, scope)
        for task, (trait, direction) in info.iterrows():
            if trait not in selfs.columns or trait not in levels.columns:
                continue
            s = selfs.loc[mask, trait].to_numpy(float)
            b = behaviours.loc[mask, task].to_numpy(float) * float(direction)
            x = levels.loc[mask].to_numpy(float)
            keep = ~(np.isnan(s) | np.isnan(b))
            s, b, x = s[keep], b[keep], x[keep]
            g = np.asarray(models[mask])[keep] if scope == POOLED else None
            column = list(levels.columns).index(trait)
            row = {"scope": scope, "trait": trait, "task": task, "n": int(keep.sum()), "d_selfreport": None,
                   "d_behavior": None, "ratio": None, "ci_low": None, "ci_high": None, "note": None}
            notes = []
            design = _design(x, g)
            if len(s) < 4 or len(np.unique(x[:, column])) < 2 or _rank(design) >= len(s) - 1:
                row["note"] = "too few respondents, or the trait's target level does not vary here"
                rows.append(row)
                continue
            d_s, d_b = effect_sizes(s, b, x, column, g)
            if not (math.isfinite(d_s) and math.isfinite(d_b)):
                row["note"] = "a score is constant across respondents"
                rows.append(row)
                continue
            row.update(d_selfreport=d_s, d_behavior=d_b, ratio=d_b / d_s if d_s != 0 else None)
            indices = bootstrap_indices(len(s), g, n_boot=n_boot, rng=_rng(seed, "ratio", scope, trait, task))
            codes = None if g is None else pd.factorize(g)[0]
            d = np.concatenate([_batched_d(s[pick], b[pick], design[pick], column + 1, codes)
                                for pick in np.array_split(indices, max(1, len(indices) // 250))])
            good = np.isfinite(d).all(axis=1) & (d[:, 0] > 0)
            ratios, bad = d[good, 1] / d[good, 0], int((~good).sum())
            if bad > MAX_DEGENERATE_SHARE * n_boot:
                notes.append(f"no CI: the persona did not move the self-report (d <= 0 or undefined) in {bad} of "
                             f"{n_boot} resamples, so the ratio is unbounded")
            else:
                tail = (1 - confidence) / 2
                row["ci_low"], row["ci_high"] = (float(v) for v in np.quantile(ratios, [tail, 1 - tail]))
            check = gate.get((scope, trait))
            if check is not None and not check["passed"]:
                notes.insert(0, check["sentence"])
            if d_s <= 0:
                notes.append("d_self-report <= 0: the ratio has no meaning")
            row["note"] = "; ".join(notes) or None
            rows.append(row)
    return pd.DataFrame(rows, columns=["scope", "trait", "task", "n", "d_selfreport", "d_behavior", "ratio", "ci_low",
                                       "ci_high", "note"])
