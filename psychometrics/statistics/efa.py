"""Exploratory factor analysis matching R's ``psych::fa``: extraction, rotation, ordering and fit.

:func:`efa` is ``psych::fa(r, nfactors, fm = "minres" | "ml", rotate = "oblimin" | "varimax" | "promax" |
"none")`` of psych 2.2.9, re-implemented in numpy/scipy step by step so that results agree with R to
rounding error rather than merely to the optimiser's tolerance. The correlation matrix comes from
:mod:`psychometrics.statistics.item_correlations`, the rotations from
:mod:`psychometrics.statistics.rotation`, the optimiser from :mod:`psychometrics.statistics.lbfgsb`;
:mod:`psychometrics.statistics.omega` builds on :func:`fit_efa`.

Factor extraction (``psych:::fac``)
-----------------------------------
The item correlation matrix :math:`R` (Pearson, pairwise-complete as ``cor(x, use = "pairwise")``)
is modelled as :math:`R = \\Lambda\\Lambda^\\top + \\Psi` with :math:`p` items, :math:`k` factors and
diagonal uniquenesses :math:`\\Psi`. Both methods optimise over :math:`\\psi` only, as psych does,
obtaining :math:`\\Lambda` from an eigendecomposition at each step:

* Start values :math:`\\psi^{(0)}_i = 1 - \\mathrm{SMC}_i`, with the squared multiple correlation
  :math:`\\mathrm{SMC}_i = 1 - 1/(R^{+})_{ii}` from the SVD pseudo-inverse (``psych::smc``, clamped to
  [0, 1]).
* ``minres`` (``fm = "minres"``): :math:`\\Lambda = V_k D_k^{1/2}` from the :math:`k` largest eigenpairs
  of :math:`R - \\Psi`; the objective is the sum of squared off-diagonal residuals
  :math:`\\sum_{i<j} (R - \\Lambda\\Lambda^\\top)_{ij}^2` and psych's gradient is
  :math:`\\partial/\\partial\\psi_i = (\\Lambda\\Lambda^\\top)_{ii} + \\psi_i - 1`, the gradient of the
  full unweighted least-squares criterion :math:`\\tfrac12\\lVert R - \\Psi - \\Lambda\\Lambda^\\top
  \\rVert_F^2`. Both vanish together at an interior solution.
* ``ml`` (``fm = "ml"``, as ``stats::factanal``): with :math:`S^* = \\Psi^{-1/2} R \\Psi^{-1/2}` and
  its eigenvalues :math:`e_1 \\ge \\dots \\ge e_p`, minimise
  :math:`F(\\psi) = -\\sum_{j>k} (\\log e_j - e_j) - k + p`, gradient
  :math:`((\\Lambda\\Lambda^\\top + \\Psi - R)_{ii}) / \\psi_i^2` with
  :math:`\\Lambda = \\Psi^{1/2} V_k \\max(D_k - 1, 0)^{1/2}`. Only the :math:`k` leading eigenpairs
  are computed: :math:`\\sum_{j>k}\\log e_j = \\log|R| - \\sum_i \\log\\psi_i - \\sum_{j\\le k}\\log e_j`
  and :math:`\\sum_{j>k} e_j = \\sum_i R_{ii}/\\psi_i - \\sum_{j\\le k} e_j`.
* Optimiser: L-BFGS-B as R's ``optim(method = "L-BFGS-B", lower = 0.005, upper = max(SMC, 1),
  control = list(parscale = rep(0.01, p)))`` runs it: parameters scaled by 1/0.01, 5 correction pairs,
  ``factr = 1e7`` (stop when the relative reduction of the objective is below :math:`10^7\\epsilon`),
  ``pgtol = 0``, at most 100 iterations (R stops after the 101st). R ships version 2.3 of L-BFGS-B,
  scipy version 3.0, and the two take different paths when a uniqueness reaches its bound, so psytest
  carries version 2.3 (:mod:`psychometrics.statistics.lbfgsb`, which says why), which reproduces R's
  iterates. Heywood cases are handled as psych does: a uniqueness cannot go below the 0.005 bound
  (reported in ``EFAResult.heywood`` and ``note``).

Per step this costs one partial eigendecomposition (the :math:`k` largest eigenpairs, LAPACK
``dsyevx``), so a 300-item, 5-factor analysis takes a fraction of a second.

Rotation and ordering
---------------------
The extracted loadings are rotated (:func:`psychometrics.statistics.rotation.rotate`: oblimin, varimax,
promax or none). Then, as ``psych:::fac``: each factor's loadings are made to sum positive (before and
after rotation), and factors are ordered by variance explained, :math:`\\mathrm{diag}(\\Phi\\Lambda^\\top
\\Lambda)` (decreasing), with :math:`\\Phi` re-ordered and re-signed with them. Column names keep psych's
convention: ``MR1..MRk`` / ``ML1..MLk`` are assigned before sorting, so a sorted solution reads e.g.
``MR2, MR1, MR3``, exactly as in R.

Fit statistics (``psych::fa.stats``)
------------------------------------
With the model :math:`\\hat R = \\Lambda\\Phi\\Lambda^\\top` and :math:`\\mathrm{dof} = p(p-1)/2 - pk +
k(k-1)/2`: the objective :math:`F = \\mathrm{tr}(\\hat R^{-1} R) - \\log|\\hat R^{-1} R| - p` (diagonal of
:math:`\\hat R` set to 1; both matrices smoothed with ``cor.smooth`` if not positive definite); the
chi-square :math:`\\chi^2 = F\\,(n - 1 - (2p + 5)/6 - 2k/3)`; RMSEA
:math:`\\sqrt{\\max(\\chi^2/(\\mathrm{dof}\\,n) - 1/(n-1), 0)}` with a 90% interval from the noncentral
chi-square; Tucker-Lewis index; BIC :math:`\\chi^2 - \\mathrm{dof}\\log n`; the root mean square residual
RMSR :math:`\\sqrt{\\sum_{i\\ne j} (R - \\hat R)_{ij}^2 / (p(p-1))}` and the empirical chi-square
:math:`n \\sum_{i \\ne j} (R - \\hat R)_{ij}^2` (psych's ``chi``; with missing data each residual is
weighted by its pairwise count and the RMSR uses their harmonic mean). psych reports all of these for
``minres`` too.

Agreement with R
----------------
``tests/reference/factor_analysis.R`` writes psych's results for the bfi (2,436 x 25, keyed), a simulated
(600 x 20) data set, a copy of the bfi with missing cells, Heywood cases and a sample smaller than the
number of items; ``tests/test_factor_analysis.py`` checks them. Because every iterative step is
replicated (start values, L-BFGS-B 2.3 with R's settings, GPFoblq and varimax with their stopping rules),
agreement is at the level of floating-point rounding: about 1e-12 or better for loadings, Phi, structure
and communalities (Heywood cases included), and 1e-12 relative for the fit statistics (1e-8 for the
RMSEA interval, see 5. below); the same holds for a simulated 1,250 x 300 data set. Each of R's steps
alone is converged only loosely: its uniquenesses are about 4e-6 from the exact minimum for the bfi
(``factr = 1e7``) and GPFoblq stops at a gradient norm of 1e-5, so an implementation that converged each
step fully would differ from psych by 1e-6 to 1e-5 (1e-4 in Heywood cases) however carefully it
computed. The tests use 1e-8 (absolute) for loadings, Phi and communalities. With fewer respondents than
items the fit statistics depend on the logarithm of a smoothed, nearly singular determinant and agree to
about 1e-7 relative.

Differences from R
------------------
1. Degenerate input raises :class:`ValueError` with a one-line message saying
   what to do, where psych stops with a multi-line error or warns and continues:

   * constant items (and items with fewer than two responses): psych's correlation matrix has NAs and
     ``fa`` stops. We raise, naming the items, unless ``drop_constant=True``, which drops them and says
     so in ``note`` (``dropped_items`` lists them);
   * more factors than the items can identify (degrees of freedom < 0): psych fits anyway and warns; we
     raise and say how many factors the items allow;
   * ``method="ml"`` on a singular correlation matrix (fewer respondents than items, linearly dependent
     items; "singular" means a smallest eigenvalue below :math:`10\\,p\\,\\epsilon\\,\\lambda_{max}`): R's ``optim``
     fails ("L-BFGS-B needs finite values of 'fn'"); we raise and suggest ``minres``;
   * missing values in a correlation matrix, non-numeric or infinite data, fewer than 2 respondents.

2. Situations where psych warns and continues return a result with a ``note`` (psych's numbers
   unchanged): fewer respondents than items or a singular correlation matrix with ``minres`` (the fit
   statistics then use psych's smoothed matrix; if its determinant underflows, the objective is the sum
   of squared residuals, as in psych), Heywood cases (a uniqueness at the 0.005 bound) and ultra-Heywood
   cases (communality above 1), the optimiser or the rotation not converging (psych uses the last
   iterate silently or with a warning; so do we), oblimin failing (psych then uses Promax, so do we).

3. ``phi`` is the identity matrix for orthogonal and unrotated solutions (psych returns ``NULL``), so
   ``structure = loadings @ phi`` always holds.

4. Not computed (not needed by psytest): factor scores and their weights/R^2, bootstrap confidence
   intervals (``n.iter``), methods other than minres and ML, rotations other than the four above.

5. The RMSEA interval solves for the noncentrality parameter to machine precision (``brentq``); R's
   ``uniroot`` stops at an absolute tolerance of about 6e-5 in that parameter, so R's bounds differ from
   ours by up to about 1e-8 (relative).

References
----------
Revelle, W. (2022). psych: Procedures for Psychological, Psychometric, and Personality Research, version
2.2.9. https://CRAN.R-project.org/package=psych
Harman, H. H., & Jones, W. H. (1966). Factor analysis by minimizing residuals (minres). Psychometrika,
31, 351-368.
Byrd, R. H., Lu, P., Nocedal, J., & Zhu, C. (1995). A limited memory algorithm for bound constrained
optimization. SIAM Journal on Scientific Computing, 16, 1190-1208.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.optimize
import scipy.stats

from psychometrics.statistics.item_correlations import ItemCorrelations, cor_smooth, item_correlations, names_list, smc
from psychometrics.statistics.lbfgsb import minimize_lbfgsb
from psychometrics.statistics.rotation import ROTATIONS, rotate

__all__ = ["METHODS", "EFAFit", "EFAResult", "check_n_factors", "efa", "fit_efa"]

METHODS = ("minres", "ml")

_EPS = float(np.finfo(float).eps)
# psych:::fac's optim() settings.
_LOWER = 0.005
_PARSCALE = 0.01
_FACTR = 1e7
_LMM = 5
_MAXIT = 100


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EFAFit:
    """Fit statistics as ``psych::fa.stats`` reports them (``None`` where psych gives ``NA``).

    Attributes
    ----------
    dof : float
        Degrees of freedom :math:`p(p-1)/2 - pk + k(k-1)/2` (psych ``dof``).
    objective : float or None
        :math:`\\mathrm{tr}(\\hat R^{-1}R) - \\log|\\hat R^{-1}R| - p` (psych ``objective``).
    chi_square, p_value : float or None
        Likelihood-ratio chi-square with Bartlett's correction (psych ``STATISTIC``, ``PVAL``); needs
        ``n_obs``; ``p_value`` needs dof > 0.
    rmsea, rmsea_lower, rmsea_upper : float or None
        RMSEA and its 90% interval (psych ``RMSEA``).
    tli : float or None
        Tucker-Lewis index (psych ``TLI``).
    bic : float or None
        :math:`\\chi^2 - \\mathrm{dof}\\log n` (psych ``BIC``).
    null_chi_square, null_dof, null_objective : float or None
        The independence model (psych ``null.chisq``, ``null.dof``, ``null.model``).
    rmsr : float
        Root mean square of the off-diagonal residuals (psych ``rms``).
    crms : float or None
        RMSR corrected for degrees of freedom, :math:`\\sqrt{\\sum_{i \\ne j} r_{ij}^2 / (2\\,\\mathrm{dof})}`
        (psych ``crms``).
    empirical_chi_square, empirical_p_value : float or None
        :math:`n \\sum_{i \\ne j} r_{ij}^2` weighted by pairwise counts (psych ``chi``, ``EPVAL``).
    fit, fit_off : float
        :math:`1 - \\sum r^2 / \\sum R^2` over all cells and over off-diagonal cells (psych ``fit``,
        ``fit.off``).
    n_obs : int or None
        Number of respondents (rows), as psych counts them.
    """

    dof: float
    objective: float | None
    chi_square: float | None
    p_value: float | None
    rmsea: float | None
    rmsea_lower: float | None
    rmsea_upper: float | None
    tli: float | None
    bic: float | None
    null_chi_square: float | None
    null_dof: float
    null_objective: float | None
    rmsr: float
    crms: float | None
    empirical_chi_square: float | None
    empirical_p_value: float | None
    fit: float
    fit_off: float
    n_obs: int | None


@dataclass(frozen=True, repr=False)
class EFAResult:
    """An exploratory factor analysis (``psych::fa``).

    Attributes
    ----------
    loadings : DataFrame
        Pattern loadings, items x factors, sorted and signed as psych does (psych ``loadings``).
    phi : DataFrame
        Factor correlations (psych ``Phi``; the identity for orthogonal or unrotated solutions).
    structure : DataFrame
        Structure matrix :math:`\\Lambda\\Phi` (psych ``Structure``).
    communalities : Series
        :math:`h^2 = \\mathrm{diag}(\\Lambda\\Lambda^\\top)` of the extracted solution (psych
        ``communality``, printed as ``h2``).
    uniquenesses : Series
        :math:`u^2 = 1 - h^2` (psych ``uniquenesses``, ``u2``).
    complexity : Series
        Hofmann's item complexity :math:`(\\sum_j \\lambda_{ij}^2)^2 / \\sum_j \\lambda_{ij}^4` (psych
        ``complexity``).
    variance : DataFrame
        psych ``Vaccounted``: rows ``SS loadings`` (:math:`\\mathrm{diag}(\\Phi\\Lambda^\\top\\Lambda)`),
        ``Proportion Var``, ``Cumulative Var``, ``Proportion Explained``, ``Cumulative Proportion``.
    unrotated : DataFrame
        Extracted loadings before rotation (signed to sum positive; psych's ``fa(rotate = "none")``
        before sorting).
    eigenvalues : ndarray
        Eigenvalues of the correlation matrix (psych ``e.values``).
    fit : EFAFit
        Fit statistics.
    correlation : DataFrame
        The correlation matrix analysed.
    method, rotation : str
    n_factors : int
    n_obs : int or None
    iterations : int
        L-BFGS-B iterations of the extraction.
    converged : bool
        Whether L-BFGS-B stopped on its convergence test (not the iteration limit).
    rotation_converged : bool
        Whether the rotation met its tolerance (True when there is nothing to rotate).
    heywood : tuple of str
        Items whose uniqueness is at psych's lower bound of 0.005 (Heywood cases).
    dropped_items : tuple of str
        Constant items dropped with ``drop_constant=True``.
    note : str or None
        Warnings about this result (one line each, separated by "; ").
    """

    loadings: pd.DataFrame
    phi: pd.DataFrame
    structure: pd.DataFrame
    communalities: pd.Series
    uniquenesses: pd.Series
    complexity: pd.Series
    variance: pd.DataFrame
    unrotated: pd.DataFrame
    eigenvalues: np.ndarray
    fit: EFAFit
    correlation: pd.DataFrame
    method: str
    rotation: str
    n_factors: int
    n_obs: int | None
    iterations: int
    converged: bool
    rotation_converged: bool
    heywood: tuple[str, ...] = ()
    dropped_items: tuple[str, ...] = ()
    note: str | None = None

    def __repr__(self) -> str:
        rmsr = f", rmsr={self.fit.rmsr:.4f}" if self.fit is not None else ""
        return (
            f"EFAResult(method={self.method!r}, rotation={self.rotation!r}, n_factors={self.n_factors}, "
            f"items={self.loadings.shape[0]}, n_obs={self.n_obs}{rmsr}, note={self.note!r})"
        )


# --------------------------------------------------------------------------------------------------
# Degrees of freedom and linear algebra
# --------------------------------------------------------------------------------------------------


def _dof(p: int, k: int) -> float:
    """Degrees of freedom of a k-factor model of p items."""
    return p * (p - 1) / 2 - p * k + k * (k - 1) / 2


def _max_factors(p: int) -> int:
    """The most factors p items can identify."""
    k = 0
    while k + 1 < p and _dof(p, k + 1) >= 0:
        k += 1
    return k


def check_n_factors(n_factors, p: int) -> int:
    """``n_factors`` as an int, if it is a whole number >= 1 that ``p`` items can identify (non-negative
    degrees of freedom :math:`p(p-1)/2 - pk + k(k-1)/2` and :math:`k < p`); else a one-line error that
    says how many factors the items allow."""
    if isinstance(n_factors, bool) or not isinstance(n_factors, (int, np.integer)) or n_factors < 1:
        raise ValueError(f"n_factors must be a whole number >= 1, got {n_factors!r}")
    n_factors = int(n_factors)
    dof = _dof(p, n_factors)
    if dof < 0 or n_factors >= p:
        most = _max_factors(p)
        raise ValueError(
            f"{n_factors} factors are too many for {p} items (the model has {dof:g} degrees of freedom, so it is "
            f"not identified); use at most {most} factor{'s' if most != 1 else ''} or more items"
        )
    return n_factors


def _top_eigh(a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (decreasing) and their eigenvectors of a symmetric matrix."""
    p = a.shape[0]
    w, v = scipy.linalg.eigh(a, subset_by_index=(p - k, p - 1), driver="evx", check_finite=False)
    return w[::-1], v[:, ::-1]


def _log_det_r(x: np.ndarray) -> float:
    """``log(det(x))`` as R computes it: the determinant can underflow to 0 (giving -inf) or be negative (NaN)."""
    sign, logdet = np.linalg.slogdet(x)
    if sign <= 0:
        return -math.inf if sign == 0 else math.nan
    det = math.exp(logdet) if logdet > -745.2 else 0.0
    return math.log(det) if det > 0 else -math.inf


# --------------------------------------------------------------------------------------------------
# Extraction (psych:::fac's fit(), with R's optim L-BFGS-B settings)
# --------------------------------------------------------------------------------------------------


class _SingularMatrix(Exception):
    """The correlation matrix has no positive determinant: no maximum likelihood solution."""


@dataclass
class _Extraction:
    loadings: np.ndarray
    psi: np.ndarray
    iterations: int
    converged: bool
    message: str


def _optim(fun: Callable, start: np.ndarray, upper: float):
    """R's ``optim(start, fn, gr, method = "L-BFGS-B", lower = 0.005, upper, control = list(parscale =
    rep(0.01, p)))``: optimise over ``psi / 0.01`` with gradients scaled by 0.01."""

    def scaled(x):
        f, g = fun(x * _PARSCALE)
        return f, g * _PARSCALE

    p = len(start)
    x, _, iterations, converged, message = minimize_lbfgsb(
        scaled, start / _PARSCALE, np.full(p, _LOWER / _PARSCALE), np.full(p, upper / _PARSCALE),
        m=_LMM, factr=_FACTR, pgtol=0.0, maxit=_MAXIT)
    return x * _PARSCALE, iterations, converged, message


def _extract(r: np.ndarray, k: int, method: str, squared_multiple: np.ndarray) -> _Extraction:
    p = r.shape[0]
    upper = max(float(squared_multiple.max()), 1.0)
    start = np.diag(r) - squared_multiple
    diag_r = np.diag(r).copy()

    if method == "minres":
        lower_tri = np.tril_indices(p, -1)

        def fun(psi):
            s = r.copy()
            s[np.diag_indices(p)] = 1.0 - psi  # fit.residuals: diag(S) <- 1 - Psi (= S - diag(Psi) here)
            w, v = _top_eigh(s, k)
            w_f = np.where(w < _EPS, 100 * _EPS, w)
            lam = v * np.sqrt(w_f)
            resid = s - lam @ lam.T
            f = float(np.sum(resid[lower_tri] ** 2))
            lam_g = v * np.sqrt(np.maximum(w, 0.0))  # FAgr.minres
            g = np.einsum("ij,ij->i", lam_g, lam_g) + psi - diag_r
            return f, g

    else:
        sign, logdet_r = np.linalg.slogdet(r)
        if sign <= 0 or not np.isfinite(logdet_r):
            raise _SingularMatrix  # caught by fit_efa(), which words the message

        def fun(psi):
            sc = 1.0 / np.sqrt(psi)
            sstar = r * sc[:, None] * sc[None, :]
            e, v = _top_eigh(sstar, k)
            if e[-1] <= 0:
                return math.inf, np.zeros_like(psi)
            sum_log_rest = logdet_r - np.sum(np.log(psi)) - np.sum(np.log(e))
            sum_rest = np.sum(diag_r / psi) - np.sum(e)
            f = -(sum_log_rest - sum_rest - k + p)  # FAfn
            load = v * np.sqrt(np.maximum(e - 1.0, 0.0))
            load = load * np.sqrt(psi)[:, None]
            g = (np.einsum("ij,ij->i", load, load) + psi - diag_r) / psi**2  # FAgr
            return float(f), g

    psi, iterations, converged, message = _optim(fun, start, upper)

    if method == "minres":  # FAout.wls
        w, v = _top_eigh(r - np.diag(psi), k)
        loadings = v * np.sqrt(np.maximum(w, 0.0))
    else:  # FAout
        sc = 1.0 / np.sqrt(psi)
        e, v = _top_eigh(r * sc[:, None] * sc[None, :], k)
        loadings = (v * np.sqrt(np.maximum(e - 1.0, 0.0))) * np.sqrt(psi)[:, None]
    return _Extraction(loadings, psi, iterations, converged, message)


# --------------------------------------------------------------------------------------------------
# psych::fa.stats
# --------------------------------------------------------------------------------------------------


def _rmsea_bound(statistic: float, dof: float, target: float, upper: float) -> float | None:
    def h(ncp):
        if ncp <= 0:
            return scipy.stats.chi2.cdf(statistic, dof) - target
        return scipy.stats.ncx2.cdf(statistic, dof, ncp) - target

    try:
        return scipy.optimize.brentq(h, 0.0, upper, xtol=1e-12, rtol=4 * _EPS, maxiter=500)
    except (ValueError, RuntimeError):
        return None


def _fit_statistics(
    r: np.ndarray,
    f: np.ndarray,
    phi: np.ndarray | None,
    n_obs: int | None,
    np_obs: np.ndarray | None,
    r_values: np.ndarray,
    notes: list[str],
    alpha: float = 0.1,
) -> EFAFit:
    n = r.shape[0]
    k = f.shape[1]
    model = f @ f.T if phi is None else f @ phi @ f.T
    residual = r - model
    r2 = float(np.sum(r * r))
    rstar2 = float(np.sum(residual * residual))
    dof = _dof(n, k)
    np.fill_diagonal(residual, 0.0)
    if np_obs is None:
        rstar_off = float(np.sum(residual * residual))
        r2_off = r2 - float(np.trace(r))
        chi = rstar_off * n_obs if n_obs is not None else None
        rms = math.sqrt(rstar_off / (n * (n - 1)))
        nh = n_obs
    else:
        rstar_off = float(np.sum(residual * residual * np_obs))
        w = r * r * np_obs
        r2_off = float(np.sum(w) - np.trace(w))
        chi = rstar_off
        nh = float(scipy.stats.hmean(np_obs.ravel())) if (np_obs > 0).all() else 0.0
        rms = math.sqrt(rstar_off / (nh * n * (n - 1)))
    if dof > 0:
        crms = math.sqrt(rstar_off / (2 * dof)) if np_obs is None else math.sqrt(rstar_off / (2 * nh * dof))
        epval = float(scipy.stats.chi2.sf(chi, dof)) if chi is not None else None
    else:
        crms = None
        epval = None
    fit = 1 - rstar2 / r2
    fit_off = 1 - rstar_off / r2_off if r2_off > 0 else math.nan

    m = model.copy()
    np.fill_diagonal(m, np.diag(r))
    m, _ = cor_smooth(m)
    rs, smoothed = cor_smooth(r, r_values)
    if smoothed and not any("singular" in n for n in notes):
        notes.append("the correlation matrix is not positive definite; fit statistics use psych's smoothed matrix")
    try:
        m_inv_r = np.linalg.solve(m, rs)
    except np.linalg.LinAlgError:
        m_inv_r = np.eye(n)
        notes.append("the model correlation matrix is singular; the chi-square and RMSEA are not meaningful")
    objective: float | None = float(np.trace(m_inv_r) - _log_det_r(m_inv_r) - n)
    if math.isinf(objective):
        notes.append("the determinant of the smoothed correlation matrix is zero; the objective uses residuals")
        objective = rstar2
    if math.isnan(objective):
        objective = None

    chi_square = p_value = rmsea = rmsea_lower = rmsea_upper = tli = bic = null_chi = None
    f0 = float(np.trace(rs) - _log_det_r(rs) - n)
    if math.isinf(f0):
        f0 = r2
    if math.isnan(f0):
        f0 = None
    if n_obs is not None and objective is not None:
        correction = (n_obs - 1) - (2 * n + 5) / 6 - (2 * k) / 3
        chisq = objective * correction
        chi_square = max(chisq, 0.0)
        p_value = float(scipy.stats.chi2.sf(chi_square, dof)) if dof > 0 else None
        if f0 is not None:
            null_chi = f0 * ((n_obs - 1) - (2 * n + 5) / 6)
            mm = objective / dof if dof != 0 else math.inf
            m0 = f0 * 2 / (n * (n - 1))
            tli = (m0 - mm) / (m0 - 1 / correction) if dof != 0 else None
        if dof > 0:
            rmsea = math.sqrt(max(chisq / (dof * n_obs) - 1 / (n_obs - 1), 0.0))
            tail = alpha / 2
            upper_ncp = max(n_obs, chisq) + 2 * n_obs
            cdf0 = float(scipy.stats.chi2.cdf(chi_square, dof))
            rmsea_upper = 0.0
            if cdf0 > tail:
                root = _rmsea_bound(chi_square, dof, tail, upper_ncp)
                if root is None:
                    rmsea_upper = 0.0 if rmsea <= 0 else None
                else:
                    rmsea_upper = math.sqrt(root / (n_obs - 1) / dof)
            rmsea_lower = 0.0
            if cdf0 > 1 - tail:
                root = _rmsea_bound(chi_square, dof, 1 - tail, upper_ncp)
                rmsea_lower = None if root is None else math.sqrt(root / (n_obs - 1) / dof)
            if rmsea_upper is not None and rmsea_upper < rmsea:
                rmsea_upper = None
            if rmsea_lower is not None and rmsea_lower > rmsea:
                rmsea_lower = None
            bic = chisq - dof * math.log(n_obs)
    return EFAFit(
        dof=dof,
        objective=objective,
        chi_square=chi_square,
        p_value=p_value,
        rmsea=rmsea,
        rmsea_lower=rmsea_lower,
        rmsea_upper=rmsea_upper,
        tli=tli,
        bic=bic,
        null_chi_square=null_chi,
        null_dof=n * (n - 1) / 2,
        null_objective=f0,
        rmsr=rms,
        crms=crms,
        empirical_chi_square=chi,
        empirical_p_value=epval,
        fit=fit,
        fit_off=fit_off,
        n_obs=n_obs,
    )


# --------------------------------------------------------------------------------------------------
# efa
# --------------------------------------------------------------------------------------------------


def _signs(x: np.ndarray) -> np.ndarray:
    """Column signs that make each column's sum positive, as psych orients factors. A sum within its
    rounding error of zero (:math:`p\\,\\epsilon \\sum_i |x_{ij}|`) has no sign of its own (the BLAS kernel
    would pick it): the largest loading in magnitude is made positive instead, which is well defined."""
    total = x.sum(axis=0)
    s = np.sign(total)
    rounding = np.abs(total) <= x.shape[0] * _EPS * np.abs(x).sum(axis=0)
    if rounding.any():
        largest = x[np.abs(x).argmax(axis=0), np.arange(x.shape[1])]
        s = np.where(rounding, np.sign(largest), s)
    s[s == 0] = 1.0
    return s


def fit_efa(prep: ItemCorrelations, n_factors: int, method: str, rotation: str, with_stats: bool = True) -> EFAResult:
    """:func:`efa` of a prepared correlation matrix
    (:func:`~psychometrics.statistics.item_correlations.item_correlations`), method and rotation checked.
    ``with_stats=False`` leaves out the fit statistics (``fit`` is None): omega needs only the loadings."""
    r = prep.r
    p = r.shape[0]
    names = prep.names
    notes = list(prep.notes)
    k = check_n_factors(n_factors, p)

    r_values = np.linalg.eigvalsh(r)
    # Numerically singular: smallest eigenvalue below 10 p eps lambda_max (numpy's matrix_rank tolerance x 10).
    singular = r_values.min() < 10 * p * _EPS * r_values.max()
    if singular:
        if method == "ml":
            why = (
                f"{prep.n_obs} respondents for {p} items"
                if prep.n_obs is not None and prep.n_obs <= p
                else "some items are linear combinations of others"
            )
            raise ValueError(
                f"method='ml' needs a positive definite correlation matrix, but it is singular ({why}); "
                "use method='minres' or collect more responses"
            )
        if prep.from_data and prep.n_obs is not None and prep.n_obs <= p:
            notes.append(
                f"fewer respondents ({prep.n_obs}) than items ({p}): the correlation matrix is singular, the "
                "loadings are unstable and the fit statistics use psych's smoothed matrix; collect more samples"
            )
        else:
            dup = np.argwhere(np.triu(np.abs(r) > 1 - 1e-10, 1))
            detail = (
                f" (items {names[dup[0][0]]} and {names[dup[0][1]]} are perfectly correlated)" if len(dup) else ""
            )
            notes.append(
                f"the correlation matrix is singular{detail}; the loadings may be unstable and the fit statistics "
                "use psych's smoothed matrix"
            )
    elif prep.from_data and prep.n_obs is not None and prep.n_obs <= p:
        notes.append(f"fewer respondents ({prep.n_obs}) than items ({p}); the loadings are unstable")

    squared_multiple = smc(r)
    try:
        ext = _extract(r, k, method, squared_multiple)
    except (_SingularMatrix, FloatingPointError):
        raise ValueError(
            f"method={method!r} failed: the correlation matrix is (nearly) singular; use method='minres', fewer "
            "factors or more responses"
        ) from None
    if not ext.converged:
        if ext.iterations > _MAXIT:
            notes.append(
                f"the {method} extraction did not converge in {_MAXIT} iterations (as psych, the last values are used)"
            )
        else:
            notes.append(f"the {method} extraction stopped early ({ext.message}); psych uses these values too")
    loadings = ext.loadings * _signs(ext.loadings)
    loadings[loadings == 0] = 1e-15
    if not np.isfinite(loadings).all():
        raise ValueError("factor extraction produced non-finite loadings; check the data for degenerate items")
    model = loadings @ loadings.T
    communality = np.diag(model).copy()

    rotated, phi, rot_converged = rotate(loadings, rotation, notes)
    if not rot_converged:
        notes.append(f"the {rotation} rotation did not converge (as psych, the last iterate is used)")
    signed = _signs(rotated)
    rotated = rotated * signed
    if phi is not None:
        phi = phi * signed[:, None] * signed[None, :]
    prefix = "MR" if method == "minres" else "ML"
    columns = [f"{prefix}{j + 1}" for j in range(k)]
    if k > 1:
        ev = np.einsum("ij,ji->i", phi, rotated.T @ rotated) if phi is not None else np.sum(rotated**2, axis=0)
        order = np.argsort(-ev, kind="stable")
        rotated = rotated[:, order]
        columns = [columns[j] for j in order]
        if phi is not None:
            phi = phi[np.ix_(order, order)]
    if phi is None:
        phi_full = np.eye(k)
        vx = np.sum(rotated**2, axis=0)
    else:
        phi_full = phi
        vx = np.einsum("ij,ji->i", phi, rotated.T @ rotated)
    structure = rotated @ phi_full

    heywood = tuple(names[i] for i in np.flatnonzero(ext.psi <= _LOWER * (1 + 1e-8)))
    if heywood:
        notes.append(
            f"Heywood case: the uniqueness of {names_list(heywood)} is at psych's lower bound of {_LOWER}"
        )
    ultra = [names[i] for i in np.flatnonzero(communality > 1)]
    if ultra:
        notes.append(f"ultra-Heywood case: communality above 1 for {names_list(ultra)}; examine the results carefully")

    fit = _fit_statistics(r, rotated, phi, prep.n_obs, prep.np_obs, r_values, notes) if with_stats else None
    uniq = np.diag(r) - communality
    vtotal = float(np.sum(communality + uniq))
    rows = {"SS loadings": vx, "Proportion Var": vx / vtotal}
    if k > 1:
        rows["Cumulative Var"] = np.cumsum(vx / vtotal)
        rows["Proportion Explained"] = vx / vx.sum()
        rows["Cumulative Proportion"] = np.cumsum(vx / vx.sum())
    complexity = np.sum(rotated**2, axis=1) ** 2 / np.sum(rotated**4, axis=1)
    unrot_cols = [f"{prefix}{j + 1}" for j in range(k)]
    return EFAResult(
        loadings=pd.DataFrame(rotated, index=names, columns=columns),
        phi=pd.DataFrame(phi_full, index=columns, columns=columns),
        structure=pd.DataFrame(structure, index=names, columns=columns),
        communalities=pd.Series(communality, index=names, name="h2"),
        uniquenesses=pd.Series(uniq, index=names, name="u2"),
        complexity=pd.Series(complexity, index=names, name="com"),
        variance=pd.DataFrame(rows, index=columns).T,
        unrotated=pd.DataFrame(loadings, index=names, columns=unrot_cols),
        eigenvalues=r_values[::-1].copy(),
        fit=fit,
        correlation=pd.DataFrame(r, index=names, columns=names),
        method=method,
        rotation=rotation,
        n_factors=k,
        n_obs=prep.n_obs,
        iterations=ext.iterations,
        converged=ext.converged,
        rotation_converged=rot_converged,
        heywood=heywood,
        dropped_items=prep.dropped,
        note="; ".join(dict.fromkeys(notes)) or None,
    )


def efa(
    data: pd.DataFrame | np.ndarray | None = None,
    n_factors: int = 1,
    method: str = "minres",
    rotation: str = "oblimin",
    *,
    corr: pd.DataFrame | np.ndarray | None = None,
    n_obs: int | None = None,
    drop_constant: bool = False,
) -> EFAResult:
    """Exploratory factor analysis, as ``psych::fa(data, nfactors, fm = method, rotate = rotation)``.

    Parameters
    ----------
    data : DataFrame or ndarray, optional
        Item responses, respondents x items (missing values as NaN: correlations are pairwise-complete,
        as psych's ``use = "pairwise"``). Item names are the DataFrame's columns (``V1, V2, ...`` for
        arrays).
    n_factors : int
        Number of factors :math:`k`; the model must have non-negative degrees of freedom
        :math:`p(p-1)/2 - pk + k(k-1)/2`.
    method : {"minres", "ml"}
        Minimum residual (unweighted least squares, psych's default) or maximum likelihood.
    rotation : {"oblimin", "varimax", "promax", "none"}
        ``oblimin`` is GPArotation's quartimin (gamma = 0), psych's default.
    corr : DataFrame or ndarray, optional
        A correlation (or covariance) matrix instead of ``data``.
    n_obs : int, optional
        Number of respondents behind ``corr`` (needed for chi-square, RMSEA, TLI, BIC).
    drop_constant : bool
        Drop constant items (with a ``note``) instead of raising.

    Returns
    -------
    EFAResult
        Loadings, Phi, structure, communalities, uniquenesses, variance explained and fit statistics;
        each matches the like-named element of ``psych::fa`` (see :class:`EFAResult`).

    Raises
    ------
    ValueError
        Constant items (unless ``drop_constant``), too many factors for the items, ``method="ml"`` on a
        singular correlation matrix, or malformed input. Messages are one line and say what to do.

    Notes
    -----
    The algorithm is described in the module docstring; results agree with psych 2.2.9 to rounding
    error on the reference data (``tests/reference/factor_analysis.R``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {', '.join(ROTATIONS)}, got {rotation!r}")
    if data is not None and n_obs is not None:
        raise ValueError("n_obs goes with corr=; with data it is the number of rows")
    prep = item_correlations(data, corr, n_obs, drop_constant)
    return fit_efa(prep, n_factors, method, rotation)
