"""Correlations across respondents and how far to trust them: Pearson r (within groups when several
models are pooled) with its t test, bootstrap (BCa) and Fisher intervals, the share of respondents off the
modal score, power, and Benjamini-Hochberg adjusted p values. Used by :mod:`psychometrics.validity.statistics`.

Checked against R (``tests/reference/validity.R``): ``cor.test`` (r, p, Fisher interval), ``lm`` slope
tests for pooled r, ``psych::r.con``, ``boot::boot.ci(type = "bca")`` on the same resamples,
``pwr::pwr.r.test``'s formula and ``p.adjust(method = "BH")``.

References
----------
Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation deduced from a small sample.
Metron, 1, 3-32.
Efron, B. (1987). Better bootstrap confidence intervals. JASA, 82, 171-185.
Davison, A. C., & Hinkley, D. V. (1997). Bootstrap methods and their application. Cambridge University Press.
Cohen, J. (1988). Statistical power analysis for the behavioral sciences (2nd ed.). Erlbaum.
Benjamini, Y., & Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B, 57, 289-300.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd



def centre_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``values`` minus the mean of their group."""
    codes = pd.factorize(np.asarray(groups))[0]
    return values - (np.bincount(codes, values) / np.bincount(codes))[codes]





def correlation(x, y, groups=None) -> dict:
    """Pearson r of complete pairs with its two-sided t test; within groups when ``groups`` is given.

    With groups (models) both variables are centred within group, and the test has :math:`n - k - 1`
    degrees of freedom (the partial correlation given the group). :math:`t = r\\sqrt{df / (1 - r^2)}`.
    Returns ``n``, ``k`` (groups), ``r``, ``df``, ``p``, ``slope`` (of y on x), ``note`` (None values when
    undefined).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(keep.sum())
    out = {"n": n, "k": 1, "r": None, "df": None, "p": None, "slope": None, "note": None}
    k = 1
    if groups is not None:
        groups = np.asarray(groups)[keep]
        k = len(set(groups))
        x, y = centre_within(x, groups), centre_within(y, groups)
    out["k"] = k
    df = n - k - 1
    if n < 3 or df < 1:
        out["note"] = f"too few respondents with both scores ({n}{f' in {k} models' if k > 1 else ''})"
        return out
    sxx, syy = float(((x - x.mean()) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    if sxx <= 1e-12 * max(1.0, float((x**2).sum())) or syy <= 1e-12 * max(1.0, float((y**2).sum())):
        out["note"] = "a score is constant across respondents" + (" within models" if k > 1 else "")
        return out
    from scipy import stats

    sxy = float(((x - x.mean()) * (y - y.mean())).sum())
    r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    p = 0.0 if abs(r) == 1 else float(2 * stats.t.sf(abs(r) * math.sqrt(df / (1 - r * r)), df))
    out.update(r=r, df=df, p=p, slope=sxy / sxx)
    return out


def off_mode(values, groups=None) -> int:
    """Respondents whose score differs from the most common score (of their own group when grouped).

    A correlation over respondents of whom only one or two are off the modal score rests on those one or
    two: its t test and any interval are not to be trusted (see :data:`FEW_OFF_MODE`).
    """
    values = np.asarray(values, float)
    keep = ~np.isnan(values)
    values = np.round(values[keep], 10)
    labels = np.zeros(len(values)) if groups is None else np.asarray(groups)[keep]
    total = 0
    for group in pd.unique(labels):
        part = values[labels == group]
        total += len(part) - int(pd.Series(part).value_counts().iloc[0])
    return total


def few_off_mode_note(x, y, groups=None, names=("self-report", "behaviour")) -> str | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    g = None if groups is None else np.asarray(groups)[keep]
    counts = {names[0]: off_mode(x[keep], g), names[1]: off_mode(y[keep], g)}
    name, fewest = min(counts.items(), key=lambda item: item[1])
    if fewest < FEW_OFF_MODE:
        return (f"r rests on {fewest} respondent(s) off the modal {name} score"
                f"{' (within models)' if groups is not None else ''}")
    return None


#: Resamples with a constant score allowed before the bootstrap reports no interval.
MAX_DEGENERATE_SHARE = 0.01
#: Fewer respondents than this off the modal score of either variable get a note.
FEW_OFF_MODE = 3


def bootstrap_indices(n: int, groups=None, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot x n`` row indices, each row one resample of the respondents with replacement.

    With ``groups`` the resampling is stratified (``boot(strata = groups)``): column j always draws from
    the group of respondent j, so every resample keeps each model's number of personas.
    """
    labels = np.zeros(n) if groups is None else np.asarray(groups)
    out = np.empty((n_boot, n), dtype=np.int64)
    for group in pd.unique(labels):
        rows = np.flatnonzero(labels == group)
        out[:, rows] = rows[rng.integers(0, len(rows), size=(n_boot, len(rows)))]
    return out


def _resampled_r(x: np.ndarray, y: np.ndarray, codes: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """r of every resample (rows of ``indices``), centred within the column groups ``codes``; NaN where a
    resampled variable is constant."""
    scale_x = max(1.0, float(np.max(x * x))) if len(x) else 1.0
    scale_y = max(1.0, float(np.max(y * y))) if len(y) else 1.0
    blocks = [np.flatnonzero(codes == c) for c in np.unique(codes)]
    values = []
    for start in range(0, len(indices), 500):
        pick = indices[start:start + 500]
        xs, ys = x[pick], y[pick]
        for cols in blocks:
            xs[:, cols] -= xs[:, cols].mean(axis=1, keepdims=True)
            ys[:, cols] -= ys[:, cols].mean(axis=1, keepdims=True)
        sxx, syy = (xs * xs).sum(axis=1), (ys * ys).sum(axis=1)
        tiny = 1e-20 * indices.shape[1]
        ok = (sxx > tiny * scale_x) & (syy > tiny * scale_y)
        with np.errstate(invalid="ignore", divide="ignore"):
            values.append(np.where(ok, (xs * ys).sum(axis=1) / np.sqrt(sxx * syy), np.nan))
    return np.concatenate(values) if values else np.array([])


def _normal_interpolation(sorted_t: np.ndarray, alpha: float) -> tuple[float, bool]:
    """``boot:::norm.inter``: the alpha quantile of the replicates, interpolated between order statistics
    on the normal quantile scale; also whether an extreme order statistic was needed."""
    from scipy.stats import norm

    count = len(sorted_t)
    rank = (count + 1) * alpha
    extreme = not (1 < rank < count)
    k = int(math.floor(rank))
    if k == rank and 1 <= k <= count:
        return float(sorted_t[k - 1]), extreme
    if k <= 0:
        return float(sorted_t[0]), extreme
    if k >= count:
        return float(sorted_t[-1]), extreme
    z, z_k, z_k1 = norm.ppf(alpha), norm.ppf(k / (count + 1)), norm.ppf((k + 1) / (count + 1))
    low, high = sorted_t[k - 1], sorted_t[k]
    return float(low + (z - z_k) / (z_k1 - z_k) * (high - low)), extreme


def _degenerate_note(failed: int, n_boot: int) -> str | None:
    if failed > MAX_DEGENERATE_SHARE * n_boot:
        return (f"no CI: {failed} of {n_boot} bootstrap resamples ({failed / n_boot:.0%}) had a constant score, "
                "so r depends on a few respondents")
    return None


def fisher_interval(r: float, df: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Fisher's (1921) z interval :math:`\\tanh(\\operatorname{atanh} r \\pm z_{1-\\alpha/2} / \\sqrt{df - 1})`.

    ``df`` is the test's degrees of freedom: :math:`n - 2` for one model, giving ``cor.test``'s interval
    (:math:`1/\\sqrt{n-3}`), and :math:`n - k - 1` pooled over k models, the standard error
    :math:`1/\\sqrt{n - k - 2}` of a partial correlation given k - 1 model indicators.
    """
    from scipy.stats import norm

    if r is None or df is None or df < 2:
        return None, None
    if abs(r) >= 1:
        return float(r), float(r)
    half = float(norm.ppf((1 + confidence) / 2)) / math.sqrt(df - 1)
    z = math.atanh(r)
    return math.tanh(z - half), math.tanh(z + half)


def r_interval(x, y, groups=None, *, method: str = "bca", n_boot: int = 2000, rng: np.random.Generator,
               confidence: float = 0.95) -> dict:
    """A confidence interval of r: the BCa bootstrap (default) or Fisher's z, both behind a bootstrap check.

    Respondents are resampled (within model when pooled; :func:`bootstrap_indices`). When more than
    :data:`MAX_DEGENERATE_SHARE` of the resamples leave a score constant, r depends on a few respondents
    (the old percentile interval dropped those resamples and so conditioned on the varying respondents
    being drawn, giving intervals that excluded 0 at p = .5); then no interval is reported, with a note.
    Otherwise ``method="fisher"`` gives :func:`fisher_interval` at the test's df, ``method="bca"`` the
    :func:`bca_interval` of the same resamples. Returns ``low``, ``high``, ``failed``, ``note``.

    :func:`validity_pairs` reports both: the bootstrap interval (``ci_low``/``ci_high``), which assumes
    nothing about the scores' distribution (choice shares and counts are far from normal), and Fisher's
    (``fisher_low``/``fisher_high``), which agrees with the t test that decides "confirmed" (it excludes 0
    exactly when p < .05 but for a sliver at the boundary). At the sample sizes of a persona study they can
    disagree: in simulations for this module (n = 17 and 30; bivariate normal, 4-variant choice shares,
    lognormal scores) Fisher's interval covered 85-95% and agreed with the t test in 99-100% of data sets;
    BCa covered 88-95% and agreed in 85-93%, and found no interval in up to 13% (extreme order statistics).
    """
    if method not in ("fisher", "bca"):
        raise ValueError(f"confidence interval method '{method}': choose fisher or bca")
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    labels = None if groups is None else np.asarray(groups)[keep]
    indices = bootstrap_indices(len(x), labels, n_boot=n_boot, rng=rng)
    if method == "bca":
        return bca_interval(x, y, labels, indices=indices, confidence=confidence)
    codes = pd.factorize(np.zeros(len(x)) if labels is None else labels)[0]
    failed = int(np.isnan(_resampled_r(x, y, codes, indices)).sum())
    out = {"low": None, "high": None, "failed": failed, "note": _degenerate_note(failed, n_boot)}
    if out["note"] is None:
        stats = correlation(x, y, labels)
        out["low"], out["high"] = fisher_interval(stats["r"], stats["df"], confidence)
    return out


def bca_interval(x, y, groups=None, *, indices: np.ndarray, confidence: float = 0.95) -> dict:
    """BCa bootstrap interval of r from given resamples (rows of ``indices`` into the complete pairs).

    With :math:`\\hat r` the observed r, :math:`r^*_b` the resampled ones (resamples with a constant score
    dropped), bias correction :math:`z_0 = \\Phi^{-1}(\\#\\{r^*_b < \\hat r\\} / B)` and acceleration
    :math:`a = \\sum L_i^3 / (6 (\\sum L_i^2)^{3/2})` from the jackknife influence values
    :math:`L_i = (n_{g(i)} - 1)(\\hat r - \\hat r_{(-i)})` (leaving respondent i out, re-centring within
    groups), the limits are the replicates' quantiles at
    :math:`\\Phi(z_0 + (z_0 + z_\\alpha) / (1 - a (z_0 + z_\\alpha)))`, interpolated on the normal scale
    (Efron, 1987; Davison & Hinkley, 1997, 5.3.2). This is ``boot::boot.ci(type = "bca", L =
    empinf(type = "jack"))`` step by step.

    No interval (with a note) when more than :data:`MAX_DEGENERATE_SHARE` of the resamples have a
    constant score (dropping them would condition on the few varying respondents being drawn), when a
    jackknife value is undefined (one respondent carries the variance), when :math:`z_0` is infinite or
    when a limit needs an extreme order statistic. Returns ``low``, ``high``, ``failed``, ``note``.
    """
    from scipy.stats import norm

    x, y = np.asarray(x, float), np.asarray(y, float)
    labels = np.zeros(len(x)) if groups is None else np.asarray(groups)
    codes = pd.factorize(labels)[0]
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 2 or indices.shape[1] != len(x) or not (codes[indices] == codes[None, :]).all():
        raise ValueError("indices: one row per resample, one column per respondent, drawn within its group")
    out = {"low": None, "high": None, "failed": 0, "note": None}
    draws = _resampled_r(x, y, codes, indices)
    failed = int(np.isnan(draws).sum())
    out["failed"] = failed
    out["note"] = _degenerate_note(failed, len(draws))
    if out["note"]:
        return out
    observed = _resampled_r(x, y, codes, np.arange(len(x))[None, :])[0]
    t = np.sort(draws[np.isfinite(draws)])
    below = float(np.mean(t < observed))
    if not 0 < below < 1:
        out["note"] = "no CI: every bootstrap r lies on one side of the observed r"
        return out
    z0 = float(norm.ppf(below))
    influence = np.empty(len(x))
    for i in range(len(x)):
        rest = np.delete(np.arange(len(x)), i)
        left = _resampled_r(x[rest], y[rest], codes[rest], np.arange(len(rest))[None, :])[0]
        influence[i] = (np.sum(codes == codes[i]) - 1) * (observed - left)
    if not np.isfinite(influence).all() or float((influence**2).sum()) <= 0:
        out["note"] = "no CI: leaving one respondent out makes a score constant (jackknife undefined)"
        return out
    a = float((influence**3).sum() / (6 * (influence**2).sum() ** 1.5))
    limits, extreme = [], False
    for tail in ((1 - confidence) / 2, (1 + confidence) / 2):
        z = norm.ppf(tail)
        value, at_edge = _normal_interpolation(t, float(norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))))
        limits.append(value)
        extreme |= at_edge
    if extreme:
        out["note"] = "no CI: a BCa limit falls on an extreme bootstrap replicate (too few resamples or a skewed r)"
        return out
    out.update(low=limits[0], high=limits[1])
    return out


def power_r(df: int | None, rho: float = 0.3, alpha: float = 0.05) -> float | None:
    """Approximate power of the two-sided t test of r = 0 at level ``alpha`` when the true r is ``rho``.

    With :math:`n' = df + 2` (n for one model; n - k + 1 pooled over k models), critical
    :math:`r_c = t_c / \\sqrt{t_c^2 + df}`, :math:`z_r = \\operatorname{atanh}\\rho + \\rho / (2(n' - 1))`:

    .. math:: 1 - \\beta = \\Phi((z_r - \\operatorname{atanh} r_c)\\sqrt{n' - 3})
                          + \\Phi((-z_r - \\operatorname{atanh} r_c)\\sqrt{n' - 3})

    (Cohen, 1988, ch. 3; the formula of ``pwr::pwr.r.test``). Unadjusted: the BH correction over several
    declared pairs lowers it further. None when :math:`df < 2`.
    """
    from scipy import stats

    if df is None or df < 2:
        return None
    n_eff = df + 2
    t = float(stats.t.isf(alpha / 2, df))
    critical = math.atanh(math.sqrt(t * t / (t * t + df)))
    z = math.atanh(rho) + rho / (2 * (n_eff - 1))
    root = math.sqrt(n_eff - 3)
    return float(stats.norm.cdf((z - critical) * root) + stats.norm.cdf((-z - critical) * root))


def bh_adjust(p: Iterable[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p values (``p.adjust(method = "BH")``); None stays None.

    :math:`\\tilde p_{(i)} = \\min_{j \\ge i} \\min(1, m\\,p_{(j)} / j)` for the m non-missing p values sorted.
    """
    values = list(p)
    present = [i for i, v in enumerate(values) if v is not None and not (isinstance(v, float) and math.isnan(v))]
    out: list[float | None] = [None] * len(values)
    m = len(present)
    order = sorted(present, key=lambda i: values[i], reverse=True)
    running = 1.0
    for rank, i in zip(range(m, 0, -1), order):
        running = min(running, values[i] * m / rank)
        out[i] = running
    return out
