"""The item correlation matrix a factor analysis starts from, as R's psych builds and repairs it.

:func:`item_correlations` turns respondents x items data (Pearson correlations, pairwise-complete as
``cor(x, use = "pairwise")``, with the pairwise counts psych calls ``np.obs``) or a given correlation or
covariance matrix into an :class:`ItemCorrelations`, refusing input no factor model can use (constant
items unless they are to be dropped, non-numeric or infinite values, an asymmetric matrix, correlations
outside [-1, 1]) with a one-line :class:`ValueError` that says what to do. :func:`smc` and
:func:`cor_smooth` are psych's ``smc`` and ``cor.smooth``. Used by
:mod:`psychometrics.statistics.efa` and :mod:`psychometrics.statistics.omega`.

References
----------
Revelle, W. (2022). psych: Procedures for Psychological, Psychometric, and Personality Research, version
2.2.9. https://CRAN.R-project.org/package=psych
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.linalg


__all__ = ["ItemCorrelations", "cor_smooth", "item_correlations", "names_list", "smc"]

_EPS = float(np.finfo(float).eps)


def names_list(names: Sequence[str], limit: int = 5) -> str:
    """Names for a message: ``a``, ``a and b``, ``a, b and c``, or the first ``limit`` and how many more."""
    names = [str(n) for n in names]
    if len(names) == 1:
        return names[0]
    if len(names) <= limit:
        return ", ".join(names[:-1]) + " and " + names[-1]
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


@dataclass
class ItemCorrelations:
    """An item correlation matrix ready for factoring.

    Attributes
    ----------
    r : ndarray
        The correlation matrix (symmetric, unit diagonal).
    names : list of str
        Item names, in the order of ``r``.
    n_obs : int or None
        Number of respondents (rows of the data, or as given with a matrix).
    np_obs : ndarray or None
        Pairwise counts of jointly answered items (psych ``np.obs``) when the data have missing values.
    dropped : tuple of str
        Constant items dropped.
    notes : list of str
        Warnings for the result's ``note``.
    from_data : bool
        Whether ``r`` was computed from data (rather than given).
    """

    r: np.ndarray
    names: list[str]
    n_obs: int | None
    np_obs: np.ndarray | None
    dropped: tuple[str, ...]
    notes: list[str]
    from_data: bool


def _cov2cor(x: np.ndarray) -> np.ndarray:
    """A covariance matrix scaled to a correlation matrix (R's ``cov2cor``), with an exact unit diagonal."""
    d = 1.0 / np.sqrt(np.diag(x))
    r = x * d[:, None] * d[None, :]
    np.fill_diagonal(r, 1.0)
    return r


def item_correlations(data, corr, n_obs, drop_constant: bool) -> ItemCorrelations:
    """Correlation matrix, item names and sample size from data or a correlation matrix.

    Give either ``data`` (respondents x items, a DataFrame or array; NaN for a missing answer) or
    ``corr`` (a correlation or covariance matrix, with ``n_obs`` respondents if known). Constant items
    are an error unless ``drop_constant``, which drops them with a note."""
    notes: list[str] = []
    if (data is None) == (corr is None):
        raise ValueError("give either data (respondents x items) or corr= (a correlation matrix), not both")
    if data is not None:
        if isinstance(data, pd.DataFrame):
            names = [str(c) for c in data.columns]
            try:
                x = data.to_numpy(dtype=float, na_value=np.nan)
            except (TypeError, ValueError):
                bad = [str(c) for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]
                raise ValueError(
                    f"item {names_list(bad)} has non-numeric responses; convert responses to numbers first"
                ) from None
        else:
            try:
                x = np.asarray(data, dtype=float)
            except (TypeError, ValueError):
                raise ValueError("data must be numeric (respondents x items); convert responses to numbers") from None
            if x.ndim != 2:
                raise ValueError(f"data must be a 2-D table of respondents x items, not {x.ndim}-D")
            names = [f"V{j + 1}" for j in range(x.shape[1])]
        if x.ndim != 2 or x.shape[1] < 2:
            raise ValueError("factor analysis needs at least 2 items (columns)")
        if np.isinf(x).any():
            bad = [names[j] for j in np.flatnonzero(np.isinf(x).any(axis=0))]
            raise ValueError(f"item {names_list(bad)} has infinite values; replace them with missing values (NaN)")
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"factor analysis needs at least 2 respondents, got {n}; collect more samples")
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
                raise ValueError(
                    f"item {what} {verb} constant, so correlations with it are undefined; drop "
                    f"{'it' if len(constant) == 1 else 'them'} (or pass drop_constant=True) or use more samples"
                )
            dropped = tuple(names[j] for j in constant)
            keep = [j for j in range(x.shape[1]) if j not in set(constant)]
            if len(keep) < 2:
                raise ValueError(
                    f"only {len(keep)} of {x.shape[1]} items vary; factor analysis needs at least 2; use more samples"
                )
            x = x[:, keep]
            names = [names[j] for j in keep]
            observed = observed[:, keep]
            notes.append(f"dropped constant item{'s' if len(dropped) > 1 else ''} {names_list(dropped)}")
        if observed.all():
            r = np.corrcoef(x, rowvar=False)
            np_obs = None
        else:
            r = pd.DataFrame(x).corr(min_periods=2).to_numpy()
            obs = observed.astype(float)
            np_obs = obs.T @ obs
            if np.isnan(r).any():
                i, j = np.argwhere(np.isnan(r))[0]
                raise ValueError(
                    f"items {names[i]} and {names[j]} have too few jointly answered responses with variance to "
                    "correlate; drop one of them or collect more complete responses"
                )
        r = (r + r.T) / 2.0
        np.fill_diagonal(r, 1.0)
        return ItemCorrelations(r, names, n, np_obs, dropped, notes, True)

    # A correlation (or covariance) matrix.
    if isinstance(corr, pd.DataFrame):
        names = [str(c) for c in corr.columns]
        c = corr.to_numpy(dtype=float)
    else:
        c = np.asarray(corr, dtype=float)
        names = [f"V{j + 1}" for j in range(c.shape[1])] if c.ndim == 2 else []
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"corr must be a square matrix, got shape {c.shape}")
    if c.shape[0] < 2:
        raise ValueError("factor analysis needs at least 2 items")
    if not np.isfinite(c).all():
        bad = [names[j] for j in np.flatnonzero(~np.isfinite(c).all(axis=0))]
        raise ValueError(
            f"the correlation matrix has missing or infinite values for item {names_list(bad)}; drop "
            f"{'it' if len(bad) == 1 else 'them'} (constant items have undefined correlations)"
        )
    if not np.allclose(c, c.T, rtol=0, atol=1e-8 * max(1.0, np.abs(c).max())):
        raise ValueError("corr is not symmetric; pass a correlation matrix")
    if (np.diag(c) <= 0).any():
        bad = [names[j] for j in np.flatnonzero(np.diag(c) <= 0)]
        raise ValueError(f"item {names_list(bad)} has zero variance in corr; drop it")
    r = _cov2cor((c + c.T) / 2.0)
    if (np.abs(r) > 1 + 1e-8).any():
        raise ValueError("corr has correlations outside [-1, 1]; pass a correlation or covariance matrix")
    if n_obs is not None:
        whole = isinstance(n_obs, (int, np.integer, float)) and not isinstance(n_obs, bool) and float(n_obs).is_integer()
        if not whole or n_obs < 2:
            raise ValueError(f"n_obs must be a whole number of respondents >= 2, got {n_obs!r}")
        n_obs = int(n_obs)
    return ItemCorrelations(r, names, n_obs, None, (), notes, False)


def smc(r: np.ndarray) -> np.ndarray:
    """Squared multiple correlations, ``psych::smc``: :math:`1 - 1/\\mathrm{diag}(R^+)`, clamped to [0, 1]."""
    u, d, vt = np.linalg.svd(r)
    keep = d > max(math.sqrt(_EPS) * d[0], 0.0)
    pinv_diag = np.einsum("ij,ij->i", vt[keep].T / d[keep], u[:, keep])
    with np.errstate(divide="ignore", invalid="ignore"):
        smc = 1.0 - 1.0 / pinv_diag
    smc = np.where(np.isnan(smc), 1.0, smc)
    smc = np.minimum(smc, 1.0)
    return np.maximum(smc, 0.0)


def cor_smooth(x: np.ndarray, values: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
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
