"""Design effects: how much of a model's questionnaire answers is the option order, the instruction
template, the wording, the persona or the sampling rather than the model.

Every function takes the tables psytest already produces and returns one tidy :class:`pandas.DataFrame`
(plain column names, one row per inventory x answer mode x ...), ready for ``to_csv``:

``scores``
    :func:`psychometrics.statistics.scoring.scale_scores`: one row per design cell x scale (and facet),
    with the condition columns (:data:`psychometrics.conditions.CONDITION_FIELDS`).
``responses``
    :func:`psychometrics.run.frame.responses_frame`: one row per item answer, with the condition
    columns, ``outcome`` and ``value`` (semantic response value before reverse keying; in probability
    mode the expected value of the label distribution).

=================================  ==============================================================
function                           what it answers
=================================  ==============================================================
:func:`factor_effects`             does changing one design factor move the scale scores?
                                   (paired t, Cohen's d_z, repeated-measures ANOVA)
:func:`variance_decomposition`     which share of the score variance is each factor's? (sequential
                                   ANOVA; variance components for balanced designs)
:func:`option_order_flips`         how often does the chosen answer change when only the option
                                   order changes?
=================================  ==============================================================

The answer mode (``text`` / ``probs``) is never a factor: every result is stratified by it, because
the two modes measure different things (a sampled reply vs a probability distribution). Response
styles (position bias, acquiescence, midpoint and extreme responding) are in
:mod:`psychometrics.statistics.response_styles`.

Degenerate cases (a factor with a single level, no valid answers, constant scores, too few matched
cells) give a row whose ``note`` says what happened; a statistic that cannot be computed is NaN only in
such a row, never silently. ``note`` is empty otherwise. Columns that do not apply to a kind of row are
empty by construction (``df2`` of a paired t row, ``mean_diff`` of an omnibus row, the F of the residual
row); a ``test`` or ``source`` column says which kind a row is.

All statistics are checked against R (``tests/reference/sensitivity.R``, values in
``tests/reference/golden/sensitivity.json``): ``t.test(paired = TRUE)``, ``effectsize::cohens_d``,
``aov`` (sequential sums of squares and the ``Error()`` repeated-measures form), ``p.adjust``,
``lme4::lmer`` (REML variance components), and direct R computations of the flip shares.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from psychometrics.conditions import FACTORS, check_factor, is_missing, ordered_levels, same_level
from psychometrics.statistics.frames import TOLERANCE, fill_notes, join_notes, present, valid_answers, varied

__all__ = ["dz_interval", "factor_effects", "holm_adjust", "option_order_flips", "variance_decomposition"]

_GROUP = ["inventory", "mode"]
_SCALE_GROUP = ["inventory", "mode", "kind", "scale"]


# ---------------------------------------------------------------------------------------------------
# helpers


def holm_adjust(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p values (R ``p.adjust(p, "holm")``); NaN stays NaN."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    m = ok.size
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out.tolist()


def dz_interval(t: float, df: int, n: int, confidence: float) -> tuple[float, float]:
    """Confidence interval for Cohen's d_z by inverting the noncentral t distribution:
    the noncentrality parameters whose t distribution puts the observed t at the upper and lower
    ``(1 - confidence) / 2`` quantiles, divided by sqrt(n) (Steiger & Fouladi, 1997).

    Solved for ``|t|`` and mirrored (the noncentral t is symmetric: ``P(T <= -t; -ncp) = P(T >= t;
    ncp)``); where scipy's noncentral t CDF returns NaN, deep in a tail, its limit (1 below ``t``,
    0 above) stands in, which keeps the function monotone for the root finder."""
    from scipy import optimize, stats

    alpha = 1.0 - confidence
    q = abs(t)

    def cdf(ncp: float) -> float:
        value = float(stats.nct.cdf(q, df, ncp))
        return value if math.isfinite(value) else (1.0 if ncp < q else 0.0)

    def solve(target: float) -> float:
        width = 10.0 + q
        lo, hi = q - width, q + width
        for _ in range(60):
            if cdf(lo) - target > 0 > cdf(hi) - target:
                return float(optimize.brentq(lambda ncp: cdf(ncp) - target, lo, hi, xtol=1e-12, rtol=1e-13, maxiter=500))
            width *= 2
            lo, hi = q - width, q + width
        return math.nan

    low, high = solve(1.0 - alpha / 2) / math.sqrt(n), solve(alpha / 2) / math.sqrt(n)
    return (low, high) if t >= 0 else (-high, -low)


# ---------------------------------------------------------------------------------------------------
# factor effects


_EFFECT_COLUMNS = [
    "inventory", "mode", "kind", "scale", "factor", "test", "reference", "level", "n", "cells_dropped",
    "mean_reference", "mean_level", "mean_diff", "ci_low", "ci_high", "statistic", "df", "df2", "p_value",
    "p_holm", "effect_size", "effect_size_type", "effect_size_ci_low", "effect_size_ci_high", "gg_epsilon",
    "p_gg", "note",
]


def _blocks(part: pd.DataFrame, factor: str) -> pd.DataFrame:
    """Scores of one scale as blocks (the matched cells: every condition but ``factor``) x levels."""
    others = [c for c in FACTORS if c != factor and c in part.columns]
    block = part.groupby(others, dropna=False, sort=False).ngroup() if others else pd.Series(0, index=part.index)
    keyed = pd.DataFrame({"block": block.to_numpy(), "level": part[factor].to_numpy(), "score": part["score"].to_numpy()})
    keyed = keyed[~keyed["level"].map(is_missing)]
    if keyed.duplicated(["block", "level"]).any():
        raise ValueError(
            "scores have more than one row per design cell and scale (scores of several runs or models "
            "concatenated?); analyse one run at a time"
        )
    return keyed.pivot(index="block", columns="level", values="score")


def _paired(diff: np.ndarray, confidence: float) -> dict:
    """Paired t-test on ``diff`` (R ``t.test(x, y, paired = TRUE)``) and Cohen's d_z with its CI."""
    from scipy import stats

    n = diff.size
    out: dict = {"n": n}
    if n == 0:
        out["note"] = "no matched pairs"
        return out
    mean = float(diff.mean())
    out["mean_diff"] = mean
    if n < 2:
        out["note"] = "fewer than 2 matched pairs: no test"
        return out
    sd = float(diff.std(ddof=1))
    df = n - 1
    if sd <= TOLERANCE * max(1.0, abs(mean)):
        out["ci_low"] = out["ci_high"] = mean
        out["df"] = df
        out["note"] = (
            "no difference in any matched pair" if abs(mean) <= TOLERANCE
            else "the difference is the same in every matched pair: t and d_z undefined"
        )
        return out
    se = sd / math.sqrt(n)
    t = mean / se
    crit = float(stats.t.ppf(0.5 + confidence / 2, df))
    dz = mean / sd
    dz_low, dz_high = dz_interval(t, df, n, confidence)
    out.update(
        ci_low=mean - crit * se, ci_high=mean + crit * se, statistic=t, df=df,
        p_value=float(2 * stats.t.sf(abs(t), df)), effect_size=dz, effect_size_type="d_z",
        effect_size_ci_low=dz_low, effect_size_ci_high=dz_high,
    )
    if not (math.isfinite(dz_low) and math.isfinite(dz_high)):
        out["note"] = "d_z confidence interval not computable (noncentral t out of numerical range)"
    return out


def _rm_anova(complete: np.ndarray) -> dict:
    """One-way repeated-measures ANOVA over complete blocks (rows) x levels (columns)."""
    from scipy import stats

    nb, k = complete.shape
    out: dict = {"n": nb}
    if nb < 2:
        out["note"] = "fewer than 2 blocks with every level scored: no omnibus test"
        return out
    grand = complete.mean()
    ss_level = nb * float(((complete.mean(axis=0) - grand) ** 2).sum())
    ss_block = k * float(((complete.mean(axis=1) - grand) ** 2).sum())
    ss_total = float(((complete - grand) ** 2).sum())
    ss_error = max(ss_total - ss_level - ss_block, 0.0)
    df1, df2 = k - 1, (k - 1) * (nb - 1)
    out.update(df=df1, df2=df2)
    if ss_error <= TOLERANCE**2 * max(1.0, ss_total):
        out["note"] = (
            "scores constant within and across levels: no test" if ss_level <= TOLERANCE**2 * max(1.0, ss_total)
            else "no residual variation (level differences identical in every block): F undefined"
        )
        return out
    f_value = (ss_level / df1) / (ss_error / df2)
    # Greenhouse-Geisser epsilon from the double-centred covariance matrix of the levels.
    cov = np.cov(complete, rowvar=False, ddof=1)
    centre = np.eye(k) - np.full((k, k), 1.0 / k)
    centred = centre @ cov @ centre
    denominator = (k - 1) * float((centred**2).sum())
    epsilon = float(np.trace(centred) ** 2 / denominator) if denominator > 0 else math.nan
    out.update(
        statistic=f_value, p_value=float(stats.f.sf(f_value, df1, df2)),
        effect_size=ss_level / (ss_level + ss_error), effect_size_type="partial_eta_sq",
        gg_epsilon=epsilon,
        p_gg=float(stats.f.sf(f_value, epsilon * df1, epsilon * df2)) if math.isfinite(epsilon) else math.nan,
    )
    return out


def factor_effects(
    scores: pd.DataFrame, factor: str, *, reference: object | None = None, confidence: float = 0.95
) -> pd.DataFrame:
    """Effect of one design factor on scale scores, with every other condition held fixed.

    For each inventory x mode x scale (``kind`` says scale or facet), every level :math:`L` of
    ``factor`` is compared with the reference level :math:`R` (``reference``, default the design's
    default level, e.g. ``original`` option order or ``numbered`` template, else the first level in
    natural order) on *matched cells*: pairs of design cells that agree on every other condition
    column (template, persona, wording, item order, sample, ...). With :math:`d_i = x_{iL} - x_{iR}`
    over the :math:`n` matched pairs, :math:`\\bar d` and :math:`s_d`:

    * ``mean_diff`` :math:`= \\bar d` with the t interval :math:`\\bar d \\pm t_{1-\\alpha/2,\\,n-1}\\,
      s_d/\\sqrt n` (``ci_low``, ``ci_high``);
    * paired t-test (``test = "paired_t"``): ``statistic`` :math:`t = \\bar d\\sqrt n / s_d`,
      ``df`` :math:`= n - 1`, two-sided ``p_value``, and ``p_holm``, Holm's adjustment over the levels
      compared within the scale;
    * Cohen's :math:`d_z = \\bar d / s_d` (``effect_size``, ``effect_size_type = "d_z"``), with the exact
      interval from the noncentral t distribution: the noncentrality parameters
      :math:`\\lambda_{lo}, \\lambda_{hi}` with :math:`P(T_{n-1}(\\lambda_{lo}) \\le t) = 1-\\alpha/2` and
      :math:`P(T_{n-1}(\\lambda_{hi}) \\le t) = \\alpha/2`, divided by :math:`\\sqrt n`.

    For factors with more than two levels one more row (``test = "rm_anova"``, ``level = "all"``) holds
    the one-way repeated-measures ANOVA over the blocks that have a score at every level (:math:`b`
    blocks, :math:`k` levels): :math:`F = (SS_{level}/(k-1)) / (SS_{error}/((k-1)(b-1)))` with
    :math:`SS_{error} = SS_{total} - SS_{level} - SS_{block}`, ``df``/``df2`` its degrees of freedom,
    partial :math:`\\eta^2 = SS_{level}/(SS_{level}+SS_{error})` (``effect_size``), and the
    Greenhouse-Geisser :math:`\\hat\\varepsilon = \\operatorname{tr}(S^*)^2 / ((k-1)\\,\\|S^*\\|_F^2)` of the
    double-centred covariance matrix :math:`S^*` of the levels, with ``p_gg``, the p value on
    :math:`\\hat\\varepsilon (k-1)` and :math:`\\hat\\varepsilon (k-1)(b-1)` degrees of freedom.

    A cell is dropped when it has no partner, or its score is missing (scale not scored);
    ``cells_dropped`` counts the dropped cells of the levels involved. A factor with one level gives
    one row per scale with ``test = "none"`` and note ``not varied``.

    Parameters
    ----------
    scores
        :func:`psychometrics.statistics.scoring.scale_scores` output of one run (one row per cell x scale).
    factor
        A condition column other than ``mode``: ``option_order``, ``template``, ``persona``,
        ``wording``, ``item_order`` or ``sample``.
    reference
        The level the others are compared with.
    confidence
        Level of the confidence intervals.

    Returns
    -------
    pandas.DataFrame
        Columns ``inventory, mode, kind, scale, factor, test, reference, level, n`` (matched pairs, or
        complete blocks), ``cells_dropped, mean_reference, mean_level`` (over matched pairs),
        ``mean_diff, ci_low, ci_high, statistic, df, df2, p_value, p_holm, effect_size,
        effect_size_type, effect_size_ci_low, effect_size_ci_high, gg_epsilon, p_gg, note``.

    Matches R: ``t.test(x, y, paired = TRUE)`` (t, df, p, conf.int), ``effectsize::cohens_d(x, y,
    paired = TRUE)`` (d_z and CI), ``p.adjust(p, "holm")``, ``summary(aov(score ~ level +
    Error(block/level)))`` (F, df, p; partial eta squared from its ``block:level`` stratum), and the
    Greenhouse-Geisser epsilon computed in R from the covariance of orthonormal (``contr.poly``)
    contrasts.

    Differences from R
    ------------------
    * The d_z interval is the exact root of the noncentral t equations (scipy's Boost noncentral t,
      Brent's method to 1e-12). ``effectsize`` 0.8 finds the same roots with ``optim`` (Nelder-Mead,
      ``abstol = 1e-9``), which agrees to about 1e-5 only; and R's ``pt(q, df, ncp)`` is documented as
      inaccurate for ``|ncp| > 37.62``, so for very large effects (:math:`|d_z|\\sqrt n > 37.6`) R's
      interval is off in the second decimal while this one is right (checked by quadrature).
    * R's ``t.test`` stops with "data are essentially constant" when every difference is the same;
      here the row is kept with ``mean_diff``, a zero-width interval, NaN t and a note.
    * Unmatched cells are dropped pairwise here (each level vs the reference uses every pair it has),
      while the omnibus test uses complete blocks only, as ``aov`` with ``Error()`` effectively does on
      balanced data (on unbalanced data ``aov`` would not drop them and its error strata differ).

    References
    ----------
    Cohen, J. (1988). *Statistical power analysis for the behavioral sciences* (2nd ed.). Erlbaum.
    Lakens, D. (2013). Calculating and reporting effect sizes to facilitate cumulative science.
    *Frontiers in Psychology*, 4, 863.
    Steiger, J. H., & Fouladi, R. T. (1997). Noncentrality interval estimation and the evaluation of
    statistical models. In *What if there were no significance tests?* (pp. 221-257). Erlbaum.
    Greenhouse, S. W., & Geisser, S. (1959). On methods in the analysis of profile data.
    *Psychometrika*, 24(2), 95-112.
    Holm, S. (1979). A simple sequentially rejective multiple test procedure. *Scandinavian Journal
    of Statistics*, 6(2), 65-70.
    """
    check_factor(factor)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    rows: list[dict] = []
    if factor not in scores.columns:
        raise ValueError(f"scores have no {factor!r} column")
    if reference is not None and not any(same_level(v, reference) for v in ordered_levels(scores[factor], factor)):
        raise ValueError(f"reference level {reference!r} is not a level of {factor}")
    for (inventory, mode, kind, scale), part in scores.groupby(_SCALE_GROUP, sort=False, dropna=False):
        base = {"inventory": inventory, "mode": mode, "kind": kind, "scale": scale, "factor": factor}
        levels = ordered_levels(part[factor], factor)
        if len(levels) < 2:
            only = levels[0] if levels else None
            rows.append({**base, "test": "none", "reference": only, "level": only,
                         "n": int(part["score"].notna().sum()),
                         "note": f"not varied: {factor} has a single level ({only})"})
            continue
        ref = levels[0] if reference is None else next((v for v in levels if same_level(v, reference)), None)
        if ref is None:
            rows.append({**base, "test": "none", "reference": reference,
                         "note": f"reference level {reference} not among this scale's levels ({', '.join(map(str, levels))})"})
            continue
        wide = _blocks(part, factor)
        counts = part.groupby(part[factor].map(str), dropna=True).size()
        paired_rows = []
        for level in [v for v in levels if not same_level(v, ref)]:
            pair = wide[[ref, level]].dropna()
            row = {**base, "test": "paired_t", "reference": ref, "level": level}
            row.update(_paired((pair[level] - pair[ref]).to_numpy(dtype=float), confidence))
            row["cells_dropped"] = int(counts.get(str(ref), 0) + counts.get(str(level), 0) - 2 * len(pair))
            if len(pair):
                row["mean_reference"] = float(pair[ref].mean())
                row["mean_level"] = float(pair[level].mean())
            if row["cells_dropped"]:
                row["note"] = join_notes(row.get("note"), f"{row['cells_dropped']} unmatched or unscored cells dropped")
            paired_rows.append(row)
        for row, p in zip(paired_rows, holm_adjust([r.get("p_value", math.nan) for r in paired_rows])):
            row["p_holm"] = p
        rows += paired_rows
        if len(levels) > 2:
            complete = wide[levels].dropna()
            row = {**base, "test": "rm_anova", "reference": ref, "level": "all"}
            row.update(_rm_anova(complete.to_numpy(dtype=float)))
            row["cells_dropped"] = int(counts.sum() - complete.size)
            if row["cells_dropped"]:
                row["note"] = join_notes(row.get("note"), f"{row['cells_dropped']} cells in incomplete blocks dropped")
            rows.append(row)
    frame = pd.DataFrame(rows, columns=_EFFECT_COLUMNS)
    frame["note"] = fill_notes(frame["note"])
    return frame


# ---------------------------------------------------------------------------------------------------
# variance decomposition


_VARIANCE_COLUMNS = [
    "inventory", "mode", "kind", "scale", "source", "df", "sum_sq", "mean_sq", "statistic", "p_value",
    "share", "variance_component", "component_share", "component_sd", "n", "balanced", "note",
]


def _dummies(values: pd.Series, levels: list) -> np.ndarray:
    """Treatment-coded columns for ``levels[1:]`` (R's default contrasts)."""
    as_text = values.map(str).to_numpy()
    return np.column_stack([(as_text == str(level)).astype(float) for level in levels[1:]]) if len(levels) > 1 \
        else np.empty((len(values), 0))


#: A column is aliased with the columns before it when less than this fraction of its norm is left after
#: projecting them out (the tolerance of R's ``lm.fit``, which ``aov`` uses).
_ALIAS_TOL = 1e-7


def _sequential_effects(terms: Sequence[np.ndarray], y: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Orthogonal effects of ``y`` for an intercept followed by ``terms`` (each an n x k column block).

    A Householder QR of :math:`X = [1 \\mid X_1 \\mid X_2 \\dots]`, column by column in the given order, as
    R's ``lm.fit`` does (``aov``'s ``effects``): column :math:`j` gets the reflector of what is left of it
    below the rank reached so far, unless less than :data:`_ALIAS_TOL` of its norm is left (aliased: no
    effect). The effects are :math:`Q^\\top y`: one per non-aliased column, and the :math:`n - r`
    residual ones. Returns the effects of each term and the residual effects; the intercept's is dropped.

    Why effects and not differences of residual sums of squares: a backward-stable QR gives every effect
    with an absolute error of order :math:`n p\\,\\epsilon \\lVert y \\rVert` (Higham, 2002, ch. 19), so
    :math:`SS_f = \\sum e_j^2` is accurate to :math:`O(\\epsilon \\lVert y\\rVert \\sqrt{SS_f})`, and an effect
    that is zero in exact arithmetic comes out of order :math:`\\epsilon \\lVert y\\rVert`, which
    :func:`variance_decomposition` recognises and sets to zero. A difference of two residual sums of
    squares instead carries an error of order :math:`\\epsilon \\lVert y\\rVert^2` whatever :math:`SS_f` is: a
    zero effect then gets a sum of squares of 1e-17 whose sign and size depend on the BLAS kernel, and a
    p value of 1 - 1e-8. Only elementwise numpy arithmetic and numpy's own (pairwise) sums are used, no
    BLAS call, so the result does not depend on the BLAS build or the CPU's kernel either.
    """
    n = len(y)
    blocks = [np.ones((n, 1)), *terms]
    owner = np.concatenate([np.full(b.shape[1], i) for i, b in enumerate(blocks)])
    work = np.ascontiguousarray(np.column_stack(blocks).T, dtype=float)  # one row per column of X
    original = np.sqrt((work * work).sum(axis=1))
    rhs = np.array(y, dtype=float)
    effects: list[list[float]] = [[] for _ in blocks]
    rank = 0
    for j in range(work.shape[0]):
        if rank == n:
            break
        v = work[j, rank:]
        norm = math.sqrt(float((v * v).sum()))
        if norm <= _ALIAS_TOL * original[j] or norm == 0.0:
            continue
        u = v.copy()
        u[0] += math.copysign(norm, v[0])  # reflect onto -sign(v0) * norm e_1, without cancellation
        scale = 2.0 / float((u * u).sum())
        rest = work[j + 1:, rank:]
        rest -= np.outer((rest * u).sum(axis=1) * scale, u)
        tail = rhs[rank:]
        tail -= float((tail * u).sum()) * scale * u
        effects[owner[j]].append(float(rhs[rank]))
        rank += 1
    return [np.array(e) for e in effects[1:]], rhs[rank:].copy()


#: Relative size below which a difference of two mean squares is rounding, not signal: a variance
#: component that is zero in exact arithmetic must come out zero on every BLAS build.
_ROUNDING = 1e-9


def variance_decomposition(scores: pd.DataFrame, factors: Sequence[str] | None = None, *,
                           extra_factors: Sequence[str] = ()) -> pd.DataFrame:
    """How much of the variance in scale scores each design factor explains.

    Per inventory x mode x scale (and facet), a main-effects linear model
    :math:`y = \\mu + \\sum_f \\alpha_{f,\\ell(f)} + e` is fitted to the scale scores of the design cells,
    adding the factors in the order given. The sequential (Type I) sum of squares of factor :math:`f`
    is the drop in residual sum of squares when it enters, :math:`SS_f = RSS_{before} - RSS_{after}`
    with :math:`df_f` the rank it adds; the residual is everything else (interactions, the factors not
    listed, sampling noise). It is computed as R's ``aov`` does, as the sum of the factor's squared QR
    effects (:func:`_sequential_effects`), not as that difference, which would lose the small sums of
    squares to cancellation; an effect within the QR's rounding error
    (:math:`n p\\,\\epsilon \\lVert y - \\bar y\\rVert`, :math:`p` columns of the model) is zero in exact
    arithmetic and set to zero, so a factor whose levels have equal means gets :math:`SS_f = F = 0` and
    ``p_value`` 1 exactly, on every CPU and BLAS build. ``share`` :math:`= SS_f / SS_{total}`
    (:math:`\\eta^2`; the residual's share is the rest), ``statistic`` :math:`F_f = MS_f / MS_{residual}`
    with its ``p_value``. In a balanced design (every combination of the factors' levels scored equally
    often) the factors are orthogonal and Type I = Type II = Type III, so the shares do not depend on
    the order; otherwise the note says that they do.

    Variance components (``variance_component``), for a balanced design only, treat every factor as a
    crossed random effect (:math:`\\alpha_f \\sim N(0, \\sigma^2_f)`, residual :math:`\\sigma^2_e`), estimated by
    the ANOVA (expected mean squares) method: with :math:`N` scores and :math:`n_f` levels,
    :math:`E[MS_f] = \\sigma^2_e + (N/n_f)\\,\\sigma^2_f` and :math:`E[MS_e] = \\sigma^2_e`, so
    :math:`\\hat\\sigma^2_f = \\max\\{0, (MS_f - MS_e)\\,n_f/N\\}` and :math:`\\hat\\sigma^2_e = MS_e`.
    ``component_share`` is each component over their sum: the generalizability-theory view of how much
    of the variance of a single score is due to each design facet, and how much is left (the residual:
    interactions of the facets and sampling noise). ``component_sd`` :math:`= \\hat\\sigma_f` is the same
    component in score points (the scale's own units): how far, as a standard deviation, a score moves
    with that facet's levels, which a share alone does not say (a 40 % share of a tiny variance is tiny).

    Parameters
    ----------
    scores
        :func:`psychometrics.statistics.scoring.scale_scores` output of one run.
    factors
        Factors in entry order. Default: every condition column except ``mode`` and ``sample`` that has
        more than one level, in :data:`~psychometrics.conditions.FACTORS` order. ``sample`` is left in the residual by default
        because sample indices are exchangeable replicates (sample 0 of one cell has nothing in common
        with sample 0 of another); pass it explicitly to test that anyway. A listed factor with a single
        level gets a row with ``df = 0`` and note ``not varied``.
    extra_factors
        Columns of ``scores`` that are not design conditions, entered before the factors: ``model`` when
        the scores of several models' runs are stacked (:mod:`psychometrics.analysis.across_models`), so
        the model's share is what the models differ by, and each design factor's share what it moves
        the scores by beyond that. A listed column with a single level gets a ``not varied`` row.

    Returns
    -------
    pandas.DataFrame
        One row per inventory x mode x scale x ``source`` (each factor, then ``residual``): ``df,
        sum_sq, mean_sq, statistic, p_value, share, variance_component, component_share, component_sd,
        n`` (scores
        used), ``balanced``, ``note``.

    Matches R: ``summary(aov(score ~ f1 + f2 + ...))`` (Df, Sum Sq, Mean Sq, F value, Pr(>F)) to 1e-8,
    on balanced and unbalanced data; for a balanced design with no component at the boundary,
    ``VarCorr(lmer(score ~ 1 + (1 | f1) + (1 | f2) + ..., REML = TRUE))`` to 1e-4 (``vcov``; ``component_sd``
    against its ``sdcor``).

    Differences from R
    ------------------
    * Missing scores (scales not scored) are dropped first, as ``aov``'s default ``na.omit`` does;
      that can make a balanced design unbalanced, and the variance components are then not reported.
    * When an ANOVA estimate is negative it is truncated at zero and the others are left as they
      are; REML (``lmer``) instead re-estimates the other components with that one fixed at zero, so
      the two differ in that case (the note names the truncated components). An estimate within
      ``1e-9`` of the size of its two mean squares is rounding and set to zero, neither truncated nor
      noted, so that a different BLAS build cannot flip it.
    * ``lmer`` refuses grouping factors with a single level; here they get a ``not varied`` row.

    References
    ----------
    Searle, S. R., Casella, G., & McCulloch, C. E. (1992). *Variance components*. Wiley (ch. 4, the
    ANOVA method for balanced data; ch. 6, REML equals it in the interior for balanced data).
    Brennan, R. L. (2001). *Generalizability theory*. Springer.
    Higham, N. J. (2002). *Accuracy and stability of numerical algorithms* (2nd ed.). SIAM (ch. 19,
    Householder QR).
    """
    from scipy import stats

    if factors is not None:
        for factor in factors:
            check_factor(factor)
            if factor not in scores.columns:
                raise ValueError(f"scores have no {factor!r} column")
        if len(set(factors)) != len(factors):
            raise ValueError("a factor is listed twice")
    for factor in extra_factors:
        if factor in FACTORS or factor in ("mode", "score", *_SCALE_GROUP):
            raise ValueError(f"extra factor {factor!r} is a design factor or a key column; give it in factors")
        if factor not in scores.columns:
            raise ValueError(f"scores have no {factor!r} column")
    if len(set(extra_factors)) != len(extra_factors):
        raise ValueError("a factor is listed twice")
    rows: list[dict] = []
    for (inventory, mode, kind, scale), part in scores.groupby(_SCALE_GROUP, sort=False, dropna=False):
        base = {"inventory": inventory, "mode": mode, "kind": kind, "scale": scale}
        unscored = int(part["score"].isna().sum())
        part = part[part["score"].notna()]
        listed = [*extra_factors,
                  *(list(factors) if factors is not None else [f for f in FACTORS if f != "sample" and varied(part, f)])]
        active = [f for f in listed if varied(part, f)]
        n = len(part)
        y = part["score"].to_numpy(dtype=float)
        group_notes = []
        if unscored:
            group_notes.append(f"{unscored} unscored cells dropped")
        if n == 0:
            rows.append({**base, "source": "residual", "n": 0, "balanced": False,
                         "note": join_notes(*group_notes, "no scored cells")})
            continue
        centred = y - y.mean()
        ss_total = float((centred * centred).sum())
        constant = ss_total <= (TOLERANCE**2) * max(1.0, float((y * y).sum()))
        levels = {f: ordered_levels(part[f], f) for f in active}
        blocks = [_dummies(part[f], levels[f]) for f in active]
        term_effects, residual_effects = _sequential_effects(blocks, centred)
        # An effect within the QR's rounding error of zero is zero in exact arithmetic (a factor whose
        # levels have equal means, a model that fits exactly): make it exactly zero, so that its sum of
        # squares, F and p value (1) are the same on every CPU and BLAS build.
        columns = 1 + sum(b.shape[1] for b in blocks)
        rounding = n * columns * np.finfo(float).eps * math.sqrt(ss_total)
        term_effects = dict(zip(active, (np.where(np.abs(e) <= rounding, 0.0, e) for e in term_effects)))
        residual_effects = np.where(np.abs(residual_effects) <= rounding, 0.0, residual_effects)
        entries = []
        for factor in listed:
            if factor not in active:
                entries.append({"source": factor, "df": 0, "sum_sq": 0.0, "note": f"not varied: {factor} has a single level"})
                continue
            effects, n_levels = term_effects[factor], len(levels[factor])
            df = len(effects)
            entry = {"source": factor, "df": df, "sum_sq": float((effects * effects).sum()), "n_levels": n_levels}
            if df == 0:
                entry["note"] = f"{factor} is confounded with the factors before it: no sum of squares of its own"
            elif df < n_levels - 1:
                entry["note"] = f"{factor} partly confounded with the factors before it ({df} of {n_levels - 1} df)"
            entries.append(entry)
        df_e = n - 1 - sum(e["df"] for e in entries)
        ss_e = float((residual_effects * residual_effects).sum()) if df_e > 0 else 0.0
        ms_e = ss_e / df_e if df_e > 0 else math.nan
        balanced = False
        if active:
            cells = part.groupby(active, dropna=False).size()
            full = math.prod(part[f].nunique(dropna=True) for f in active)
            balanced = len(cells) == full and cells.nunique() == 1
        if not active:
            group_notes.append("no design factor varied: all variance is residual")
        elif not balanced:
            group_notes.append("design not balanced: sequential (Type I) shares depend on the factor order; "
                               "variance components not estimated")
        if constant:
            group_notes.append("scores constant: no variance to decompose")
        if df_e <= 0:
            group_notes.append("no residual degrees of freedom: no F tests")
        elif ss_e == 0 and not constant:
            group_notes.append("no residual variation (the factors explain every score): F undefined")
        # variance components (ANOVA method, balanced only)
        components: dict[str, float] = {}
        truncated = []
        if balanced and df_e > 0 and not constant:
            for entry in entries:
                if entry["df"] > 0:
                    mean_sq = entry["sum_sq"] / entry["df"]
                    raw = (mean_sq - ms_e) * entry["n_levels"] / n
                    if abs(raw) <= _ROUNDING * (abs(mean_sq) + abs(ms_e)) * entry["n_levels"] / n:
                        raw = 0.0  # equal mean squares: a last-bit difference must not flip the sign (or the note)
                    if raw < 0:
                        truncated.append(entry["source"])
                    components[entry["source"]] = max(raw, 0.0)
            components["residual"] = ms_e
            if truncated:
                group_notes.append("negative variance component truncated at zero: " + ", ".join(truncated))
        total_component = sum(components.values()) if components else math.nan
        group_note = join_notes(*group_notes)
        for entry in entries + [{"source": "residual", "df": df_e, "sum_sq": ss_e}]:
            row = {**base, "source": entry["source"], "df": entry["df"], "sum_sq": entry["sum_sq"], "n": n,
                   "balanced": balanced}
            if entry["df"] > 0:
                row["mean_sq"] = entry["sum_sq"] / entry["df"]
            if entry["source"] != "residual" and entry["df"] > 0 and df_e > 0 and ms_e > 0:
                row["statistic"] = row["mean_sq"] / ms_e
                row["p_value"] = float(stats.f.sf(row["statistic"], entry["df"], df_e))
            if not constant:
                row["share"] = entry["sum_sq"] / ss_total
            if entry["source"] in components:
                row["variance_component"] = components[entry["source"]]
                row["component_share"] = (components[entry["source"]] / total_component
                                          if total_component > 0 else math.nan)
                row["component_sd"] = math.sqrt(components[entry["source"]])
            row["note"] = join_notes(entry.get("note"), group_note)
            rows.append(row)
    frame = pd.DataFrame(rows, columns=_VARIANCE_COLUMNS)
    frame["note"] = fill_notes(frame["note"])
    frame["balanced"] = frame["balanced"].astype(bool)
    return frame


# ---------------------------------------------------------------------------------------------------
# option-order flips


_FLIP_COLUMNS = [
    "inventory", "mode", "option_orders", "threshold", "units", "units_incomplete", "flips", "flip_rate",
    "large_flips", "large_flip_rate", "pairs", "pair_flips", "pair_flip_rate", "mean_abs_diff",
    "resample_pairs", "resample_flip_rate", "note",
]




def _pairs(frame: pd.DataFrame, keys: list[str], within: str) -> pd.DataFrame:
    """All pairs of rows that agree on ``keys`` and differ in ``within`` (each unordered pair once)."""
    left = frame[[*keys, within, "value"]].reset_index(drop=True)
    left["_rank"] = left[within].map(str)
    keyed = left.fillna({k: "\x00NA" for k in keys})
    merged = keyed.merge(keyed, on=keys, suffixes=("_a", "_b"))
    return merged[merged["_rank_a"] < merged["_rank_b"]]


def _pair_flips(frame: pd.DataFrame, keys: list[str], within: str, tau: float) -> tuple[int, int]:
    """(pairs, flips) over the pairs :func:`_pairs` would list: ``flips`` counts those whose values
    differ by more than ``tau``. The pairs are counted, not listed (a group of m rows has m(m-1)/2 of
    them: 1,667 samples of an item make 1.4 million), from each group's values sorted by rank.
    Equal to counting the listed pairs up to rounding exactly at the threshold."""
    group = frame.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    if tau + TOLERANCE <= 0 or pd.DataFrame({"g": group, "w": frame[within].map(str).to_numpy()}).duplicated().any():
        pairs = _pairs(frame, keys, within)  # rows sharing a level of ``within`` are not pairs: list them
        return len(pairs), int(((pairs["value_a"] - pairs["value_b"]).abs() > tau + TOLERANCE).sum())
    values = frame["value"].to_numpy(dtype=float)
    sizes = np.bincount(group)
    total = int((sizes * (sizes - 1) // 2).sum())
    levels = np.unique(values)
    width = len(levels) + 1
    base = group.astype(np.int64) * width
    keys_sorted = np.sort(base + np.searchsorted(levels, values))
    # for each row, the rows of its group whose value exceeds it by more than tau (each pair counted once)
    above = np.searchsorted(levels, values + (tau + TOLERANCE), side="right")
    flips = np.searchsorted(keys_sorted, base + width, side="left") - np.searchsorted(keys_sorted, base + above, side="left")
    return total, int(flips.sum())


def option_order_flips(responses: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
    """How often the chosen semantic answer changes when only the option order changes.

    A *unit* is one item in one cell of every other factor (template, persona, wording, item order,
    sample): the answers to the same statement under the same conditions, shown with different
    option orders. Only valid answers count, and a unit needs at least two of them
    (``units_incomplete`` counts those that have fewer). With the unit's values :math:`v_1..v_m`
    (semantic values, so orders are comparable):

    * ``flips`` / ``flip_rate``: units with :math:`\\max v - \\min v > \\tau` (the answer changes);
    * ``large_flips`` / ``large_flip_rate``: units with :math:`\\max v - \\min v > 1` (by more than one
      scale point);
    * ``pairs``, ``pair_flips``, ``pair_flip_rate``: the same over every pair of option orders within a
      unit (equal to the unit rates with two orders; comparable across designs with more orders);
      ``mean_abs_diff`` the mean :math:`|v_i - v_j|` over those pairs;
    * ``resample_flip_rate``: the pair flip rate between *samples* under the same option order and
      other conditions (``resample_pairs`` pairs). At temperature > 0 answers change between samples
      by chance alone; option-order sensitivity is the excess of ``pair_flip_rate`` over it.

    The threshold :math:`\\tau` is 0 in text mode (values are response options, any change counts) and
    0.5 in probability mode, where ``value`` is the expected value of the distribution and always
    moves a little; ``threshold`` overrides both.

    Parameters
    ----------
    responses
        :func:`psychometrics.run.frame.responses_frame` output.
    threshold
        Smallest change counted as a flip (default 0 for text, 0.5 for probs mode).

    Returns
    -------
    pandas.DataFrame
        One row per inventory x mode: ``option_orders`` (number of orders), ``threshold, units,
        units_incomplete, flips, flip_rate, large_flips, large_flip_rate, pairs, pair_flips,
        pair_flip_rate, mean_abs_diff, resample_pairs, resample_flip_rate, note``.

    Matches R: the shares computed directly in R from the same answers (``aggregate`` over units).

    Differences from R
    ------------------
    None known; there is no packaged R function for this statistic.

    References
    ----------
    Gupta, A., Song, X., & Anumanchipalli, G. (2024). Self-assessment tests are unreliable measures of
    LLM personality. *Proceedings of the 7th BlackboxNLP Workshop*, 301-314 (option-order symmetry).
    """
    rows: list[dict] = []
    others = present(responses, [f for f in FACTORS if f not in ("option_order",)])
    for (inventory, mode), part in responses.groupby(_GROUP, sort=False, dropna=False):
        tau = threshold if threshold is not None else (0.5 if mode == "probs" else 0.0)
        orders = ordered_levels(part["option_order"], "option_order")
        row = {"inventory": inventory, "mode": mode, "option_orders": len(orders), "threshold": tau}
        if len(orders) < 2:
            rows.append({**row, "note": "not varied: one option order"})
            continue
        valid = valid_answers(part)
        unit_keys = ["item_id", *others]
        all_units = part.groupby(unit_keys, dropna=False).ngroups
        if valid.empty:
            rows.append({**row, "units": 0, "units_incomplete": all_units, "note": "no valid answers"})
            continue
        spread = valid.groupby(unit_keys, dropna=False)["value"].agg(["count", "min", "max"])
        spread = spread[spread["count"] >= 2]
        change = spread["max"] - spread["min"]
        units = len(spread)
        row.update(units=units, units_incomplete=all_units - units)
        if units == 0:
            rows.append({**row, "note": "no item answered validly under two option orders"})
            continue
        flips = int((change > tau + TOLERANCE).sum())
        large = int((change > 1 + TOLERANCE).sum())
        pairs = _pairs(valid, unit_keys, "option_order")
        diff = (pairs["value_a"] - pairs["value_b"]).abs()
        row.update(flips=flips, flip_rate=flips / units, large_flips=large, large_flip_rate=large / units,
                   pairs=len(pairs), pair_flips=int((diff > tau + TOLERANCE).sum()),
                   mean_abs_diff=float(diff.mean()))
        row["pair_flip_rate"] = row["pair_flips"] / row["pairs"]
        if "sample" in valid.columns and valid["sample"].nunique() > 1:
            keys = ["item_id", "option_order", *[c for c in others if c != "sample"]]
            row["resample_pairs"], resample_flips = _pair_flips(valid, keys, "sample", tau)
            if row["resample_pairs"]:
                row["resample_flip_rate"] = resample_flips / row["resample_pairs"]
        else:
            row.update(resample_pairs=0, note="one sample per cell: no resampling baseline")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=_FLIP_COLUMNS)
    frame["note"] = fill_notes(frame["note"])
    return frame
