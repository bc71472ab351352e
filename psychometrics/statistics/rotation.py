"""Factor rotations as R computes them: oblimin (GPArotation), varimax (stats) and promax (psych).

* :func:`oblimin`: ``GPArotation::oblimin`` (quartimin, :math:`\\gamma = 0`, no Kaiser normalisation),
  the gradient-projection algorithm ``GPFoblq`` (Jennrich, 2002; Bernaards & Jennrich, 2005) with
  criterion :math:`Q(\\Lambda) = \\tfrac14 \\sum_{i} \\sum_{j \\ne l} \\lambda_{ij}^2 \\lambda_{il}^2`, started
  at the identity, step doubling/halving and stopping when the projected gradient's Frobenius norm is
  below 1e-5 (at most 1,000 iterations). :math:`\\Phi = T^\\top T`, pattern :math:`\\Lambda (T^{-1})^\\top`.
* :func:`varimax`: ``stats::varimax`` (Kaiser normalisation, SVD iteration, relative tolerance 1e-5;
  Kaiser, 1958).
* :func:`kaiser_promax`: psych's ``"promax"``, i.e. ``psych::kaiser(L, rotate = "Promax")``: rows
  normalised by :math:`\\sqrt{h^2}`, then :func:`promax` (``psych::Promax``; Hendrickson & White, 1964):
  varimax, target :math:`Q = X|X|^{3}`, least-squares transformation rescaled so that
  :math:`\\mathrm{diag}((U^\\top U)^{-1}) = 1`, :math:`\\Phi = U^{-1}U^{-\\top}`.
* :func:`rotate` chooses one by name, as ``psych::fa(rotate = ...)``; when oblimin fails it falls back to
  Promax, as psych does, and says so in the notes.

Every iterative step (start, step size rule, stopping rule) is R's, so rotated loadings agree with R to
rounding error (``tests/test_factor_analysis.py``).

References
----------
Bernaards, C. A., & Jennrich, R. I. (2005). Gradient projection algorithms and software for arbitrary
rotation criteria in factor analysis. Educational and Psychological Measurement, 65, 676-696.
Jennrich, R. I. (2002). A simple general method for oblique rotation. Psychometrika, 67, 7-19.
Kaiser, H. F. (1958). The varimax criterion for analytic rotation in factor analysis. Psychometrika, 23,
187-200.
Hendrickson, A. E., & White, P. O. (1964). Promax: a quick method for rotation to oblique simple
structure. British Journal of Statistical Psychology, 17, 65-70.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ROTATIONS", "kaiser_promax", "oblimin", "promax", "rotate", "varimax"]

ROTATIONS = ("oblimin", "varimax", "promax", "none")


def _vgq_oblimin(lam: np.ndarray) -> tuple[float, np.ndarray]:
    """``GPArotation:::vgQ.oblimin`` with gam = 0 (quartimin): value and gradient."""
    l2 = lam * lam
    x = l2.sum(axis=1, keepdims=True) - l2  # L^2 %*% (!diag(TRUE, k))
    return float(np.sum(l2 * x) / 4.0), lam * x


def oblimin(a: np.ndarray, eps: float = 1e-5, maxit: int = 1000):
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
    for iteration in range(maxit + 1):  # noqa: B007 - read after the loop (iterations used)
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


def varimax(x: np.ndarray, normalize: bool = True, eps: float = 1e-5):
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


def promax(x: np.ndarray, m: int = 4):
    """``psych::Promax(x, m = 4)``: returns (loadings, Phi, converged)."""
    z, rotmat, converged = varimax(x)
    q = z * np.abs(z) ** (m - 1)
    u = np.linalg.lstsq(z, q, rcond=None)[0]  # lm.fit(x, Q)$coefficients
    d = np.diag(np.linalg.inv(u.T @ u))
    u = u * np.sqrt(d)[None, :]
    loadings = z @ u
    u = rotmat @ u
    ui = np.linalg.inv(u)
    return loadings, ui @ ui.T, converged


def kaiser_promax(f: np.ndarray):
    """``psych::kaiser(f, rotate = "Promax")``, which psych's ``rotate = "promax"`` calls."""
    h = np.sqrt(np.sum(f * f, axis=1))
    loadings, phi, converged = promax(f / h[:, None])
    return loadings * h[:, None], phi, converged


def rotate(loadings: np.ndarray, rotation: str, notes: list[str]):
    """Rotate ``loadings`` (items x factors) by ``rotation`` (one of :data:`ROTATIONS`), as
    ``psych::fa(rotate = ...)``; a fallback from oblimin to Promax is added to ``notes``.

    Returns (pattern, Phi or None for orthogonal and unrotated solutions, converged)."""
    if rotation == "none" or loadings.shape[1] < 2:
        return loadings, None, True
    if rotation == "varimax":
        z, _, converged = varimax(loadings)
        return z, None, converged
    if rotation == "promax":
        return kaiser_promax(loadings)
    try:
        lam, phi, converged, _ = oblimin(loadings)
        if not np.isfinite(lam).all():
            raise np.linalg.LinAlgError("non-finite oblimin solution")
    except np.linalg.LinAlgError:
        notes.append("the oblimin rotation failed; Promax was used instead, as psych does")
        lam, phi, converged = promax(loadings)
    return lam, phi, converged
