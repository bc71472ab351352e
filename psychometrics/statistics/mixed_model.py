"""A linear mixed model with one random intercept, fitted by profiled REML as ``lme4::lmer`` does.

Written here rather than taken from statsmodels' ``MixedLM``: where the group variance is small, ``MixedLM``
0.15 stops short of the REML optimum and still reports convergence (psychTools' spi, agreeableness ~ age +
(1 | parent's education): group variance 1.016 where ``lmer`` finds 0.00087, REML criterion 27.7 worse;
``tests/test_library_crosscheck.py``), and at the boundary of the validity reference data it does not
converge (0.0009 where ``lmer`` finds 0, one standard error NaN). The results here equal ``lmer``'s to its
optimiser's tolerance (about 1e-8; ``tests/reference/validity.R``, ``tests/reference/library_crosscheck.R``).

References
----------
Bates, D., Maechler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects models using lme4.
Journal of Statistical Software, 67(1), 1-48.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def random_intercept_reml(y, x, groups) -> dict:
    """REML fit of ``y = X beta + u_group + e`` with one random intercept, as ``lme4::lmer(REML = TRUE)``.

    With :math:`\\lambda = \\tau^2/\\sigma^2` and :math:`V_g = I + \\lambda J` for a group of size
    :math:`n_g`, :math:`A = \\sum_g X_g' V_g^{-1} X_g`, :math:`\\hat\\beta = A^{-1} \\sum_g X_g' V_g^{-1} y_g` and
    :math:`RSS = \\sum_g (y_g - X_g\\hat\\beta)' V_g^{-1} (y_g - X_g\\hat\\beta)`, the profiled REML deviance
    :math:`(n-p)\\log RSS + \\sum_g \\log(1 + n_g\\lambda) + \\log|A|` is minimised over
    :math:`\\theta = \\sqrt\\lambda \\ge 0` (lme4's parameter). Then :math:`\\hat\\sigma^2 = RSS/(n-p)`,
    :math:`\\hat\\tau^2 = \\lambda\\hat\\sigma^2` and :math:`\\operatorname{cov}(\\hat\\beta) = \\hat\\sigma^2 A^{-1}`.
    The deviance is scanned on a grid of :math:`\\theta` (0 and 1e-4..100), refined by Brent's method, and
    polished to the root of its analytic derivative in :math:`\\lambda` (stable to machine precision).
    Returns ``beta``, ``se``, ``residual_variance``, ``group_variance``, ``theta``, ``reml_criterion``.
    """
    from scipy.optimize import minimize_scalar

    y, x = np.asarray(y, float), np.asarray(x, float)
    n, p = x.shape
    parts = []
    for g in pd.unique(np.asarray(groups)):
        rows = np.asarray(groups) == g
        xg, yg = x[rows], y[rows]
        parts.append((int(rows.sum()), xg.T @ xg, xg.T @ yg, float(yg @ yg), xg.sum(axis=0), float(yg.sum())))

    def solve(theta: float):
        lam = theta * theta
        a, b, yy, logdet = np.zeros((p, p)), np.zeros(p), 0.0, 0.0
        for size, xx, xy, y2, xs, ys in parts:
            shrink = lam / (1 + size * lam)
            a += xx - shrink * np.outer(xs, xs)
            b += xy - shrink * xs * ys
            yy += y2 - shrink * ys * ys
            logdet += math.log1p(size * lam)
        beta = np.linalg.solve(a, b)
        rss = max(yy - float(b @ beta), 1e-300)
        deviance = (n - p) * math.log(rss) + logdet + float(np.linalg.slogdet(a)[1])
        return deviance, beta, rss, a

    def slope(lam: float) -> float:
        # d deviance / d lambda: with s_g = lambda/(1 + n_g lambda), s_g' = 1/(1 + n_g lambda)^2,
        # dRSS = -sum_g s_g' (ys_g - xs_g'beta)^2, dA = -sum_g s_g' xs_g xs_g', d log|A| = tr(A^-1 dA)
        _, beta, rss, a = solve(math.sqrt(lam))
        d_rss, d_a, d_logdet = 0.0, np.zeros((p, p)), 0.0
        for size, _xx, _xy, _y2, xs, ys in parts:
            ds = 1.0 / (1 + size * lam) ** 2
            d_rss -= ds * (ys - float(xs @ beta)) ** 2
            d_a -= ds * np.outer(xs, xs)
            d_logdet += size / (1 + size * lam)
        return (n - p) * d_rss / rss + d_logdet + float(np.trace(np.linalg.solve(a, d_a)))

    grid = np.concatenate([[0.0], np.logspace(-4, 2, 61)])
    values = [solve(t)[0] for t in grid]
    best = int(np.argmin(values))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    theta = float(grid[best])
    if high > low:
        found = minimize_scalar(lambda t: solve(t)[0], bounds=(low, high), method="bounded",
                                options={"xatol": 1e-12, "maxiter": 500})
        if found.fun < values[best]:
            theta = float(found.x)
    if theta > 0 and values[0] <= solve(theta)[0] + 1e-10:  # flat at the boundary: lme4 reports it singular
        theta = 0.0
    if theta > 0:
        theta = _polish(theta, low, high, slope)
    deviance, beta, rss, a = solve(theta)
    sigma2 = rss / (n - p)
    criterion = deviance + (n - p) * (1 + math.log(2 * math.pi / (n - p)))  # lme4's REMLcrit
    return {"beta": beta, "se": np.sqrt(np.diag(sigma2 * np.linalg.inv(a))), "residual_variance": sigma2,
            "group_variance": theta * theta * sigma2, "theta": theta, "reml_criterion": criterion}


def _polish(theta: float, low: float, high: float, slope) -> float:
    """The root of the deviance's derivative near ``theta``, where Brent's minimisation left it.

    A minimiser locates an optimum only to about the square root of machine precision (the deviance is
    flat there: its change is second order in the step), so its result moves by ~1e-8 with the BLAS
    kernel's rounding; the derivative crosses zero at first order, so its root is found to machine
    precision and the fit is the same on every CPU. Without a sign change in the bracket the minimiser's
    value is kept."""
    from scipy.optimize import brentq

    lam = theta * theta
    for lo, hi in ((lam * (1 - 1e-4) ** 2, lam * (1 + 1e-4) ** 2), (low * low, high * high)):
        try:
            f_lo, f_hi = slope(lo), slope(hi)
        except (np.linalg.LinAlgError, ZeroDivisionError):
            return theta
        if f_lo < 0 < f_hi:
            root = brentq(slope, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=200)
            return math.sqrt(root)
    return theta
