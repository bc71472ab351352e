"""McDonald's omega total and hierarchical from a Schmid-Leiman solution, matching R's ``psych::omega``.

:func:`omega` is ``psych::omega(m, nfactors, fm = "minres", rotate = "oblimin", key = rep(1, p),
plot = FALSE)`` of psych 2.2.9, i.e. the Schmid-Leiman solution on data that is already reverse keyed.

A ``minres`` EFA with :math:`k` factors (:func:`psychometrics.statistics.efa.fit_efa`) is rotated by
varimax (giving orthogonal loadings :math:`A`, communalities :math:`h^2_i = \\sum_j a_{ij}^2`,
:math:`u^2_i = 1 - h^2_i`), then by oblimin from the varimax solution (pattern :math:`F`, factor
correlations :math:`\\Phi`). A one-factor ``minres`` analysis of :math:`\\Phi` gives the second-order
loadings :math:`g`. Schmid-Leiman: general loadings :math:`F g`, group loadings
:math:`\\mathrm{sign}(F) \\sqrt{\\max(F^2 (1 - g^2), 0)}`. With :math:`V_t = \\mathbf 1^\\top R \\mathbf 1`:

.. math:: \\omega_t = \\frac{V_t - \\sum_i u^2_i}{V_t},\\qquad
          \\omega_h = \\frac{(\\sum_i g_i)^2}{V_t}.

Subscale omegas (``omega.group``): each item belongs to the group factor on which it loads most (in
absolute value); for group :math:`s` with items :math:`I_s` and :math:`V_s = \\mathbf 1^\\top
R_{I_s I_s} \\mathbf 1`: total :math:`((\\sum_{I_s} f^*_{is})^2 + (\\sum_{I_s} g_i)^2)/V_s`, general
:math:`(\\sum_{I_s} g_i)^2 / V_s`, group :math:`(\\sum_{I_s} f^*_{is})^2/V_s`.

Agreement with R
----------------
Every iterative step is R's (L-BFGS-B 2.3, varimax, GPFoblq, the one-factor fit of :math:`\\Phi`), so
omega total and hierarchical agree with psych to about 1e-13 on the reference data
(``tests/reference/factor_analysis.R``, ``tests/test_factor_analysis.py``, which uses 1e-8).

Differences from R
------------------
Degenerate input raises :class:`ValueError` as :func:`psychometrics.statistics.efa.efa` does.

1. psych reverses items whose general-factor loading is negative (``flip = TRUE``). psytest passes
   already reverse-keyed data, so :func:`omega` never flips; this matches ``psych::omega(..., key =
   rep(1, p))`` (and ``flip = TRUE`` whenever no general loading is negative). Items that still load
   negatively on the general factor are named in ``note``.

2. With fewer than three group factors omega hierarchical is not identified (the general factor of two
   correlated factors is not determined by their correlation). psych returns a value anyway, with a
   message, by fixing the two second-order loadings equal (``option = "equal"``); we return
   ``omega_hierarchical=None`` (and no Schmid-Leiman loadings or subscale omegas) with a ``note``.
   ``n_factors=1`` gives omega total only (psych also reports an "omega_h", :math:`(\\sum\\lambda)^2/V_t` of
   the one-factor model, which is not hierarchical).

References
----------
McDonald, R. P. (1999). Test theory: A unified treatment. Erlbaum.
Schmid, J., & Leiman, J. M. (1957). The development of hierarchical factor solutions. Psychometrika, 22,
53-61.
Zinbarg, R. E., Revelle, W., Yovel, I., & Li, W. (2005). Cronbach's alpha, Revelle's beta, and
McDonald's omega_h. Psychometrika, 70, 123-133.
Revelle, W. (2022). psych: Procedures for Psychological, Psychometric, and Personality Research, version
2.2.9. https://CRAN.R-project.org/package=psych
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from psychometrics.statistics.efa import check_n_factors, fit_efa
from psychometrics.statistics.item_correlations import ItemCorrelations, item_correlations, names_list, smc
from psychometrics.statistics.rotation import oblimin, promax

__all__ = ["OmegaResult", "omega"]


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


VT_FLOOR = 1e-8
"""Below this share of the item count, the sum of the item correlations is taken as 0 (see :func:`omega`)."""


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
    prep = item_correlations(data, corr, n_obs, drop_constant)
    r = prep.r
    p = r.shape[0]
    names = prep.names
    notes = list(prep.notes)
    k = check_n_factors(n_factors, p)

    fact = fit_efa(prep, k, "minres", "varimax", with_stats=False)
    if fact.note:
        notes.extend(n for n in fact.note.split("; ") if n not in notes)
    orth = fact.loadings.to_numpy()
    h2 = np.sum(orth**2, axis=1)
    u2 = np.diag(r) - h2
    vt = float(r.sum())
    vitem = float(np.trace(r))
    if vt <= VT_FLOOR * p:  # the items' correlations cancel out: every ratio over V_t is undefined
        notes.append(f"the item correlations sum to {vt:.2g} (about 0): total variance of the sum is nil, so omega, "
                     "alpha and lambda 6 are undefined (reverse-key the items, or drop the scale)")
        omega_total = alpha = lambda6 = float("nan")
    else:
        omega_total = (vt - float(u2.sum())) / vt
        alpha = ((vt - vitem) / vt) * (p / (p - 1))
        lambda6 = (vt + float(smc(r).sum()) - vitem) / vt

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
            lam, phi, converged, _ = oblimin(orth)
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
        fload, phi, converged, _ = oblimin(orth)
        if not np.isfinite(fload).all():
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        notes.append("the oblimin rotation failed; Promax was used instead, as psych does")
        fload, phi, converged = promax(orth)
    if not converged:
        notes.append("the oblimin rotation did not converge (as psych, the last iterate is used)")
    second_order = ItemCorrelations(phi, [f"F{j + 1}" for j in range(k)], None, None, (), [], False)
    gfit = fit_efa(second_order, 1, "minres", "oblimin", with_stats=False)
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
    undefined = vt <= VT_FLOOR * p
    omega_h = float("nan") if undefined else gsq / vt
    omega_limit = float("nan") if undefined else gsq / (vt - float(u2.sum()))
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
    general[0] = float("nan") if undefined else gsq / vt
    grp[0] = float("nan") if undefined else grs / vt
    total[0] = omega_total
    subscale = pd.DataFrame({"total": total, "general": general, "group": grp}, index=["g", *group_cols])

    negative = [names[i] for i in np.flatnonzero(g < 0)]
    if negative:
        notes.append(
            f"{names_list(negative)} load{'s' if len(negative) == 1 else ''} negatively on the general factor; "
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
