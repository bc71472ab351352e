"""Exploratory factor analysis, McDonald's omega and Tucker's congruence, matching R's ``psych``.

This module re-implements, in numpy/scipy, the parts of R's psych (2.2.9) and GPArotation (2022.10.2)
that psytest uses, following their algorithms step by step so that results agree with R to rounding
error rather than merely to the optimiser's tolerance:

* :func:`efa` is ``psych::fa(r, nfactors, fm = "minres" | "ml", rotate = "oblimin" | "varimax" |
  "promax" | "none")``;
* :func:`omega` is ``psych::omega(m, nfactors, fm = "minres", rotate = "oblimin", key = rep(1, p),
  plot = FALSE)``, i.e. the Schmid-Leiman solution on data that is already reverse keyed;
* :func:`tucker_congruence` is ``psych::factor.congruence``; :func:`match_factors` permutes and
  sign-flips factors to a reference (for comparing solutions).

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
  ``pgtol = 0``, at most 100 iterations (R stops after the 101st). R ships version 2.3 of L-BFGS-B; scipy
  ships version 3.0, whose subspace step projects onto the box instead of backtracking into it when a
  bound is hit. That changes the path, and psych's answer, whenever a uniqueness reaches its bound
  (a Heywood case: differences up to 1e-4 in the loadings on the reference data), because psych's
  gradient is not the gradient of its minres objective and its solution there depends on the path. So
  this module carries its own implementation of version 2.3 (``_LBFGSB``; Byrd, Lu, Nocedal & Zhu, 1995),
  which reproduces R's iterates. Heywood cases are handled as psych does: a uniqueness cannot go below
  the 0.005 bound (reported in ``EFAResult.heywood`` and ``note``).

Per step this costs one partial eigendecomposition (the :math:`k` largest eigenpairs, LAPACK
``dsyevx``), so a 300-item, 5-factor analysis takes a fraction of a second.

Rotation and ordering
---------------------
* ``oblimin``: ``GPArotation::oblimin`` (quartimin, :math:`\\gamma = 0`, no Kaiser normalisation), the
  gradient-projection algorithm ``GPFoblq`` (Jennrich, 2002) with criterion
  :math:`Q(\\Lambda) = \\tfrac14 \\sum_{i} \\sum_{j \\ne l} \\lambda_{ij}^2 \\lambda_{il}^2`, started
  at the identity, step doubling/halving and stopping when the projected gradient's Frobenius norm is
  below 1e-5 (at most 1,000 iterations). :math:`\\Phi = T^\\top T`, pattern :math:`\\Lambda (T^{-1})^\\top`.
* ``varimax``: ``stats::varimax`` (Kaiser normalisation, SVD iteration, relative tolerance 1e-5).
* ``promax``: psych's ``"promax"``, i.e. ``psych::kaiser(L, rotate = "Promax")``: rows normalised by
  :math:`\\sqrt{h^2}`, varimax, target :math:`Q = X|X|^{3}`, least-squares transformation rescaled so
  that :math:`\\mathrm{diag}((U^\\top U)^{-1}) = 1`, :math:`\\Phi = U^{-1}U^{-\\top}`.
* Then, as ``psych:::fac``: each factor's loadings are made to sum positive (before and after
  rotation), and factors are ordered by variance explained, :math:`\\mathrm{diag}(\\Phi\\Lambda^\\top
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

McDonald's omega (``psych::omega``, ``psych::schmid``)
------------------------------------------------------
A ``minres`` EFA with :math:`k` factors is rotated by varimax (giving orthogonal loadings :math:`A`,
communalities :math:`h^2_i = \\sum_j a_{ij}^2`, :math:`u^2_i = 1 - h^2_i`), then by oblimin from the varimax
solution (pattern :math:`F`, factor correlations :math:`\\Phi`). A one-factor ``minres`` analysis of
:math:`\\Phi` gives the second-order loadings :math:`g`. Schmid-Leiman: general loadings :math:`F g`, group
loadings :math:`\\mathrm{sign}(F) \\sqrt{\\max(F^2 (1 - g^2), 0)}`. With :math:`V_t = \\mathbf 1^\\top R
\\mathbf 1`:

.. math:: \\omega_t = \\frac{V_t - \\sum_i u^2_i}{V_t},\\qquad
          \\omega_h = \\frac{(\\sum_i g_i)^2}{V_t}.

Subscale omegas (``omega.group``): each item belongs to the group factor on which it loads most (in
absolute value); for group :math:`s` with items :math:`I_s` and :math:`V_s = \\mathbf 1^\\top
R_{I_s I_s} \\mathbf 1`: total :math:`((\\sum_{I_s} f^*_{is})^2 + (\\sum_{I_s} g_i)^2)/V_s`, general
:math:`(\\sum_{I_s} g_i)^2 / V_s`, group :math:`(\\sum_{I_s} f^*_{is})^2/V_s`.

Tucker's congruence
-------------------
:math:`\\phi(x, y) = \\sum_i x_i y_i / \\sqrt{\\sum_i x_i^2 \\sum_i y_i^2}` between every pair of columns.

Agreement with R
----------------
``tests/reference/factor_analysis.R`` writes psych's results for the bfi (2,436 x 25, keyed), a simulated
(600 x 20) data set, a copy of the bfi with missing cells, Heywood cases and a sample smaller than the
number of items; ``tests/test_factor_analysis.py`` checks them. Because every iterative step is
replicated (start values, L-BFGS-B 2.3 with R's settings, GPFoblq and varimax with their stopping rules,
the one-factor fit of :math:`\\Phi` in omega), agreement is at the level of floating-point rounding:
about 1e-12 or better for loadings, Phi, structure and communalities (Heywood cases included), 1e-13
for omega total and hierarchical, 1e-15 for congruence, and 1e-12 relative for the fit statistics
(1e-8 for the RMSEA interval, see 7. below); the same holds for a simulated 1,250 x 300 data set. Each of R's steps alone is converged only loosely: its
uniquenesses are about 4e-6 from the exact minimum for the bfi (``factr = 1e7``) and GPFoblq stops at a
gradient norm of 1e-5, so an implementation that converged each step fully would differ from psych by
1e-6 to 1e-5 (1e-4 in Heywood cases) however carefully it computed. The tests use 1e-8 (absolute) for
loadings, Phi, communalities, omega and congruence. With fewer respondents than items the fit statistics
depend on the logarithm of a smoothed, nearly singular determinant and agree to about 1e-7 relative.

Differences from R
------------------
1. Degenerate input raises :class:`~psychometrics.errors.PsytestError` with a one-line message saying what
   to do, where psych stops with a multi-line error or warns and continues:

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

4. omega: psych reverses items whose general-factor loading is negative (``flip = TRUE``). psytest passes
   already reverse-keyed data, so :func:`omega` never flips; this matches ``psych::omega(..., key =
   rep(1, p))`` (and ``flip = TRUE`` whenever no general loading is negative). Items that still load
   negatively on the general factor are named in ``note``.

5. omega with fewer than three group factors: omega hierarchical is not identified (the general factor
   of two correlated factors is not determined by their correlation). psych returns a value anyway,
   with a message, by fixing the two second-order loadings equal (``option = "equal"``); we return
   ``omega_hierarchical=None`` (and no Schmid-Leiman loadings or subscale omegas) with a ``note``.
   ``n_factors=1`` gives omega total only (psych also reports an "omega_h", :math:`(\\sum\\lambda)^2/V_t` of
   the one-factor model, which is not hierarchical).

6. Not computed (not needed by psytest): factor scores and their weights/R^2, bootstrap confidence
   intervals (``n.iter``), methods other than minres and ML, rotations other than the four above.

7. The RMSEA interval solves for the noncentrality parameter to machine precision (``brentq``); R's
   ``uniroot`` stops at an absolute tolerance of about 6e-5 in that parameter, so R's bounds differ from
   ours by up to about 1e-8 (relative).

References
----------
Revelle, W. (2022). psych: Procedures for Psychological, Psychometric, and Personality Research, version
2.2.9. https://CRAN.R-project.org/package=psych
Bernaards, C. A., & Jennrich, R. I. (2005). Gradient projection algorithms and software for arbitrary
rotation criteria in factor analysis. Educational and Psychological Measurement, 65, 676-696.
Jennrich, R. I. (2002). A simple general method for oblique rotation. Psychometrika, 67, 7-19.
Harman, H. H., & Jones, W. H. (1966). Factor analysis by minimizing residuals (minres). Psychometrika,
31, 351-368.
Kaiser, H. F. (1958). The varimax criterion for analytic rotation in factor analysis. Psychometrika, 23,
187-200.
Hendrickson, A. E., & White, P. O. (1964). Promax: a quick method for rotation to oblique simple
structure. British Journal of Statistical Psychology, 17, 65-70.
McDonald, R. P. (1999). Test theory: A unified treatment. Erlbaum.
Schmid, J., & Leiman, J. M. (1957). The development of hierarchical factor solutions. Psychometrika, 22,
53-61.
Zinbarg, R. E., Revelle, W., Yovel, I., & Li, W. (2005). Cronbach's alpha, Revelle's beta, and
McDonald's omega_h. Psychometrika, 70, 123-133.
Tucker, L. R. (1951). A method for synthesis of factor analysis studies (Personnel Research Section
Report No. 984). Department of the Army.
Lorenzo-Seva, U., & ten Berge, J. M. F. (2006). Tucker's congruence coefficient as a meaningful index of
factor similarity. Methodology, 2, 57-64.
Byrd, R. H., Lu, P., Nocedal, J., & Zhu, C. (1995). A limited memory algorithm for bound constrained
optimization. SIAM Journal on Scientific Computing, 16, 1190-1208.
More, J. J., & Thuente, D. J. (1994). Line search algorithms with guaranteed sufficient decrease. ACM
Transactions on Mathematical Software, 20, 286-307.
Zhu, C., Byrd, R. H., Lu, P., & Nocedal, J. (1997). Algorithm 778: L-BFGS-B. ACM Transactions on
Mathematical Software, 23, 550-560.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.optimize
import scipy.stats

from psychometrics.errors import PsytestError

__all__ = [
    "EFAFit",
    "EFAResult",
    "FactorMatch",
    "OmegaResult",
    "efa",
    "match_factors",
    "omega",
    "tucker_congruence",
]

METHODS = ("minres", "ml")
ROTATIONS = ("oblimin", "varimax", "promax", "none")

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


@dataclass(frozen=True, repr=False)
class OmegaResult:
    """McDonald's omega from a Schmid-Leiman solution (``psych::omega``).

    Attributes
    ----------
    omega_total : float
        :math:`\\omega_t` (psych ``omega.tot``).
    omega_hierarchical : float or None
        :math:`\\omega_h` (psych ``omega_h``); None with fewer than three group factors.
    omega_limit : float or None
        :math:`\\omega_h/\\omega_t`-type asymptotic ratio :math:`(\\sum g)^2/(V_t - \\sum u^2)` (psych
        ``omega.lim``).
    alpha : float
        Standardised Cronbach's alpha of the correlation matrix (psych ``alpha``).
    lambda6 : float
        Guttman's :math:`\\lambda_6` (psych ``G6``).
    ecv : float or None
        Explained common variance of the general factor (psych ``ECV``).
    general_loadings : Series or None
        Schmid-Leiman general factor loadings (psych ``schmid$sl[, "g"]``).
    group_loadings : DataFrame or None
        Schmid-Leiman group factor loadings ``F1*..Fk*``.
    schmid_leiman : DataFrame or None
        psych's ``schmid$sl``: ``g``, ``F1*..Fk*``, ``h2``, ``u2``, ``p2``.
    omega_subscale : DataFrame or None
        psych's ``omega.group``: rows ``g``, ``F1*..``; columns ``total``, ``general``, ``group``.
        The ``group`` column of ``F1*..`` is the usual omega subscale (:math:`\\omega_s`).
    communalities, uniquenesses : Series
        :math:`h^2`, :math:`u^2` of the ``minres`` solution (psych ``schmid$sl[, c("h2", "u2")]``).
    oblique_loadings : DataFrame or None
        Oblimin pattern from which the hierarchy is built (psych ``schmid$oblique``; unsorted).
    phi : DataFrame or None
        Its factor correlations (psych ``schmid$phi``).
    second_order_loadings : ndarray or None
        Loadings of the group factors on the general factor (psych ``schmid$gloading``).
    n_factors : int
    n_obs : int or None
    dropped_items : tuple of str
    note : str or None
    """

    omega_total: float
    omega_hierarchical: float | None
    omega_limit: float | None
    alpha: float
    lambda6: float
    ecv: float | None
    general_loadings: pd.Series | None
    group_loadings: pd.DataFrame | None
    schmid_leiman: pd.DataFrame | None
    omega_subscale: pd.DataFrame | None
    communalities: pd.Series
    uniquenesses: pd.Series
    oblique_loadings: pd.DataFrame | None
    phi: pd.DataFrame | None
    second_order_loadings: np.ndarray | None
    n_factors: int
    n_obs: int | None
    dropped_items: tuple[str, ...] = ()
    note: str | None = None

    def __repr__(self) -> str:
        oh = "None" if self.omega_hierarchical is None else f"{self.omega_hierarchical:.4f}"
        return (
            f"OmegaResult(omega_total={self.omega_total:.4f}, omega_hierarchical={oh}, "
            f"n_factors={self.n_factors}, items={len(self.communalities)}, note={self.note!r})"
        )


@dataclass(frozen=True)
class FactorMatch:
    """Factors of one solution matched to a reference (:func:`match_factors`).

    Attributes
    ----------
    loadings : DataFrame
        The matched loadings: column ``j`` is the factor matched to reference column ``j``, sign-flipped
        to agree with it, labelled with the reference's column name.
    phi : DataFrame or None
        The factor correlations permuted and re-signed the same way (when ``phi`` was given).
    order : tuple of int
        ``order[j]`` is the column of the input ``loadings`` matched to reference column ``j``.
    signs : tuple of int
        +1 or -1 applied to each matched column.
    congruence : Series
        Tucker's phi between each reference factor and its match (after flipping, so >= 0).
    """

    loadings: pd.DataFrame
    phi: pd.DataFrame | None
    order: tuple[int, ...]
    signs: tuple[int, ...]
    congruence: pd.Series


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------


def _names_list(names: Sequence[str], limit: int = 5) -> str:
    names = [str(n) for n in names]
    if len(names) == 1:
        return names[0]
    if len(names) <= limit:
        return ", ".join(names[:-1]) + " and " + names[-1]
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


@dataclass
class _Prepared:
    r: np.ndarray
    names: list[str]
    n_obs: int | None
    np_obs: np.ndarray | None
    dropped: tuple[str, ...]
    notes: list[str]
    from_data: bool


def _cov2cor(x: np.ndarray) -> np.ndarray:
    d = 1.0 / np.sqrt(np.diag(x))
    r = x * d[:, None] * d[None, :]
    np.fill_diagonal(r, 1.0)
    return r


def _prepare(data, corr, n_obs, drop_constant: bool) -> _Prepared:
    """Correlation matrix, item names and sample size from data or a correlation matrix."""
    notes: list[str] = []
    if (data is None) == (corr is None):
        raise PsytestError("give either data (respondents x items) or corr= (a correlation matrix), not both")
    if data is not None:
        if isinstance(data, pd.DataFrame):
            names = [str(c) for c in data.columns]
            try:
                x = data.to_numpy(dtype=float, na_value=np.nan)
            except (TypeError, ValueError):
                bad = [str(c) for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]
                raise PsytestError(
                    f"item {_names_list(bad)} has non-numeric responses; convert responses to numbers first"
                ) from None
        else:
            try:
                x = np.asarray(data, dtype=float)
            except (TypeError, ValueError):
                raise PsytestError("data must be numeric (respondents x items); convert responses to numbers") from None
            if x.ndim != 2:
                raise PsytestError(f"data must be a 2-D table of respondents x items, not {x.ndim}-D")
            names = [f"V{j + 1}" for j in range(x.shape[1])]
        if x.ndim != 2 or x.shape[1] < 2:
            raise PsytestError("factor analysis needs at least 2 items (columns)")
        if np.isinf(x).any():
            bad = [names[j] for j in np.flatnonzero(np.isinf(x).any(axis=0))]
            raise PsytestError(f"item {_names_list(bad)} has infinite values; replace them with missing values (NaN)")
        n = x.shape[0]
        if n < 2:
            raise PsytestError(f"factor analysis needs at least 2 respondents, got {n}; collect more samples")
        observed = ~np.isnan(x)
        counts = observed.sum(axis=0)
        with np.errstate(invalid="ignore"):
            spread = np.nanmax(np.where(observed, x, -np.inf), axis=0) - np.nanmin(np.where(observed, x, np.inf), axis=0)
        constant = [j for j in range(x.shape[1]) if counts[j] < 2 or not spread[j] > 0]
        dropped: tuple[str, ...] = ()
        if constant:
            described = []
            for j in constant[:3]:
                if counts[j] == 0:
                    described.append(f"{names[j]} (no responses)")
                elif counts[j] == 1:
                    described.append(f"{names[j]} (one response)")
                else:
                    value = x[observed[:, j], j][0]
                    described.append(f"{names[j]} (every response is {value:g})")
            what = ", ".join(described) + (f" and {len(constant) - 3} more" if len(constant) > 3 else "")
            verb = "is" if len(constant) == 1 else "are"
            if not drop_constant:
                raise PsytestError(
                    f"item {what} {verb} constant, so correlations with it are undefined; drop "
                    f"{'it' if len(constant) == 1 else 'them'} (or pass drop_constant=True) or use more samples"
                )
            dropped = tuple(names[j] for j in constant)
            keep = [j for j in range(x.shape[1]) if j not in set(constant)]
            if len(keep) < 2:
                raise PsytestError(
                    f"only {len(keep)} of {x.shape[1]} items vary; factor analysis needs at least 2; use more samples"
                )
            x = x[:, keep]
            names = [names[j] for j in keep]
            observed = observed[:, keep]
            notes.append(f"dropped constant item{'s' if len(dropped) > 1 else ''} {_names_list(dropped)}")
        if observed.all():
            r = np.corrcoef(x, rowvar=False)
            np_obs = None
        else:
            r = pd.DataFrame(x).corr(min_periods=2).to_numpy()
            obs = observed.astype(float)
            np_obs = obs.T @ obs
            if np.isnan(r).any():
                i, j = np.argwhere(np.isnan(r))[0]
                raise PsytestError(
                    f"items {names[i]} and {names[j]} have too few jointly answered responses with variance to "
                    "correlate; drop one of them or collect more complete responses"
                )
        r = (r + r.T) / 2.0
        np.fill_diagonal(r, 1.0)
        return _Prepared(r, names, n, np_obs, dropped, notes, True)

    # A correlation (or covariance) matrix.
    if isinstance(corr, pd.DataFrame):
        names = [str(c) for c in corr.columns]
        c = corr.to_numpy(dtype=float)
    else:
        c = np.asarray(corr, dtype=float)
        names = [f"V{j + 1}" for j in range(c.shape[1])] if c.ndim == 2 else []
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise PsytestError(f"corr must be a square matrix, got shape {c.shape}")
    if c.shape[0] < 2:
        raise PsytestError("factor analysis needs at least 2 items")
    if not np.isfinite(c).all():
        bad = [names[j] for j in np.flatnonzero(~np.isfinite(c).all(axis=0))]
        raise PsytestError(
            f"the correlation matrix has missing or infinite values for item {_names_list(bad)}; drop "
            f"{'it' if len(bad) == 1 else 'them'} (constant items have undefined correlations)"
        )
    if not np.allclose(c, c.T, rtol=0, atol=1e-8 * max(1.0, np.abs(c).max())):
        raise PsytestError("corr is not symmetric; pass a correlation matrix")
    if (np.diag(c) <= 0).any():
        bad = [names[j] for j in np.flatnonzero(np.diag(c) <= 0)]
        raise PsytestError(f"item {_names_list(bad)} has zero variance in corr; drop it")
    r = _cov2cor((c + c.T) / 2.0)
    if (np.abs(r) > 1 + 1e-8).any():
        raise PsytestError("corr has correlations outside [-1, 1]; pass a correlation or covariance matrix")
    if n_obs is not None:
        whole = isinstance(n_obs, (int, np.integer, float)) and not isinstance(n_obs, bool) and float(n_obs).is_integer()
        if not whole or n_obs < 2:
            raise PsytestError(f"n_obs must be a whole number of respondents >= 2, got {n_obs!r}")
        n_obs = int(n_obs)
    return _Prepared(r, names, n_obs, None, (), notes, False)


def _dof(p: int, k: int) -> float:
    return p * (p - 1) / 2 - p * k + k * (k - 1) / 2


def _max_factors(p: int) -> int:
    k = 0
    while k + 1 < p and _dof(p, k + 1) >= 0:
        k += 1
    return k


def _check_factors(n_factors, p: int) -> int:
    if isinstance(n_factors, bool) or not isinstance(n_factors, (int, np.integer)) or n_factors < 1:
        raise PsytestError(f"n_factors must be a whole number >= 1, got {n_factors!r}")
    n_factors = int(n_factors)
    dof = _dof(p, n_factors)
    if dof < 0 or n_factors >= p:
        most = _max_factors(p)
        raise PsytestError(
            f"{n_factors} factors are too many for {p} items (the model has {dof:g} degrees of freedom, so it is "
            f"not identified); use at most {most} factor{'s' if most != 1 else ''} or more items"
        )
    return n_factors


# --------------------------------------------------------------------------------------------------
# Linear algebra helpers (psych::smc, psych::cor.smooth, psych::Pinv)
# --------------------------------------------------------------------------------------------------


def _smc(r: np.ndarray) -> np.ndarray:
    """Squared multiple correlations, ``psych::smc``: :math:`1 - 1/\\mathrm{diag}(R^+)`, clamped to [0, 1]."""
    u, d, vt = np.linalg.svd(r)
    keep = d > max(math.sqrt(_EPS) * d[0], 0.0)
    pinv_diag = np.einsum("ij,ij->i", vt[keep].T / d[keep], u[:, keep])
    with np.errstate(divide="ignore", invalid="ignore"):
        smc = 1.0 - 1.0 / pinv_diag
    smc = np.where(np.isnan(smc), 1.0, smc)
    smc = np.minimum(smc, 1.0)
    return np.maximum(smc, 0.0)


def _cor_smooth(x: np.ndarray, values: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """``psych::cor.smooth``: if not positive definite, raise small eigenvalues and rescale to a correlation matrix.

    psych smooths when the smallest eigenvalue is below :math:`\\epsilon`; a singular matrix's smallest
    eigenvalue is computed as rounding of about :math:`p\\,\\epsilon\\,\\lambda_{max}`, either sign, so that
    test would smooth under one BLAS kernel and not another. Here a matrix is smoothed when its smallest
    eigenvalue is below :math:`10\\,p\\,\\epsilon` times the largest (bounded by the trace when only the
    smallest is computed): numerically singular, whatever the kernel. Where psych's test is decided by
    more than rounding the two agree."""
    if values is None:  # only the smallest eigenvalue is needed; the trace bounds the largest
        values = scipy.linalg.eigh(x, eigvals_only=True, subset_by_index=(0, 0), driver="evx", check_finite=False)
        largest = float(np.trace(x))
    else:
        largest = float(values.max())
    if values.min() >= max(_EPS, 10 * x.shape[0] * _EPS * largest):
        return x, False
    w, v = np.linalg.eigh(x)
    w = np.where(w < 1e-12, 100 * 1e-12, w)
    w = w * x.shape[0] / w.sum()
    return _cov2cor((v * w) @ v.T), True


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


@dataclass
class _Extraction:
    loadings: np.ndarray
    psi: np.ndarray
    iterations: int
    converged: bool
    message: str


# L-BFGS-B as R's optim() runs it: version 2.3 of Zhu, Byrd, Lu & Nocedal, for box constraints.


class _LineSearch:
    """More and Thuente's line search (MINPACK-2 ``dcsrch``/``dcstep``), as used by L-BFGS-B."""

    def __init__(self, f: float, g: float, stp: float, stpmax: float,
                 ftol: float = 1e-3, gtol: float = 0.9, xtol: float = 0.1, stpmin: float = 0.0):
        self.ftol, self.gtol, self.xtol, self.stpmin, self.stpmax = ftol, gtol, xtol, stpmin, stpmax
        self.stp = stp
        if stp < stpmin or stp > stpmax or g >= 0:
            self.task = "ERROR"
            return
        self.brackt = False
        self.stage = 1
        self.finit, self.ginit = f, g
        self.gtest = ftol * g
        self.width = stpmax - stpmin
        self.width1 = self.width / 0.5
        self.stx, self.fx, self.gx = 0.0, f, g
        self.sty, self.fy, self.gy = 0.0, f, g
        self.stmin = 0.0
        self.stmax = stp + 4.0 * stp
        self.task = "FG"

    def update(self, f: float, g: float) -> None:
        """Take f and the directional derivative g at ``self.stp``; set ``task`` and the next ``stp``."""
        stp = self.stp
        ftest = self.finit + stp * self.gtest
        if self.stage == 1 and f <= ftest and g >= 0:
            self.stage = 2
        task = "FG"
        if self.brackt and (stp <= self.stmin or stp >= self.stmax):
            task = "WARNING: ROUNDING ERRORS PREVENT PROGRESS"
        if self.brackt and self.stmax - self.stmin <= self.xtol * self.stmax:
            task = "WARNING: XTOL TEST SATISFIED"
        if stp == self.stpmax and f <= ftest and g <= self.gtest:
            task = "WARNING: STP = STPMAX"
        if stp == self.stpmin and (f > ftest or g >= self.gtest):
            task = "WARNING: STP = STPMIN"
        if f <= ftest and abs(g) <= self.gtol * (-self.ginit):
            task = "CONVERGENCE"
        if task != "FG":
            self.task = task
            return
        if self.stage == 1 and f <= self.fx and f > ftest:
            gt = self.gtest
            fm, fxm, fym = f - stp * gt, self.fx - self.stx * gt, self.fy - self.sty * gt
            gm, gxm, gym = g - gt, self.gx - gt, self.gy - gt
            self.stx, fxm, gxm, self.sty, fym, gym, stp = self._step(
                self.stx, fxm, gxm, self.sty, fym, gym, stp, fm, gm)
            self.fx, self.fy = fxm + self.stx * gt, fym + self.sty * gt
            self.gx, self.gy = gxm + gt, gym + gt
        else:
            self.stx, self.fx, self.gx, self.sty, self.fy, self.gy, stp = self._step(
                self.stx, self.fx, self.gx, self.sty, self.fy, self.gy, stp, f, g)
        if self.brackt:
            if abs(self.sty - self.stx) >= 0.66 * self.width1:
                stp = self.stx + 0.5 * (self.sty - self.stx)
            self.width1 = self.width
            self.width = abs(self.sty - self.stx)
            self.stmin, self.stmax = min(self.stx, self.sty), max(self.stx, self.sty)
        else:
            self.stmin = stp + 1.1 * (stp - self.stx)
            self.stmax = stp + 4.0 * (stp - self.stx)
        stp = min(max(stp, self.stpmin), self.stpmax)
        if self.brackt and (stp <= self.stmin or stp >= self.stmax or
                            self.stmax - self.stmin <= self.xtol * self.stmax):
            stp = self.stx
        self.stp = stp
        self.task = "FG"

    def _step(self, stx, fx, dx, sty, fy, dy, stp, fp, dp):
        """Safeguarded cubic/quadratic step (``dcstep``); returns the updated interval and the new step."""
        stpmin, stpmax = self.stmin, self.stmax
        sgnd = dp * (dx / abs(dx))
        if fp > fx:
            theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
            s = max(abs(theta), abs(dx), abs(dp))
            gamm = s * math.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
            if stp < stx:
                gamm = -gamm
            p = (gamm - dx) + theta
            q = ((gamm - dx) + gamm) + dp
            stpc = stx + (p / q) * (stp - stx)
            stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
            stpf = stpc if abs(stpc - stx) < abs(stpq - stx) else stpc + (stpq - stpc) / 2.0
            self.brackt = True
        elif sgnd < 0:
            theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
            s = max(abs(theta), abs(dx), abs(dp))
            gamm = s * math.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
            if stp > stx:
                gamm = -gamm
            p = (gamm - dp) + theta
            q = ((gamm - dp) + gamm) + dx
            stpc = stp + (p / q) * (stx - stp)
            stpq = stp + (dp / (dp - dx)) * (stx - stp)
            stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
            self.brackt = True
        elif abs(dp) < abs(dx):
            theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
            s = max(abs(theta), abs(dx), abs(dp))
            disc = (theta / s) ** 2 - (dx / s) * (dp / s)
            gamm = 0.0 if disc < 0 else s * math.sqrt(disc)
            if stp > stx:
                gamm = -gamm
            p = (gamm - dp) + theta
            q = (gamm + (dx - dp)) + gamm
            r = p / q
            if r < 0 and gamm != 0:
                stpc = stp + r * (stx - stp)
            elif stp > stx:
                stpc = stpmax
            else:
                stpc = stpmin
            stpq = stp + (dp / (dp - dx)) * (stx - stp)
            if self.brackt:
                stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
                bound = stp + 0.66 * (sty - stp)
                stpf = min(bound, stpf) if stp > stx else max(bound, stpf)
            else:
                stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
                stpf = max(stpmin, min(stpmax, stpf))
        else:
            if self.brackt:
                theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp
                s = max(abs(theta), abs(dy), abs(dp))
                gamm = s * math.sqrt((theta / s) ** 2 - (dy / s) * (dp / s))
                if stp > sty:
                    gamm = -gamm
                p = (gamm - dp) + theta
                q = ((gamm - dp) + gamm) + dy
                stpf = stp + (p / q) * (sty - stp)
            elif stp > stx:
                stpf = stpmax
            else:
                stpf = stpmin
        if fp > fx:
            sty, fy, dy = stp, fp, dp
        else:
            if sgnd < 0:
                sty, fy, dy = stx, fx, dx
            stx, fx, dx = stp, fp, dp
        return stx, fx, dx, sty, fy, dy, stpf


class _LBFGSB:
    """Limited-memory BFGS with box constraints, version 2.3 as in R's ``optim(method = "L-BFGS-B")``.

    Only what psych needs: every variable has a finite lower and upper bound (all ``nbd = 2``), no
    output. The algorithm (generalized Cauchy point, direct primal subspace minimisation with
    backtracking into the box, More-Thuente line search, compact BFGS representation, and the stopping
    rules) follows Byrd, Lu, Nocedal & Zhu (1995) and Zhu et al. (1997) as in the version R ships; it
    differs from scipy's version 3.0 only in the subspace step when a bound is hit (3.0 projects
    instead of backtracking), but that changes the path, and so the result, of Heywood cases.
    """

    def __init__(self, m: int, lower: np.ndarray, upper: np.ndarray):
        self.m, self.l, self.u = m, lower, upper
        self.n = len(lower)
        self.refresh()

    def refresh(self) -> None:
        n = self.n
        self.theta = 1.0
        self.ws = np.zeros((n, 0))
        self.wy = np.zeros((n, 0))
        self.sy = np.zeros((0, 0))
        self.ss = np.zeros((0, 0))
        self.jt = np.zeros((0, 0))  # upper Cholesky factor J' of T = theta S'S + L D^-1 L'

    @property
    def col(self) -> int:
        return self.ws.shape[1]

    # The middle matrix M of B = theta I - W M W' (W = [Y, theta S]) times a 2col vector (bmv).
    def bmv(self, v: np.ndarray) -> np.ndarray:
        col = self.col
        sy = self.sy
        dg = np.diag(sy)
        low = np.tril(sy, -1)
        v1, v2 = v[:col], v[col:]
        p2 = v2 + low @ (v1 / dg)
        p2 = scipy.linalg.solve_triangular(self.jt, p2, trans="T", lower=False, check_finite=False)
        p2 = scipy.linalg.solve_triangular(self.jt, p2, lower=False, check_finite=False)
        p1 = -(v1 / np.sqrt(dg)) / np.sqrt(dg) + (low.T @ p2) / dg
        return np.concatenate([p1, p2])

    def projected_gradient_norm(self, x: np.ndarray, g: np.ndarray) -> float:
        gi = np.where(g < 0, np.maximum(g, x - self.u), np.minimum(g, x - self.l))
        return float(np.max(np.abs(gi))) if len(gi) else 0.0

    def cauchy(self, x: np.ndarray, g: np.ndarray):
        """Generalized Cauchy point: returns (xcp, c = W'(xcp - x), free mask)."""
        l, u, theta, col = self.l, self.u, self.theta, self.col
        tl, tu = x - l, u - x
        neggi = -g
        xlower, xupper = tl <= 0, tu <= 0
        iwhere = np.zeros(self.n, dtype=int)
        iwhere[xlower & (neggi <= 0)] = 1
        iwhere[~xlower & xupper & (neggi >= 0)] = 2
        iwhere[~xlower & ~xupper & (np.abs(neggi) <= 0)] = -3
        moving = np.flatnonzero(iwhere == 0)
        d = np.zeros(self.n)
        d[moving] = neggi[moving]
        f1 = -float(np.sum(neggi[moving] ** 2))
        p = np.concatenate([self.wy[moving].T @ neggi[moving], theta * (self.ws[moving].T @ neggi[moving])])
        t = np.where(neggi[moving] < 0, tl[moving] / -neggi[moving], tu[moving] / neggi[moving])
        xcp = x.copy()
        c = np.zeros(2 * col)
        if len(moving) == 0:
            return xcp, c, iwhere <= 0
        f2 = -theta * f1
        f2_org = f2
        if col > 0:
            f2 -= float(self.bmv(p) @ p)
        dtm = -f1 / f2
        tsum = 0.0
        order = moving[np.argsort(t, kind="stable")]
        tbreak = np.empty(self.n)
        tbreak[moving] = t
        nleft = len(moving)
        all_fixed = len(moving) == self.n
        tj = 0.0
        for ibp in order:
            tj0, tj = tj, tbreak[ibp]
            dt = tj - tj0
            if dtm < dt:
                break
            tsum += dt
            nleft -= 1
            dibp = d[ibp]
            d[ibp] = 0.0
            if dibp > 0:
                zibp = u[ibp] - x[ibp]
                xcp[ibp] = u[ibp]
                iwhere[ibp] = 2
            else:
                zibp = l[ibp] - x[ibp]
                xcp[ibp] = l[ibp]
                iwhere[ibp] = 1
            if nleft == 0 and all_fixed:
                if col > 0:
                    c = c + dt * p
                return xcp, c, iwhere <= 0
            dibp2 = dibp * dibp
            f1 += dt * f2 + dibp2 - theta * dibp * zibp
            f2 -= theta * dibp2
            if col > 0:
                c = c + dt * p
                wbp = np.concatenate([self.wy[ibp], theta * self.ws[ibp]])
                v = self.bmv(wbp)
                wmc, wmp, wmw = float(c @ v), float(p @ v), float(wbp @ v)
                p = p - dibp * wbp
                f1 += dibp * wmc
                f2 += 2.0 * dibp * wmp - dibp2 * wmw
            f2 = max(f2, _EPS * f2_org)
            if nleft > 0:
                dtm = -f1 / f2
            else:  # every breakpoint passed; all variables with breakpoints are bounded
                dtm = 0.0
        dtm = max(dtm, 0.0)
        tsum += dtm
        xcp = xcp + tsum * d
        if col > 0:
            c = c + dtm * p
        return xcp, c, iwhere <= 0

    def subspace(self, x, g, xcp, c, free):
        """Direct primal subspace minimisation over the free variables, backtracked into the box."""
        theta, col = self.theta, self.col
        fr = np.flatnonzero(free)
        ac = np.flatnonzero(~free)
        yf, sf = self.wy[fr], self.ws[fr]
        ya, sa = self.wy[ac], self.ws[ac]
        # K = [-D - Y'ZZ'Y/theta, L_a' - R_z'; L_a - R_z, theta S'AA'S] as an LEL' factorisation (formk).
        b11 = np.diag(np.diag(self.sy)) + (yf.T @ yf) / theta
        saya = sa.T @ ya
        sfyf = sf.T @ yf
        b12 = -np.tril(saya, -1).T + np.triu(sfyf).T
        r11 = scipy.linalg.cholesky(b11, lower=False, check_finite=False)
        b12 = scipy.linalg.solve_triangular(r11, b12, trans="T", lower=False, check_finite=False)
        b22 = theta * (sa.T @ sa) + b12.T @ b12
        r22 = scipy.linalg.cholesky(b22, lower=False, check_finite=False)
        wn = np.block([[r11, b12], [np.zeros((col, col)), r22]])
        # r = -Z'(B(xcp - x) + g)  (cmprlb)
        mc = self.bmv(c)
        r = -theta * (xcp[fr] - x[fr]) - g[fr] + yf @ mc[:col] + theta * (sf @ mc[col:])
        # d = (1/theta) r + (1/theta^2) Z'W K^-1 W'Z r  (subsm)
        wv = np.concatenate([yf.T @ r, theta * (sf.T @ r)])
        wv = scipy.linalg.solve_triangular(wn, wv, trans="T", lower=False, check_finite=False)
        wv[:col] = -wv[:col]
        wv = scipy.linalg.solve_triangular(wn, wv, lower=False, check_finite=False)
        d = (r + yf @ wv[:col] / theta + sf @ wv[col:]) / theta
        # Backtrack to the feasible region (version 2.3).
        z = xcp.copy()
        alpha, temp1, ibd = 1.0, 1.0, -1
        for i, k in enumerate(fr):
            dk = d[i]
            if dk < 0:
                temp2 = self.l[k] - z[k]
                if temp2 >= 0:
                    temp1 = 0.0
                elif dk * alpha < temp2:
                    temp1 = temp2 / dk
            elif dk > 0:
                temp2 = self.u[k] - z[k]
                if temp2 <= 0:
                    temp1 = 0.0
                elif dk * alpha > temp2:
                    temp1 = temp2 / dk
            if temp1 < alpha:
                alpha, ibd = temp1, i
        if alpha < 1.0:
            k = fr[ibd]
            if d[ibd] > 0:
                z[k] = self.u[k]
                d[ibd] = 0.0
            elif d[ibd] < 0:
                z[k] = self.l[k]
                d[ibd] = 0.0
        z[fr] = z[fr] + alpha * d
        return z

    def update(self, s: np.ndarray, y: np.ndarray, sy_new: float, ss_new: float) -> None:
        """Add a correction pair (matupd) and refactor T (formt); may raise LinAlgError."""
        ws = np.column_stack([self.ws, s])
        wy = np.column_stack([self.wy, y])
        col = ws.shape[1]
        sy = np.zeros((col, col))
        ss = np.zeros((col, col))
        sy[:-1, :-1] = self.sy
        ss[:-1, :-1] = self.ss
        sy[-1, :-1] = self.wy.T @ s
        ss[:-1, -1] = self.ws.T @ s
        sy[-1, -1] = sy_new
        ss[-1, -1] = ss_new
        if col > self.m:
            ws, wy, sy, ss = ws[:, 1:], wy[:, 1:], sy[1:, 1:], ss[1:, 1:]
        theta = float(y @ y) / sy_new
        low = np.tril(sy, -1)
        t = theta * ss + (low / np.diag(sy)) @ low.T
        jt = scipy.linalg.cholesky(np.triu(t) + np.triu(t, 1).T, lower=False, check_finite=False)
        self.ws, self.wy, self.sy, self.ss, self.theta, self.jt = ws, wy, sy, ss, theta, jt


def _lbfgsb_r(fun: Callable, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray, *, m: int = 5,
              factr: float = 1e7, pgtol: float = 0.0, maxit: int = 100):
    """Minimise ``fun`` (returning value and gradient) over a box as R's ``optim(method = "L-BFGS-B")``.

    Returns (x, f, iterations, converged, message). ``converged`` is False when R's ``optim`` reports a
    non-zero ``convergence`` code (iteration limit, or an abnormal line search termination).
    """
    opt = _LBFGSB(m, lower, upper)
    tol = factr * _EPS
    x = np.where(x0 <= lower, lower, np.where(x0 >= upper, upper, x0)).astype(float)
    f, g = fun(x)
    if not math.isfinite(f):
        raise FloatingPointError("L-BFGS-B needs finite values of fn")
    iterations = 0
    if opt.projected_gradient_norm(x, g) <= pgtol:
        return x, f, iterations, True, "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL"
    while True:
        try:
            xcp, c, free = opt.cauchy(x, g)
            z = opt.subspace(x, g, xcp, c, free) if opt.col > 0 and free.any() else xcp
        except np.linalg.LinAlgError:  # singular or indefinite system: refresh the memory and restart
            opt.refresh()
            continue
        d = z - x
        dtd = float(d @ d)
        # Maximum step: 1 at the first iteration, else the largest step that stays in the box.
        stpmx = 1e10
        if iterations == 0:
            stpmx = 1.0
        else:
            for i in np.flatnonzero(d != 0):
                a1 = d[i]
                if a1 < 0:
                    a2 = lower[i] - x[i]
                    if a2 >= 0:
                        stpmx = 0.0
                    elif a1 * stpmx < a2:
                        stpmx = a2 / a1
                else:
                    a2 = upper[i] - x[i]
                    if a2 <= 0:
                        stpmx = 0.0
                    elif a1 * stpmx > a2:
                        stpmx = a2 / a1
        stp = 1.0  # every variable is bounded ("boxed"), so the first step is 1 too
        x_old, g_old, f_old = x, g, f
        gd = float(g @ d)
        gd_old = gd
        failed = gd >= 0
        if not failed:
            search = _LineSearch(f, gd, stp, stpmx)
            failed = search.task == "ERROR"
            evaluations = 0
            while not failed and search.task == "FG":
                evaluations += 1
                if evaluations > 20:
                    failed = True
                    break
                stp = search.stp
                x = z.copy() if stp == 1.0 else stp * d + x_old
                f, g = fun(x)
                if not math.isfinite(f):
                    raise FloatingPointError("L-BFGS-B needs finite values of fn")
                gd = float(g @ d)
                search.update(f, gd)
            stp = search.stp
        if failed:
            x, g, f = x_old, g_old, f_old
            if opt.col == 0:
                if abs(gd_old) <= tol * max(abs(f), 1.0):
                    # The whole step could lower f by no more than the convergence test allows: the search
                    # failed on rounding (how it fails there depends on the BLAS kernel), so this is the
                    # convergence R would report one step later, not an abnormal termination.
                    return x, f, iterations + 1, True, "CONVERGENCE: REL_REDUCTION_OF_F <= FACTR*EPSMCH"
                return x, f, iterations + 1, False, "ERROR: ABNORMAL_TERMINATION_IN_LNSRCH"
            opt.refresh()
            continue
        iterations += 1
        sbgnrm = opt.projected_gradient_norm(x, g)
        if iterations > maxit:
            return x, f, iterations, False, "NEW_X (iteration limit reached)"
        if sbgnrm <= pgtol:
            return x, f, iterations, True, "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL"
        if f_old - f <= tol * max(abs(f_old), abs(f), 1.0):
            return x, f, iterations, True, "CONVERGENCE: REL_REDUCTION_OF_F <= FACTR*EPSMCH"
        y = g - g_old
        if stp == 1.0:
            dr, ddum, s, ss_new = gd - gd_old, -gd_old, d, dtd
        else:
            dr, ddum, s, ss_new = (gd - gd_old) * stp, -gd_old * stp, stp * d, stp * stp * dtd
        if dr <= _EPS * ddum:
            continue  # skip the BFGS update
        try:
            opt.update(s, y, dr, ss_new)
        except np.linalg.LinAlgError:
            opt.refresh()


def _optim(fun: Callable, start: np.ndarray, upper: float):
    """R's ``optim(start, fn, gr, method = "L-BFGS-B", lower = 0.005, upper, control = list(parscale =
    rep(0.01, p)))``: optimise over ``psi / 0.01`` with gradients scaled by 0.01."""

    def scaled(x):
        f, g = fun(x * _PARSCALE)
        return f, g * _PARSCALE

    p = len(start)
    x, _, iterations, converged, message = _lbfgsb_r(
        scaled, start / _PARSCALE, np.full(p, _LOWER / _PARSCALE), np.full(p, upper / _PARSCALE),
        m=_LMM, factr=_FACTR, pgtol=0.0, maxit=_MAXIT)
    return x * _PARSCALE, iterations, converged, message


def _extract(r: np.ndarray, k: int, method: str, smc: np.ndarray) -> _Extraction:
    p = r.shape[0]
    upper = max(float(smc.max()), 1.0)
    start = np.diag(r) - smc
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
            raise PsytestError("singular")  # caught by efa(), which words the message

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
# Rotations (GPArotation::GPFoblq / oblimin, stats::varimax, psych::kaiser + psych::Promax)
# --------------------------------------------------------------------------------------------------


def _vgq_oblimin(lam: np.ndarray) -> tuple[float, np.ndarray]:
    """``GPArotation:::vgQ.oblimin`` with gam = 0 (quartimin): value and gradient."""
    l2 = lam * lam
    x = l2.sum(axis=1, keepdims=True) - l2  # L^2 %*% (!diag(TRUE, k))
    return float(np.sum(l2 * x) / 4.0), lam * x


def _gpf_oblq(a: np.ndarray, eps: float = 1e-5, maxit: int = 1000):
    """``GPArotation::GPFoblq(A, Tmat = diag(k), normalize = FALSE, eps = 1e-5, maxit = 1000)`` for oblimin.

    Returns (pattern, Phi, converged, iterations).
    """
    k = a.shape[1]
    t = np.eye(k)
    t_inv = np.linalg.inv(t)
    lam = a @ t_inv.T
    f, gq = _vgq_oblimin(lam)
    g = -(lam.T @ gq @ t_inv).T
    al = 1.0
    s = math.inf
    iteration = 0
    for iteration in range(maxit + 1):
        gp = g - t * np.sum(t * g, axis=0)
        s = math.sqrt(float(np.sum(gp * gp)))
        if s < eps:
            break
        al *= 2.0
        for _ in range(11):
            x = t - al * gp
            v = 1.0 / np.sqrt(np.sum(x * x, axis=0))
            tt = x * v
            tt_inv = np.linalg.inv(tt)
            lam = a @ tt_inv.T
            ft, gqt = _vgq_oblimin(lam)
            if f - ft > 0.5 * s * s * al:
                break
            al /= 2.0
        t = tt
        f = ft
        g = -(lam.T @ gqt @ tt_inv).T
    converged = s < eps
    return lam, t.T @ t, converged, iteration


def _varimax(x: np.ndarray, normalize: bool = True, eps: float = 1e-5):
    """``stats::varimax``: returns (loadings, rotation matrix, converged)."""
    nc = x.shape[1]
    if nc < 2:
        return x.copy(), np.eye(nc), True
    if normalize:
        sc = np.sqrt(np.sum(x * x, axis=1))
        x = x / sc[:, None]
    p = x.shape[0]
    tt = np.eye(nc)
    d = 0.0
    converged = False
    for _ in range(1000):
        z = x @ tt
        b = x.T @ (z**3 - z * (np.sum(z * z, axis=0) / p))
        u, sv, vt = np.linalg.svd(b)
        tt = u @ vt
        dpast = d
        d = float(np.sum(sv))
        if d < dpast * (1 + eps):
            converged = True
            break
    z = x @ tt
    if normalize:
        z = z * sc[:, None]
    return z, tt, converged


def _promax(x: np.ndarray, m: int = 4):
    """``psych::Promax(x, m = 4)``: returns (loadings, Phi, converged)."""
    z, rotmat, converged = _varimax(x)
    q = z * np.abs(z) ** (m - 1)
    u = np.linalg.lstsq(z, q, rcond=None)[0]  # lm.fit(x, Q)$coefficients
    d = np.diag(np.linalg.inv(u.T @ u))
    u = u * np.sqrt(d)[None, :]
    loadings = z @ u
    u = rotmat @ u
    ui = np.linalg.inv(u)
    return loadings, ui @ ui.T, converged


def _kaiser_promax(f: np.ndarray):
    """``psych::kaiser(f, rotate = "Promax")``, which psych's ``rotate = "promax"`` calls."""
    h = np.sqrt(np.sum(f * f, axis=1))
    loadings, phi, converged = _promax(f / h[:, None])
    return loadings * h[:, None], phi, converged


def _rotate(loadings: np.ndarray, rotation: str, notes: list[str]):
    """Returns (pattern, Phi or None, converged)."""
    if rotation == "none" or loadings.shape[1] < 2:
        return loadings, None, True
    if rotation == "varimax":
        z, _, converged = _varimax(loadings)
        return z, None, converged
    if rotation == "promax":
        return _kaiser_promax(loadings)
    try:
        lam, phi, converged, _ = _gpf_oblq(loadings)
        if not np.isfinite(lam).all():
            raise np.linalg.LinAlgError("non-finite oblimin solution")
    except np.linalg.LinAlgError:
        notes.append("the oblimin rotation failed; Promax was used instead, as psych does")
        lam, phi, converged = _promax(loadings)
    return lam, phi, converged


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
    m, _ = _cor_smooth(m)
    rs, smoothed = _cor_smooth(r, r_values)
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


def _efa(prep: _Prepared, n_factors: int, method: str, rotation: str, with_stats: bool = True) -> EFAResult:
    r = prep.r
    p = r.shape[0]
    names = prep.names
    notes = list(prep.notes)
    k = _check_factors(n_factors, p)

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
            raise PsytestError(
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

    smc = _smc(r)
    try:
        ext = _extract(r, k, method, smc)
    except (PsytestError, FloatingPointError):
        raise PsytestError(
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
        raise PsytestError("factor extraction produced non-finite loadings; check the data for degenerate items")
    model = loadings @ loadings.T
    communality = np.diag(model).copy()

    rotated, phi, rot_converged = _rotate(loadings, rotation, notes)
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
            f"Heywood case: the uniqueness of {_names_list(heywood)} is at psych's lower bound of {_LOWER}"
        )
    ultra = [names[i] for i in np.flatnonzero(communality > 1)]
    if ultra:
        notes.append(f"ultra-Heywood case: communality above 1 for {_names_list(ultra)}; examine the results carefully")

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
    PsytestError
        Constant items (unless ``drop_constant``), too many factors for the items, ``method="ml"`` on a
        singular correlation matrix, or malformed input. Messages are one line and say what to do.

    Notes
    -----
    The algorithm is described in the module docstring; results agree with psych 2.2.9 to rounding
    error on the reference data (``tests/reference/factor_analysis.R``).
    """
    if method not in METHODS:
        raise PsytestError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if rotation not in ROTATIONS:
        raise PsytestError(f"rotation must be one of {', '.join(ROTATIONS)}, got {rotation!r}")
    if data is not None and n_obs is not None:
        raise PsytestError("n_obs goes with corr=; with data it is the number of rows")
    prep = _prepare(data, corr, n_obs, drop_constant)
    return _efa(prep, n_factors, method, rotation)


# --------------------------------------------------------------------------------------------------
# omega
# --------------------------------------------------------------------------------------------------


def omega(
    data: pd.DataFrame | np.ndarray | None = None,
    n_factors: int = 3,
    *,
    corr: pd.DataFrame | np.ndarray | None = None,
    n_obs: int | None = None,
    drop_constant: bool = False,
) -> OmegaResult:
    """McDonald's omega total and hierarchical, as ``psych::omega(data, nfactors = n_factors,
    fm = "minres", rotate = "oblimin", key = rep(1, p), plot = FALSE)``.

    Parameters
    ----------
    data : DataFrame or ndarray, optional
        Item responses, respondents x items, already reverse keyed (items are not flipped).
    n_factors : int
        Number of group factors. With 3 or more, omega hierarchical is estimated from the
        Schmid-Leiman transformation of a ``minres``/oblimin solution; with 1 or 2 only omega total is
        returned (``omega_hierarchical=None``, see "Differences from R" in the module docstring).
    corr, n_obs, drop_constant
        As in :func:`efa`.

    Returns
    -------
    OmegaResult
        :math:`\\omega_t = (V_t - \\sum u^2)/V_t`, :math:`\\omega_h = (\\sum g)^2/V_t`, subscale omegas
        and the Schmid-Leiman loadings (see the module docstring for the formulas).

    Notes
    -----
    On the reference data omega total and omega hierarchical agree with psych to about 1e-12 because every
    iterative step (L-BFGS-B, varimax, GPFoblq, the second-order one-factor fit) is replicated with R's
    start values and stopping rules. Had we instead converged each step fully, the difference from psych
    would be of the order of psych's own convergence error, about 1e-6 for omega (L-BFGS-B stops at a
    relative objective reduction of 2e-9, GPFoblq at a gradient norm of 1e-5); so agreement to 1e-6 is
    only guaranteed while the same algorithm is run, and the tests use 1e-8.
    """
    prep = _prepare(data, corr, n_obs, drop_constant)
    r = prep.r
    p = r.shape[0]
    names = prep.names
    notes = list(prep.notes)
    k = _check_factors(n_factors, p)

    fact = _efa(prep, k, "minres", "varimax", with_stats=False)
    if fact.note:
        notes.extend(n for n in fact.note.split("; ") if n not in notes)
    orth = fact.loadings.to_numpy()
    h2 = np.sum(orth**2, axis=1)
    u2 = np.diag(r) - h2
    vt = float(r.sum())
    vitem = float(np.trace(r))
    omega_total = (vt - float(u2.sum())) / vt
    alpha = ((vt - vitem) / vt) * (p / (p - 1))
    lambda6 = (vt + float(_smc(r).sum()) - vitem) / vt

    common = dict(
        omega_total=omega_total,
        alpha=alpha,
        lambda6=lambda6,
        communalities=pd.Series(h2, index=names, name="h2"),
        uniquenesses=pd.Series(u2, index=names, name="u2"),
        n_factors=k,
        n_obs=prep.n_obs,
        dropped_items=prep.dropped,
    )
    if k < 3:
        notes.append(
            "omega hierarchical needs at least 3 group factors to be identified; only omega total is given"
            + (" (psych reports a value by fixing the two general-factor loadings equal)" if k == 2 else "")
        )
        oblique = phi_df = None
        if k == 2:
            lam, phi, converged, _ = _gpf_oblq(orth)
            if not converged:
                notes.append("the oblimin rotation did not converge (as psych, the last iterate is used)")
            cols = ["F1", "F2"]
            oblique = pd.DataFrame(lam, index=names, columns=cols)
            phi_df = pd.DataFrame(phi, index=cols, columns=cols)
        return OmegaResult(
            omega_hierarchical=None,
            omega_limit=None,
            ecv=None,
            general_loadings=None,
            group_loadings=None,
            schmid_leiman=None,
            omega_subscale=None,
            oblique_loadings=oblique,
            phi=phi_df,
            second_order_loadings=None,
            note="; ".join(dict.fromkeys(notes)) or None,
            **common,
        )

    try:
        fload, phi, converged, _ = _gpf_oblq(orth)
        if not np.isfinite(fload).all():
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        notes.append("the oblimin rotation failed; Promax was used instead, as psych does")
        fload, phi, converged = _promax(orth)
    if not converged:
        notes.append("the oblimin rotation did not converge (as psych, the last iterate is used)")
    gfit = _efa(_Prepared(phi, [f"F{j + 1}" for j in range(k)], None, None, (), [], False), 1, "minres", "oblimin",
                with_stats=False)
    if gfit.note:
        notes.append(f"second-order factor: {gfit.note}")
    gload = gfit.loadings.to_numpy()[:, 0]
    g = fload @ gload
    uniq2 = np.maximum(fload**2 - (fload * gload[None, :]) ** 2, 0.0)
    group = np.sign(fload) * np.sqrt(uniq2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p2 = g**2 / h2
    group_cols = [f"F{j + 1}*" for j in range(k)]
    sl = pd.DataFrame(np.column_stack([g, group, h2, u2, p2]), index=names, columns=["g", *group_cols, "h2", "u2", "p2"])

    gsq = float(g.sum()) ** 2
    omega_h = gsq / vt
    omega_limit = gsq / (vt - float(u2.sum()))
    ev = np.sum(np.column_stack([g, group]) ** 2, axis=0)
    ecv = float(ev[0] / ev.sum())

    sub = np.argmax(np.abs(group), axis=1)
    total = np.full(k + 1, np.nan)
    general = np.full(k + 1, np.nan)
    grp = np.full(k + 1, np.nan)
    grs = 0.0
    for j in range(k):
        idx = np.flatnonzero(sub == j)
        if len(idx):
            vgr = float(r[np.ix_(idx, idx)].sum())
            gr = float(group[idx, j].sum())
            gg = float(g[idx].sum())
            grs += gr**2
            grp[j + 1] = gr**2 / vgr
            general[j + 1] = gg**2 / vgr
            total[j + 1] = (gr**2 + gg**2) / vgr
    general[0] = gsq / vt
    grp[0] = grs / vt
    total[0] = omega_total
    subscale = pd.DataFrame({"total": total, "general": general, "group": grp}, index=["g", *group_cols])

    negative = [names[i] for i in np.flatnonzero(g < 0)]
    if negative:
        notes.append(
            f"{_names_list(negative)} load{'s' if len(negative) == 1 else ''} negatively on the general factor; "
            "reverse-key before computing omega (psych would flip them)"
        )
    fcols = [f"F{j + 1}" for j in range(k)]
    return OmegaResult(
        omega_hierarchical=omega_h,
        omega_limit=omega_limit,
        ecv=ecv,
        general_loadings=pd.Series(g, index=names, name="g"),
        group_loadings=sl[group_cols].copy(),
        schmid_leiman=sl,
        omega_subscale=subscale,
        oblique_loadings=pd.DataFrame(fload, index=names, columns=fcols),
        phi=pd.DataFrame(phi, index=fcols, columns=fcols),
        second_order_loadings=gload,
        note="; ".join(dict.fromkeys(notes)) or None,
        **common,
    )


# --------------------------------------------------------------------------------------------------
# Congruence
# --------------------------------------------------------------------------------------------------


def _as_loadings(x, what: str) -> tuple[np.ndarray, list[str] | None, list[str] | None]:
    if isinstance(x, EFAResult):
        x = x.loadings
    if isinstance(x, pd.Series):
        x = x.to_frame()
    if isinstance(x, pd.DataFrame):
        values = x.to_numpy(dtype=float)
        rows, cols = [str(i) for i in x.index], [str(c) for c in x.columns]
    else:
        values = np.asarray(x, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        rows = cols = None
    if values.ndim != 2:
        raise PsytestError(f"{what} must be a loadings matrix (items x factors)")
    if not np.isfinite(values).all():
        raise PsytestError(f"{what} has missing or infinite loadings; drop those items first")
    zero = np.flatnonzero(np.sum(values * values, axis=0) == 0)
    if len(zero):
        label = cols[zero[0]] if cols else str(zero[0] + 1)
        raise PsytestError(f"factor {label} of {what} has only zero loadings, so its congruence is undefined")
    return values, rows, cols


def tucker_congruence(a, b) -> pd.DataFrame | np.ndarray:
    """Tucker's congruence coefficients between the factors (columns) of two loading matrices.

    .. math:: \\phi(x, y) = \\frac{\\sum_i x_i y_i}{\\sqrt{\\sum_i x_i^2 \\, \\sum_i y_i^2}}

    Matches ``psych::factor.congruence(a, b, digits = <no rounding>)`` (psych rounds to 2 digits by
    default).

    Parameters
    ----------
    a, b : DataFrame, ndarray or EFAResult
        Loadings, items x factors, with the same items in the same order (DataFrames are aligned on
        their index when both have one).

    Returns
    -------
    DataFrame (factors of ``a`` x factors of ``b``) when both inputs are labelled, else an ndarray.
    """
    x, xr, xc = _as_loadings(a, "a")
    y, yr, yc = _as_loadings(b, "b")
    if xr is not None and yr is not None and xr != yr:
        if set(xr) != set(yr):
            raise PsytestError("a and b have different items; congruence compares loadings of the same items")
        y = pd.DataFrame(y, index=yr).loc[xr].to_numpy()
    if x.shape[0] != y.shape[0]:
        raise PsytestError(f"a has {x.shape[0]} items but b has {y.shape[0]}; pass loadings of the same items")
    phi = (x.T @ y) / np.sqrt(np.outer(np.sum(x * x, axis=0), np.sum(y * y, axis=0)))
    if xc is not None and yc is not None:
        return pd.DataFrame(phi, index=xc, columns=yc)
    return phi


def match_factors(reference, loadings, phi=None) -> FactorMatch:
    """Permute and sign-flip the factors of ``loadings`` to best match ``reference``.

    The assignment maximises the sum of :math:`|\\phi|` (Tucker's congruence) over matched pairs (the
    Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``); each matched factor is then flipped so
    that its congruence with the reference factor is positive.

    Parameters
    ----------
    reference : DataFrame, ndarray or EFAResult
        Reference loadings, items x k.
    loadings : DataFrame, ndarray or EFAResult
        Loadings to match, items x m with m >= k (extra factors are left out).
    phi : DataFrame or ndarray, optional
        Factor correlations of ``loadings`` (taken from an EFAResult if not given), permuted and
        re-signed along with the factors.

    Returns
    -------
    FactorMatch
    """
    if phi is None and isinstance(loadings, EFAResult):
        phi = loadings.phi
    ref, _, ref_cols = _as_loadings(reference, "reference")
    lam, lam_rows, lam_cols = _as_loadings(loadings, "loadings")
    if ref.shape[0] != lam.shape[0]:
        raise PsytestError(
            f"reference has {ref.shape[0]} items but loadings has {lam.shape[0]}; pass loadings of the same items"
        )
    if lam.shape[1] < ref.shape[1]:
        raise PsytestError(
            f"loadings has {lam.shape[1]} factors but reference has {ref.shape[1]}; every reference factor needs a match"
        )
    congruence = np.asarray(tucker_congruence(ref, lam))
    rows, cols = scipy.optimize.linear_sum_assignment(-np.abs(congruence))
    order = cols[np.argsort(rows)]
    signs = np.where(congruence[np.arange(ref.shape[1]), order] < 0, -1.0, 1.0)
    matched = lam[:, order] * signs
    labels = ref_cols or (lam_cols and [lam_cols[j] for j in order]) or [f"F{j + 1}" for j in range(ref.shape[1])]
    index = lam_rows if lam_rows is not None else None
    phi_out = None
    if phi is not None:
        ph = np.asarray(phi, dtype=float)[np.ix_(order, order)] * signs[:, None] * signs[None, :]
        phi_out = pd.DataFrame(ph, index=labels, columns=labels)
    return FactorMatch(
        loadings=pd.DataFrame(matched, index=index, columns=labels),
        phi=phi_out,
        order=tuple(int(j) for j in order),
        signs=tuple(int(s) for s in signs),
        congruence=pd.Series(np.abs(congruence[np.arange(ref.shape[1]), order]), index=labels, name="congruence"),
    )
