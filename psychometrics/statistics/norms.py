"""Scale scores against human norms, and uncertainty of a mean score over design conditions.

For a model's scores on one scale (one score per respondent, i.e. per design cell) and a norm group
with mean :math:`\\mu`, SD :math:`\\sigma` and size :math:`n_2` (possibly unknown):

* z of the model's mean :math:`\\bar x`: :math:`z = (\\bar x - \\mu) / \\sigma`; :math:`T = 50 + 10 z`;
  percentile :math:`100\\,\\Phi(z)`, the share of the norm group below the model if scores are normal.
* Hedges' g (when the norm group's size is known and the model has at least two scored cells):

  .. math:: g = J\\,\\frac{\\bar x - \\mu}{s_p},\\quad
            s_p = \\sqrt{\\frac{(n_1 - 1)s_1^2 + (n_2 - 1)\\sigma^2}{n_1 + n_2 - 2}},\\quad
            J \\approx 1 - \\frac{3}{4(n_1 + n_2) - 9}

  using the exact small-sample correction :math:`J` and a confidence interval from the noncentral t
  distribution, as R's ``effectsize::hedges_g`` computes them (see :func:`hedges_g`).
* When the norm group's size is unknown (Johnson's IPIP-NEO norms give none), the norm is treated as a
  population: :math:`d = (\\bar x - \\mu)/\\sigma` with a CI from the sampling error of :math:`\\bar x`
  alone, :math:`d \\pm t_{.975, n_1-1}\\, s_1 / (\\sigma \\sqrt{n_1})`. The ``effect`` column says which.

The spread of a model's scores over design cells is not sampling error in the usual sense: it is how
much the score depends on option order, wording, persona and sampling. ``bootstrap_mean_ci`` gives a
percentile bootstrap interval of the mean over cells (resampling cells, seeded), which is the uncertainty a
reader should attach to "the model's score" under this design.

References
----------
Hedges, L. V., & Olkin, I. (1985). Statistical methods for meta-analysis. Academic Press.
Efron, B., & Tibshirani, R. J. (1993). An introduction to the bootstrap. Chapman & Hall.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class NormComparison:
    group: str
    norm_mean: float
    norm_sd: float
    norm_n: int | None
    model_mean: float
    model_sd: float | None
    model_n: int
    z: float
    t_score: float
    percentile: float
    effect: str  # "hedges_g" or "d_vs_norm"
    effect_size: float
    ci_low: float | None
    ci_high: float | None
    note: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _noncentral_t_bounds(t: float, df: float, confidence: float) -> tuple[float, float]:
    """Noncentrality parameters whose t distributions put ``t`` at the upper and lower tail quantiles."""
    from scipy import optimize, stats

    tail = (1 - confidence) / 2

    def solve(target: float) -> float:
        f = lambda ncp: stats.nct.cdf(t, df, ncp) - target  # noqa: E731 - decreasing in ncp
        low, high = t - 10 - abs(t), t + 10 + abs(t)
        while f(low) < 0:
            low -= 10 + abs(low)
        while f(high) > 0:
            high += 10 + abs(high)
        return optimize.brentq(f, low, high, xtol=1e-12)

    return solve(1 - tail), solve(tail)


def hedges_g(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int, confidence: float = 0.95):
    r"""Hedges' g of group 1 vs group 2 from summary statistics, with its noncentral-t CI.

    :math:`g = J\,d`, :math:`d = (m_1 - m_2)/s_p`, with the exact correction
    :math:`J = \Gamma(\nu/2) / (\sqrt{\nu/2}\,\Gamma((\nu-1)/2))`, :math:`\nu = n_1 + n_2 - 2`; the CI
    inverts the noncentral t distribution of :math:`t = d / \sqrt{1/n_1 + 1/n_2}` and is scaled by
    :math:`J` too. Matches R ``effectsize::hedges_g(x, y)`` (pooled SD).
    """
    df = n1 + n2 - 2
    pooled = math.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / df)
    hn = 1 / n1 + 1 / n2
    d = (m1 - m2) / pooled
    correction = math.exp(math.lgamma(df / 2) - math.log(math.sqrt(df / 2)) - math.lgamma((df - 1) / 2))
    try:
        low, high = _noncentral_t_bounds(d / math.sqrt(hn), df, confidence)
        low, high = low * math.sqrt(hn), high * math.sqrt(hn)
    except (ValueError, RuntimeError):
        # The noncentral t cannot be evaluated this far out (|t| in the hundreds): use the
        # large-sample normal interval of Hedges & Olkin (1985, eq. 5.15) instead.
        from scipy import stats

        se = math.sqrt(hn + d * d / (2 * (n1 + n2)))
        half = stats.norm.ppf(0.5 + confidence / 2) * se
        low, high = d - half, d + half
    return correction * d, correction * low, correction * high


def compare_to_norm(
    scores: np.ndarray, group: str, norm_mean: float, norm_sd: float, norm_n: int | None, confidence: float = 0.95
) -> NormComparison | None:
    """Compare a model's scores on one scale (one per design cell) with one norm group."""
    from scipy import stats

    values = np.asarray([s for s in scores if s is not None and not math.isnan(s)], dtype=float)
    if values.size == 0:
        return None
    n1 = int(values.size)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if n1 > 1 else None
    z = (mean - norm_mean) / norm_sd
    base = dict(
        group=group, norm_mean=norm_mean, norm_sd=norm_sd, norm_n=norm_n, model_mean=mean, model_sd=sd,
        model_n=n1, z=z, t_score=50 + 10 * z, percentile=100 * float(stats.norm.cdf(z)),
    )
    if norm_n and n1 > 1 and sd is not None:
        g, low, high = hedges_g(mean, sd, n1, norm_mean, norm_sd, norm_n, confidence)
        return NormComparison(**base, effect="hedges_g", effect_size=g, ci_low=low, ci_high=high)
    if n1 > 1 and sd is not None:
        half = stats.t.ppf(0.5 + confidence / 2, n1 - 1) * sd / (norm_sd * math.sqrt(n1))
        note = "norm group size unknown: effect is (mean - norm mean) / norm SD; CI from the model's cells only"
        return NormComparison(**base, effect="d_vs_norm", effect_size=z, ci_low=z - half, ci_high=z + half, note=note)
    note = "one scored cell: no interval (vary the design or add samples)"
    return NormComparison(**base, effect="d_vs_norm", effect_size=z, ci_low=None, ci_high=None, note=note)


def bootstrap_mean_ci(values: np.ndarray, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0):
    """Percentile bootstrap CI of the mean over design cells; ``None`` bounds for fewer than 2 cells."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size < 2:
        return None, None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(reps, values.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def t_mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float | None, float | None]:
    r"""Student-t confidence interval of a mean over independent units (respondents).

    :math:`\bar x \pm t_{(1+c)/2,\,n-1}\, s / \sqrt{n}`, as R's ``t.test(x)$conf.int``. Missing values
    are skipped; ``None`` bounds for fewer than 2 values (no spread to estimate), and the mean itself
    for values that do not vary (a zero-width interval, as R gives)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = values.size
    if n < 2:
        return None, None
    mean = float(values.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean - half, mean + half
