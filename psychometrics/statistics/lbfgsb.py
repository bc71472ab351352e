"""L-BFGS-B version 2.3, the bound-constrained quasi-Newton optimiser R's ``optim`` runs, in numpy.

What it is
----------
Limited-memory BFGS for :math:`\\min f(x)` subject to :math:`l \\le x \\le u` (Byrd, Lu, Nocedal & Zhu,
1995; the Fortran code of Zhu, Byrd, Lu & Nocedal, 1997), step by step as version 2.3, the version R
ships for ``optim(method = "L-BFGS-B")``. Each iteration:

1. the *generalized Cauchy point*: the first local minimiser of the quadratic model along the
   projected steepest-descent path :math:`x(t) = P(x - t g)`, found by passing the breakpoints where a
   variable hits a bound (``cauchy``);
2. *direct primal subspace minimisation* of the model over the variables still free at that point,
   using the compact representation :math:`B = \\theta I - W M W^\\top` of the last ``m`` correction
   pairs; when the step leaves the box, version 2.3 *backtracks* along it to the first bound
   (``subspace``);
3. a More-Thuente line search with sufficient decrease and curvature conditions (MINPACK-2
   ``dcsrch``/``dcstep``; More & Thuente, 1994), at most 20 evaluations;
4. the BFGS update of the correction pairs (skipped when the curvature :math:`s^\\top y` is not
   safely positive), and R's stopping rules: projected gradient norm :math:`\\le` ``pgtol``, relative
   reduction of :math:`f` :math:`\\le` ``factr`` :math:`\\cdot\\epsilon`, or the iteration limit.

Why psytest carries its own
---------------------------
:func:`psychometrics.statistics.efa.efa` reproduces ``psych::fa``, whose extraction minimises over the
uniquenesses with R's ``optim(method = "L-BFGS-B")``. scipy ships L-BFGS-B version 3.0 (Morales &
Nocedal, 2011), whose subspace step *projects* onto the box instead of backtracking into it when a
bound is hit. That changes the path, and psych's answer, whenever a uniqueness reaches its lower bound
(a Heywood case: differences up to 1e-4 in the loadings on the reference data), because psych's minres
gradient is not the gradient of its objective and its solution there depends on the path. With this
port the iterates are R's, and ``efa`` agrees with ``psych::fa`` to about 1e-12 (Heywood cases
included; ``tests/test_factor_analysis.py``). It covers what psych needs: every variable bounded on
both sides (``nbd = 2``), no printing.

References
----------
Byrd, R. H., Lu, P., Nocedal, J., & Zhu, C. (1995). A limited memory algorithm for bound constrained
optimization. SIAM Journal on Scientific Computing, 16, 1190-1208.
Zhu, C., Byrd, R. H., Lu, P., & Nocedal, J. (1997). Algorithm 778: L-BFGS-B: Fortran subroutines for
large-scale bound-constrained optimization. ACM Transactions on Mathematical Software, 23, 550-560.
Morales, J. L., & Nocedal, J. (2011). Remark on "Algorithm 778: L-BFGS-B: Fortran subroutines for
large-scale bound constrained optimization". ACM Transactions on Mathematical Software, 38, 7:1-7:4.
More, J. J., & Thuente, D. J. (1994). Line search algorithms with guaranteed sufficient decrease. ACM
Transactions on Mathematical Software, 20, 286-307.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.linalg

__all__ = ["minimize_lbfgsb"]

_EPS = float(np.finfo(float).eps)


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


def minimize_lbfgsb(fun: Callable, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray, *, m: int = 5,
                    factr: float = 1e7, pgtol: float = 0.0, maxit: int = 100):
    """Minimise ``fun`` (returning value and gradient) over a box as R's ``optim(method = "L-BFGS-B")``.

    Parameters
    ----------
    fun
        ``x -> (f, gradient)``; ``f`` must be finite (else :class:`FloatingPointError`, R's "L-BFGS-B
        needs finite values of 'fn'").
    x0, lower, upper
        Start and finite bounds (``x0`` is moved into the box first).
    m, factr, pgtol, maxit
        Correction pairs kept, relative-reduction tolerance in units of machine epsilon, projected
        gradient tolerance and iteration limit, as R's ``optim`` controls ``lmm``, ``factr``, ``pgtol``
        and ``maxit``.

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
