"""Tucker's congruence between factor solutions, and matching one solution's factors to another's.

:func:`tucker_congruence` is ``psych::factor.congruence`` without rounding: between every pair of
columns :math:`x, y` of two loading matrices over the same items,

.. math:: \\phi(x, y) = \\frac{\\sum_i x_i y_i}{\\sqrt{\\sum_i x_i^2 \\, \\sum_i y_i^2}}.

:func:`match_factors` permutes and sign-flips the factors of one solution to best match a reference
(the Hungarian algorithm on :math:`|\\phi|`), for comparing solutions whose factor order and signs are
arbitrary. Agreement with psych on the reference data: about 1e-15 (``tests/test_factor_analysis.py``).
Malformed loadings (non-finite values, a factor with only zero loadings, different items) raise a
one-line :class:`ValueError`.

References
----------
Tucker, L. R. (1951). A method for synthesis of factor analysis studies (Personnel Research Section
Report No. 984). Department of the Army.
Lorenzo-Seva, U., & ten Berge, J. M. F. (2006). Tucker's congruence coefficient as a meaningful index of
factor similarity. Methodology, 2, 57-64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.optimize

from psychometrics.statistics.efa import EFAResult

__all__ = ["FactorMatch", "match_factors", "tucker_congruence"]


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


def _as_loadings(x, what: str) -> tuple[np.ndarray, list[str] | None, list[str] | None]:
    rows: list[str] | None
    cols: list[str] | None
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
        raise ValueError(f"{what} must be a loadings matrix (items x factors)")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} has missing or infinite loadings; drop those items first")
    zero = np.flatnonzero(np.sum(values * values, axis=0) == 0)
    if len(zero):
        label = cols[zero[0]] if cols else str(zero[0] + 1)
        raise ValueError(f"factor {label} of {what} has only zero loadings, so its congruence is undefined")
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
            raise ValueError("a and b have different items; congruence compares loadings of the same items")
        y = pd.DataFrame(y, index=yr).loc[xr].to_numpy()
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"a has {x.shape[0]} items but b has {y.shape[0]}; pass loadings of the same items")
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
        raise ValueError(
            f"reference has {ref.shape[0]} items but loadings has {lam.shape[0]}; pass loadings of the same items"
        )
    if lam.shape[1] < ref.shape[1]:
        raise ValueError(
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
