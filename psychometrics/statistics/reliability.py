"""Reliability of scale scores: internal consistency, split-half reliability and test-retest ICCs.

Every function takes a respondents x items table (a :class:`pandas.DataFrame`, or anything
:func:`numpy.asarray` turns into a 2-D float array) whose items are *already keyed* so that high values
point to the scale's pole; :func:`reverse_key` does the keying. For an LLM, a "respondent" is usually one
design cell (option order, template, persona, wording, sample), and :func:`icc` takes targets (e.g.
personas or prompts) x repeated samples.

Conventions shared by all functions
-----------------------------------
* Missing values (NaN) are handled by listwise deletion: a respondent with any missing item is dropped,
  and the result reports how many were dropped (``n_missing``) and says so in its ``note``.
* Items with no variance among the remaining respondents (common with greedy decoding) are dropped, as
  ``psych::alpha`` drops them; the result names them in ``dropped_items`` and in its ``note``.
* A statistic that is undefined for the data (a scale with one item, fewer than two respondents, a total
  score with zero variance, a singular correlation matrix where an inverse is needed, ...) is ``None``,
  never NaN, and the result's ``note`` says why, e.g. ``"alpha undefined: scale has one item"``.
  ``note`` is ``None`` when nothing needs saying.
* Invalid input (not a 2-D table, infinite values, an unknown item name) raises :class:`ValueError`
  with a one-line message.

Every numeric result is checked against R (psych 2.2.9) in ``tests/test_reliability.py``, with reference
values from ``tests/reference/reliability.R`` (``tests/reference/golden/reliability.json``).

Differences from R
------------------
* **Missing data.** ``psych::alpha`` and ``psych::splitHalf`` use pairwise-complete covariances
  (``use = "pairwise"``) and ``psych::alpha`` takes the number of rows *including* incomplete ones as the
  ``n`` of the Feldt interval. Here every statistic uses the same listwise-complete respondents, and ``n``
  is their number. On complete data the results are identical.
* **Constant items.** ``psych::alpha`` drops them from the covariance matrix with a warning but keeps them
  in its ``scores``; here they are dropped from every statistic and reported. ``psych::splitHalf`` and
  ``psych::smc`` do not drop them (their correlations are NA); here they are dropped too.
* **Reverse keying.** psych can reverse items itself (``check.keys``, ``keys``); here scales are keyed
  beforehand with :func:`reverse_key`, and nothing is reversed automatically (the R reference scripts use
  ``check.keys = FALSE``).
* **Split-half with an odd number of items.** ``psych::splitHalf(brute = TRUE)`` enumerates
  ``choose(k, k %/% 2) / 2`` splits in lexicographic order. For an even k these are exactly all distinct
  splits, and :func:`split_half` agrees with it to rounding. For an odd k every subset of size
  ``(k - 1) / 2`` is a distinct split, so psych visits only about half of them (for 5 items 5 of the 10;
  for k = 3, 7 and 15 it also divides their sum by half a split less than their number, e.g. 3217.5 for 3218).
  :func:`split_half` uses all of them. The reference script checks the odd case against a full
  enumeration written in R with psych's coefficient, and the tests reproduce psych's own numbers from the
  subset it visits.
* **Random splits.** When the splits are too many to enumerate (more than ``max_splits``; with the default
  10,000 that is 17 or more items, as in psych), both draw random splits; R's and NumPy's random streams
  differ, so those summaries agree only up to sampling error. Ours are seeded and reproducible.
* **Singular correlation matrices.** ``psych::smc`` inverts with a pseudo-inverse and clips the SMCs to
  [0, 1], which gives a number even when the correlation matrix is singular (fewer respondents than items,
  linearly dependent items). There the SMCs, and so lambda-6 and ``r_cor``, are not meaningful: they are
  ``None`` here, with a note. On non-singular matrices the two agree to rounding (the clipping is applied
  here too).
* **ICC estimation.** ``psych::ICC`` (2.2.9) by default (``lmer = TRUE``) takes the mean squares from
  ``lme4`` variance components, which on complete data equal the ANOVA mean squares up to the optimiser's
  tolerance (about 1e-8 relative on the reference data), unless a variance component is estimated
  negative, which REML truncates at zero. :func:`icc` computes the ANOVA mean squares exactly, i.e.
  ``psych::ICC(x, lmer = FALSE)``; it needs complete rows, whereas ``lmer`` can use incomplete ones.

References
----------
Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests. Psychometrika, 16, 297-334.
Feldt, L. S., Woodruff, D. J., & Salih, F. A. (1987). Statistical inference for coefficient alpha.
Applied Psychological Measurement, 11, 93-103.
Guttman, L. (1945). A basis for analyzing test-retest reliability. Psychometrika, 10, 255-282.
Revelle, W., & Zinbarg, R. E. (2009). Coefficients alpha, beta, omega, and the glb. Psychometrika, 74,
145-154.
Shrout, P. E., & Fleiss, J. L. (1979). Intraclass correlations: Uses in assessing rater reliability.
Psychological Bulletin, 86, 420-428.
McGraw, K. O., & Wong, S. P. (1996). Forming inferences about some intraclass correlation coefficients.
Psychological Methods, 1, 30-46.
Koo, T. K., & Li, M. Y. (2016). A guideline of selecting and reporting intraclass correlation
coefficients for reliability research. Journal of Chiropractic Medicine, 15, 155-163.
Revelle, W. (2022). psych: Procedures for psychological, psychometric, and personality research
(R package version 2.2.9).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd


__all__ = [
    "AlphaResult",
    "Lambda6Result",
    "ItemTotalResult",
    "SplitHalfResult",
    "ICCForm",
    "ICCResult",
    "reverse_key",
    "cronbach_alpha",
    "guttman_lambda6",
    "corrected_item_total",
    "split_half",
    "icc",
]

# Relative tolerance below which a variance counts as zero (values are sums of squares of data that are
# usually small integers; rounding error is around 1e-16 relative).
_ZERO = 1e-12


# ----------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class AlphaResult:
    """Cronbach's alpha of one scale (see :func:`cronbach_alpha`)."""

    raw_alpha: float | None
    std_alpha: float | None
    average_r: float | None
    median_r: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    n: int
    k: int
    n_missing: int
    items: tuple[str, ...]
    dropped_items: tuple[str, ...]
    note: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Lambda6Result:
    """Guttman's lambda-6 of one scale (see :func:`guttman_lambda6`)."""

    lambda6: float | None
    smc: tuple[float, ...] | None
    n: int
    k: int
    n_missing: int
    items: tuple[str, ...]
    dropped_items: tuple[str, ...]
    note: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ItemTotalResult:
    """Item-total statistics of one scale (see :func:`corrected_item_total`); one entry per item used."""

    items: tuple[str, ...]
    r_drop: tuple[float | None, ...]
    r_cor: tuple[float | None, ...] | None
    alpha_if_dropped: tuple[float | None, ...] | None
    n: int
    k: int
    n_missing: int
    dropped_items: tuple[str, ...]
    note: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SplitHalfResult:
    """Split-half reliabilities of one scale (see :func:`split_half`)."""

    lambda4: float | None  # the maximum over splits (Guttman's lambda-4)
    beta: float | None  # the minimum over splits (Revelle's beta)
    mean: float | None
    median: float | None
    q025: float | None  # 2.5% and 97.5% quantiles of the split coefficients (R's type 7)
    q975: float | None
    n_splits: int
    n_possible_splits: int
    method: str  # "all" (every split enumerated) or "sampled" (n_splits random splits, seeded)
    seed: int | None
    best_split: tuple[tuple[str, ...], tuple[str, ...]] | None
    worst_split: tuple[tuple[str, ...], tuple[str, ...]] | None
    n: int
    k: int
    n_missing: int
    items: tuple[str, ...]
    dropped_items: tuple[str, ...]
    note: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ICCForm:
    """One Shrout-Fleiss intraclass correlation, as one row of ``psych::ICC``'s table."""

    type: str  # ICC1, ICC2, ICC3, ICC1k, ICC2k, ICC3k
    description: str
    icc: float | None
    f: float | None
    df1: int
    df2: int
    p: float | None
    ci_low: float | None
    ci_high: float | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ICCResult:
    """All six Shrout-Fleiss ICCs for targets x repeated samples (see :func:`icc`)."""

    forms: tuple[ICCForm, ...]
    ms_targets: float | None  # MSB, between targets
    ms_within: float | None  # MSW, within targets (samples + residual)
    ms_samples: float | None  # MSJ, between samples ("judges")
    ms_error: float | None  # MSE, residual
    n: int  # targets used
    k: int  # samples per target
    n_missing: int  # targets dropped for a missing sample
    confidence: float
    note: str | None = None

    def __getitem__(self, name: str) -> ICCForm:
        for form in self.forms:
            if form.type == name:
                return form
        raise KeyError(name)

    @property
    def test_retest(self) -> ICCForm:
        """ICC(2,1), two-way random effects, absolute agreement, single measurement: the default for
        test-retest reliability of one sample (Koo & Li, 2016)."""
        return self["ICC2"]

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------- helpers


def _as_table(data: Any, what: str = "items") -> tuple[np.ndarray, list[str]]:
    """A 2-D float array and column names from a DataFrame or array-like."""
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
        try:
            values = data.to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what}: every column must be numeric ({exc})") from None
    else:
        try:
            values = np.asarray(data, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what}: expected a numeric respondents x items table ({exc})") from None
        if values.ndim == 1:
            values = values[:, None]
        names = [f"item{j + 1}" for j in range(values.shape[1] if values.ndim == 2 else 0)]
    if values.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D respondents x items table, got {values.ndim} dimensions")
    if np.isinf(values).any():
        raise ValueError(f"{what}: contains infinite values; use NaN for a missing answer")
    return values, names


def _complete(values: np.ndarray) -> tuple[np.ndarray, int]:
    keep = ~np.isnan(values).any(axis=1)
    return values[keep], int((~keep).sum())


def _join(notes: Iterable[str | None]) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


def _missing_note(n_missing: int, n: int) -> str | None:
    if n_missing == 0:
        return None
    return f"listwise deletion: {n_missing} respondent(s) with missing values dropped, {n} used"


def _plural(names: list[str]) -> str:
    return ", ".join(names)


@dataclass
class _Prepared:
    x: np.ndarray  # complete respondents x varying items
    names: list[str]  # varying items
    all_names: list[str]
    dropped: list[str]
    n_missing: int
    notes: list[str]


def _prepare(items: Any) -> _Prepared:
    values, names = _as_table(items)
    all_names = list(names)
    x, n_missing = _complete(values)
    notes = [_missing_note(n_missing, x.shape[0])]
    dropped: list[str] = []
    if x.shape[0] >= 2 and x.shape[1] > 0:
        scale = np.maximum(np.abs(x).max(axis=0), 1.0)
        constant = np.ptp(x, axis=0) <= _ZERO * scale
        if constant.any():
            dropped = [n for n, c in zip(names, constant) if c]
            x = x[:, ~constant]
            kept = [n for n, c in zip(names, constant) if not c]
            notes.append(f"constant item(s) dropped (no variance): {_plural(dropped)}")
            names = kept
    return _Prepared(x, list(names), all_names, dropped, n_missing, notes)


def _undefined_reason(prep: _Prepared, what: str, min_items: int = 2) -> str | None:
    """Why ``what`` cannot be computed at all, or None."""
    n, k = prep.x.shape
    total_items = len(prep.all_names)
    if total_items == 0:
        return f"{what} undefined: scale has no items"
    if total_items == 1:
        return f"{what} undefined: scale has one item"
    if n < 2:
        return f"{what} undefined: fewer than 2 complete respondents (n = {n})"
    if k < min_items:
        if k == 0:
            return f"{what} undefined: every item is constant"
        return f"{what} undefined: fewer than {min_items} items vary ({k} of {total_items})"
    return None


def _cov(x: np.ndarray) -> np.ndarray:
    return np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def _cov2cor(c: np.ndarray) -> np.ndarray:
    d = 1.0 / np.sqrt(np.diag(c))
    r = c * d[:, None] * d[None, :]
    np.fill_diagonal(r, 1.0)
    return r


def _smc(r: np.ndarray) -> np.ndarray | None:
    """Squared multiple correlations 1 - 1/diag(R^-1), clipped to [0, 1] as psych::smc does; None if R is
    singular (numerically: smallest eigenvalue below 1e-10 of the largest)."""
    eig = np.linalg.eigvalsh(r)
    if eig[0] <= 1e-10 * max(eig[-1], 1.0):
        return None
    inv = np.linalg.inv(r)
    return np.clip(1.0 - 1.0 / np.diag(inv), 0.0, 1.0)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _singular_note(n: int, k: int) -> str:
    if n <= k:
        why = f"fewer respondents ({n}) than items + 1 ({k + 1})"
    else:
        why = "linearly dependent items"
    return f"the item correlation matrix is singular ({why})"


# ----------------------------------------------------------------------------------------------- keying


def reverse_key(items: Any, reversed_items: Iterable[str | int], low: float, high: float) -> pd.DataFrame:
    """Reverse-key items: :math:`x' = \\text{low} + \\text{high} - x` for every reversed item.

    Parameters
    ----------
    items : DataFrame or array-like
        Respondents x items. An array gets columns ``item1``, ``item2``, ...
    reversed_items : iterable of str or int
        Column names (or 0-based positions) of the reverse-keyed items.
    low, high : float
        The lowest and highest response values (1 and 5 for a 5-point scale).

    Returns
    -------
    DataFrame
        A copy with the reversed items flipped; missing values stay missing.

    Raises
    ------
    ValueError
        An unknown item, ``low >= high``, or a reversed item with a value outside ``low..high``.

    Notes
    -----
    Matches ``psych::reverse.code(keys, items, mini = low, maxi = high)`` and the flipping inside
    ``psych::alpha`` (which uses the observed minimum and maximum instead of the scale's).
    """
    if not low < high:
        raise ValueError(f"reverse_key: low ({low}) must be below high ({high})")
    if isinstance(items, pd.DataFrame):
        frame = items.copy()
    else:
        values, names = _as_table(items)
        frame = pd.DataFrame(values, columns=names)
    columns = list(frame.columns)
    for item in reversed_items:
        if isinstance(item, (int, np.integer)) and item not in columns:
            if not 0 <= item < len(columns):
                raise ValueError(f"reverse_key: item position {item} is out of range 0..{len(columns) - 1}")
            column = columns[item]
        elif item in columns:
            column = item
        else:
            raise ValueError(f"reverse_key: item {item!r} is not among the columns {columns}")
        values = pd.to_numeric(frame[column], errors="coerce").astype(float)
        present = values.dropna()
        if ((present < low) | (present > high)).any():
            raise ValueError(
                f"reverse_key: item {column!r} has values outside {low:g}..{high:g} "
                f"(min {present.min():g}, max {present.max():g})"
            )
        frame[column] = low + high - values
    return frame


# ------------------------------------------------------------------------------------------------ alpha


def cronbach_alpha(items: Any, confidence: float = 0.95) -> AlphaResult:
    """Cronbach's alpha, raw and standardized, with Feldt's confidence interval.

    For k items with covariance matrix :math:`C` (n - 1 denominator) and correlation matrix :math:`R`:

    .. math::

        \\alpha = \\frac{k}{k-1}\\Bigl(1 - \\frac{\\operatorname{tr} C}{\\mathbf 1' C \\mathbf 1}\\Bigr),
        \\qquad
        \\alpha_{std} = \\frac{k}{k-1}\\Bigl(1 - \\frac{k}{\\mathbf 1' R \\mathbf 1}\\Bigr)
        = \\frac{k \\bar r}{1 + (k-1)\\bar r},

    where :math:`\\bar r` is the average inter-item correlation. Feldt's interval (Feldt, Woodruff &
    Salih, 1987), with :math:`F_q` the q quantile of F with :math:`n-1` and :math:`(n-1)(k-1)` df and
    :math:`a = 1 - \\text{confidence}`:

    .. math:: \\bigl[\\,1 - (1-\\alpha) F_{1-a/2},\\; 1 - (1-\\alpha) F_{a/2}\\,\\bigr].

    Matches ``psych::alpha(x)$total`` (``raw_alpha``, ``std.alpha``, ``average_r``, ``median_r``) and
    ``psych::alpha(x)$feldt`` (``psych::alpha.ci``) to rounding (1e-12 on the reference data).

    Parameters
    ----------
    items : DataFrame or array-like
        Respondents x items, already keyed.
    confidence : float
        Level of the Feldt interval (psych: ``1 - p.val``).

    Returns
    -------
    AlphaResult
        ``raw_alpha``, ``std_alpha``, ``average_r``, ``median_r`` (of the off-diagonal correlations),
        ``ci_low``/``ci_high`` (Feldt, around ``raw_alpha``), ``n`` respondents and ``k`` items used,
        ``n_missing``, ``dropped_items`` (constant), ``note``. Undefined values are None with a note: one
        item, fewer than two respondents or varying items, a total score with zero variance. A negative
        alpha is returned with a note (usually an item that should be reverse keyed).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"cronbach_alpha: confidence must be between 0 and 1, got {confidence}")
    prep = _prepare(items)
    n, k = prep.x.shape
    notes = list(prep.notes)
    empty = dict(raw_alpha=None, std_alpha=None, average_r=None, median_r=None, ci_low=None, ci_high=None)
    base = dict(confidence=confidence, n=n, k=k, n_missing=prep.n_missing, items=tuple(prep.names),
                dropped_items=tuple(prep.dropped))
    reason = _undefined_reason(prep, "alpha")
    if reason:
        return AlphaResult(**empty, **base, note=_join(notes + [reason]))
    c = _cov(prep.x)
    total_var = c.sum()
    if total_var <= _ZERO * np.trace(c):
        return AlphaResult(**empty, **base,
                           note=_join(notes + ["alpha undefined: the total score has zero variance"]))
    raw = (1.0 - np.trace(c) / total_var) * k / (k - 1)
    r = _cov2cor(c)
    off = r[np.tril_indices(k, -1)]
    sum_r = r.sum()
    std = (1.0 - k / sum_r) * k / (k - 1) if sum_r > _ZERO * k else None
    a = 1.0 - confidence
    from scipy import stats

    df1, df2 = n - 1, (n - 1) * (k - 1)
    ci_low = 1.0 - (1.0 - raw) * stats.f.ppf(1.0 - a / 2.0, df1, df2)
    ci_high = 1.0 - (1.0 - raw) * stats.f.ppf(a / 2.0, df1, df2)
    if std is None:
        notes.append("standardized alpha undefined: the standardized total has zero variance")
    if raw < 0:
        notes.append("alpha is negative: the items correlate negatively on average (check reverse keying)")
    if n <= k:
        notes.append(f"fewer respondents ({n}) than items + 1 ({k + 1}): the estimate is unstable")
    return AlphaResult(
        raw_alpha=float(raw), std_alpha=_finite(std) if std is not None else None,
        average_r=float(off.mean()), median_r=float(np.median(off)),
        ci_low=_finite(ci_low), ci_high=_finite(ci_high), **base, note=_join(notes),
    )


# --------------------------------------------------------------------------------------------- lambda 6


def guttman_lambda6(items: Any) -> Lambda6Result:
    """Guttman's lambda-6 from squared multiple correlations, as psych's ``G6(smc)``.

    .. math::

        \\lambda_6 = 1 - \\frac{\\sum_i (1 - \\mathrm{SMC}_i)}{\\mathbf 1' R \\mathbf 1}
        = 1 - \\frac{k - \\sum_i \\mathrm{SMC}_i}{\\mathbf 1' R \\mathbf 1},
        \\qquad \\mathrm{SMC}_i = 1 - 1 / (R^{-1})_{ii},

    i.e. each item's error variance is estimated by what the other items do not predict of it (Guttman,
    1945). psych computes it on the correlation matrix (a standardized coefficient) and clips SMCs to
    [0, 1]; so does this.

    Matches ``psych::alpha(x)$total[["G6(smc)"]]`` (= ``psych::splitHalf(x)$lambda6``) to rounding.

    Returns
    -------
    Lambda6Result
        ``lambda6``, the items' ``smc``, ``n``, ``k``, ``n_missing``, ``dropped_items``, ``note``.
        ``lambda6`` is None with a note when the correlation matrix is singular (fewer respondents than
        items + 1, or linearly dependent items), where psych's pseudo-inverse gives a number that means
        nothing.
    """
    prep = _prepare(items)
    n, k = prep.x.shape
    base = dict(n=n, k=k, n_missing=prep.n_missing, items=tuple(prep.names), dropped_items=tuple(prep.dropped))
    reason = _undefined_reason(prep, "lambda-6")
    if reason:
        return Lambda6Result(lambda6=None, smc=None, **base, note=_join(prep.notes + [reason]))
    r = _cov2cor(_cov(prep.x))
    smc = _smc(r)
    if smc is None:
        return Lambda6Result(lambda6=None, smc=None, **base,
                             note=_join(prep.notes + ["lambda-6 undefined: " + _singular_note(n, k)]))
    sum_r = r.sum()
    if sum_r <= _ZERO * k:
        return Lambda6Result(lambda6=None, smc=tuple(map(float, smc)), **base,
                             note=_join(prep.notes + ["lambda-6 undefined: the total score has zero variance"]))
    value = 1.0 - (k - smc.sum()) / sum_r
    return Lambda6Result(lambda6=float(value), smc=tuple(map(float, smc)), **base, note=_join(prep.notes))


# ------------------------------------------------------------------------------------------- item-total


def corrected_item_total(items: Any) -> ItemTotalResult:
    """Corrected item-total correlations (``r.drop``), ``r.cor`` and alpha if the item is dropped.

    For item i with covariance matrix :math:`C` of the k items:

    .. math::

        r_{drop,i} = \\frac{\\sum_{j \\ne i} C_{ij}}{\\sqrt{C_{ii}\\,\\sum_{j,l \\ne i} C_{jl}}}

    is the correlation of the item with the sum of the *other* items (raw, unstandardized), and

    .. math::

        r_{cor,i} = \\frac{\\sum_j R^*_{ij}}{\\sqrt{\\mathbf 1' R^* \\mathbf 1}}

    where :math:`R^*` is the correlation matrix with the SMCs on the diagonal: the item-whole correlation
    corrected for item overlap and reliability. ``alpha_if_dropped`` is raw alpha of the other k - 1
    items.

    Matches ``psych::alpha(x)$item.stats`` columns ``r.drop`` and ``r.cor`` and
    ``psych::alpha(x)$alpha.drop$raw_alpha`` to rounding (for k > 2; psych fills ``alpha.drop`` with other
    quantities when k = 2, where alpha of one item is undefined and is None here).

    Returns
    -------
    ItemTotalResult
        Per item used (constant items are dropped and listed in ``dropped_items``): ``r_drop``,
        ``r_cor`` (None when the correlation matrix is singular), ``alpha_if_dropped`` (None for k = 2);
        ``n``, ``k``, ``n_missing``, ``note``. An item whose rest score has zero variance has
        ``r_drop`` None, with a note.
    """
    prep = _prepare(items)
    n, k = prep.x.shape
    base = dict(items=tuple(prep.names), n=n, k=k, n_missing=prep.n_missing, dropped_items=tuple(prep.dropped))
    reason = _undefined_reason(prep, "item-total correlations")
    if reason:
        return ItemTotalResult(r_drop=tuple(None for _ in prep.names), r_cor=None, alpha_if_dropped=None,
                               **base, note=_join(prep.notes + [reason]))
    notes = list(prep.notes)
    c = _cov(prep.x)
    col = c.sum(axis=0)
    total = c.sum()
    r_drop: list[float | None] = []
    alpha_drop: list[float | None] = []
    bad_rest = []
    for i in range(k):
        v_rest = total - 2.0 * col[i] + c[i, i]
        c_rest = col[i] - c[i, i]
        if v_rest <= _ZERO * (np.trace(c) - c[i, i]):
            r_drop.append(None)
            alpha_drop.append(None)
            bad_rest.append(prep.names[i])
            continue
        r_drop.append(float(c_rest / math.sqrt(c[i, i] * v_rest)))
        if k > 2:
            tr_rest = np.trace(c) - c[i, i]
            alpha_drop.append(float((1.0 - tr_rest / v_rest) * (k - 1) / (k - 2)))
        else:
            alpha_drop.append(None)
    if bad_rest:
        notes.append(f"r.drop undefined for {_plural(bad_rest)}: the other items' total has zero variance")
    r = _cov2cor(c)
    smc = _smc(r)
    r_cor: tuple[float | None, ...] | None
    if smc is None:
        r_cor = None
        notes.append("r.cor undefined: " + _singular_note(n, k))
    else:
        rc = r.copy()
        np.fill_diagonal(rc, smc)
        vtc = rc.sum()
        r_cor = tuple(float(v) for v in rc.sum(axis=0) / math.sqrt(vtc)) if vtc > 0 else None
        if r_cor is None:
            notes.append("r.cor undefined: the corrected total has zero variance")
    return ItemTotalResult(r_drop=tuple(r_drop), r_cor=r_cor,
                           alpha_if_dropped=tuple(alpha_drop) if k > 2 else None, **base, note=_join(notes))


# ------------------------------------------------------------------------------------------- split-half


def _split_coefficients(r: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """psych::splitHalf's coefficient 4 * R_AB / sum(R) for each row of the 0/1 indicator matrix ``halves``
    (1 = first half)."""
    a = halves.astype(float)
    ra = a @ r
    within_a = np.einsum("sk,sk->s", ra, a)
    a_total = a @ r.sum(axis=1)
    cross = a_total - within_a
    return 4.0 * cross / r.sum()


def _all_halves(k: int) -> np.ndarray:
    """Indicator rows of every distinct split into halves of size k // 2 and k - k // 2."""
    m = k // 2
    if k % 2 == 0:
        # a subset and its complement are the same split: keep the subsets that contain item 0
        combos = [(0,) + c for c in itertools.combinations(range(1, k), m - 1)]
    else:
        combos = list(itertools.combinations(range(k), m))
    idx = np.array(combos, dtype=np.intp).reshape(len(combos), m)
    halves = np.zeros((len(combos), k), dtype=bool)
    np.put_along_axis(halves, idx, True, axis=1)
    return halves


def _n_splits(k: int) -> int:
    m = k // 2
    return math.comb(k, m) // 2 if k % 2 == 0 else math.comb(k, m)


def split_half(items: Any, max_splits: int = 10_000, n_samples: int = 10_000, seed: int = 0) -> SplitHalfResult:
    """Split-half reliabilities over all splits of the items into two halves (or a random sample of them).

    For a split of the k items into halves A (k // 2 items) and B, with :math:`R` the item correlation
    matrix, psych's coefficient is

    .. math:: r_{AB} = \\frac{4\\, \\mathbf 1_A' R\\, \\mathbf 1_B}{\\mathbf 1' R \\mathbf 1}
              = \\frac{4 \\operatorname{cov}(A, B)}{\\operatorname{var}(A + B)}

    on standardized items: the Flanagan-Rulon / Guttman split-half coefficient (Spearman-Brown for
    halves of equal variance). Summaries over splits: the maximum is Guttman's lambda-4 (``lambda4``,
    psych ``maxrb``), the minimum Revelle's beta (``beta``, psych ``minrb``), the mean (for an even k the
    mean over all splits equals standardized alpha), the median and the 2.5%/97.5% quantiles (R's type 7,
    psych's ``ci``).

    All distinct splits are enumerated when there are at most ``max_splits`` of them:
    ``choose(k, k/2) / 2`` for an even k (6,435 for 16 items), ``choose(k, (k-1)/2)`` for an odd k.
    Otherwise ``n_samples`` random splits are drawn (each a random subset of k // 2 items; seeded with
    ``seed``; duplicates possible, as in psych), and ``method`` says ``"sampled"``.

    Matches ``psych::splitHalf(x, brute = TRUE, raw = TRUE, check.keys = FALSE)`` (``maxrb``, ``minrb``,
    ``meanr``, ``ci``) for an even number of items; see "Differences from R" in the module docstring for an
    odd number and for sampled splits.

    Returns
    -------
    SplitHalfResult
        ``lambda4``, ``beta``, ``mean``, ``median``, ``q025``, ``q975``, ``n_splits`` (used),
        ``n_possible_splits``, ``method``, ``seed`` (None when enumerated), ``best_split`` and
        ``worst_split`` (the two halves' item names), ``n``, ``k``, ``n_missing``, ``dropped_items``,
        ``note``. Undefined (None, with a note) for fewer than two varying items or two respondents, a
        total with zero variance.
    """
    prep = _prepare(items)
    n, k = prep.x.shape
    base = dict(n=n, k=k, n_missing=prep.n_missing, items=tuple(prep.names), dropped_items=tuple(prep.dropped))
    empty = dict(lambda4=None, beta=None, mean=None, median=None, q025=None, q975=None, best_split=None,
                 worst_split=None)
    reason = _undefined_reason(prep, "split-half reliability")
    possible = _n_splits(k) if k >= 2 else 0
    if reason:
        return SplitHalfResult(**empty, n_splits=0, n_possible_splits=possible, method="all", seed=None,
                               **base, note=_join(prep.notes + [reason]))
    r = _cov2cor(_cov(prep.x))
    if r.sum() <= _ZERO * k:
        return SplitHalfResult(**empty, n_splits=0, n_possible_splits=possible, method="all", seed=None, **base,
                               note=_join(prep.notes + ["split-half reliability undefined: the total score "
                                                        "has zero variance"]))
    if possible <= max_splits:
        halves = _all_halves(k)
        method, used_seed = "all", None
    else:
        rng = np.random.default_rng(seed)
        order = np.argsort(rng.random((n_samples, k)), axis=1)[:, : k // 2]
        halves = np.zeros((n_samples, k), dtype=bool)
        np.put_along_axis(halves, order, True, axis=1)
        method, used_seed = "sampled", seed
    coef = _split_coefficients(r, halves)
    best, worst = int(np.argmax(coef)), int(np.argmin(coef))

    def named(row: np.ndarray) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (tuple(nm for nm, h in zip(prep.names, row) if h), tuple(nm for nm, h in zip(prep.names, row) if not h))

    q025, median, q975 = np.quantile(coef, [0.025, 0.5, 0.975])
    return SplitHalfResult(
        lambda4=float(coef[best]), beta=float(coef[worst]), mean=float(coef.mean()), median=float(median),
        q025=float(q025), q975=float(q975), n_splits=int(coef.size), n_possible_splits=possible, method=method,
        seed=used_seed, best_split=named(halves[best]), worst_split=named(halves[worst]), **base,
        note=_join(prep.notes),
    )


# ------------------------------------------------------------------------------------------------- ICC

_ICC_DESCRIPTIONS = {
    "ICC1": "one-way random effects, absolute agreement, single measurement",
    "ICC2": "two-way random effects, absolute agreement, single measurement (test-retest default)",
    "ICC3": "two-way mixed effects, consistency, single measurement",
    "ICC1k": "one-way random effects, absolute agreement, mean of k measurements",
    "ICC2k": "two-way random effects, absolute agreement, mean of k measurements",
    "ICC3k": "two-way mixed effects, consistency, mean of k measurements",
}


def icc(matrix: Any, confidence: float = 0.95) -> ICCResult:
    """Intraclass correlations (Shrout & Fleiss, 1979) for targets x repeated samples, as ``psych::ICC``.

    Rows are targets (e.g. a model under one persona or prompt), columns the repeated measurements (e.g.
    samples at temperature > 0, or sessions). From the two-way ANOVA without interaction, with n targets
    and k samples: :math:`MS_B` (between targets, df n-1), :math:`MS_J` (between samples, df k-1),
    :math:`MS_E` (residual, df (n-1)(k-1)) and :math:`MS_W = (SS_J + SS_E) / (n(k-1))` (within targets):

    .. math::

        ICC1 = \\frac{MS_B - MS_W}{MS_B + (k-1) MS_W},\\quad
        ICC2 = \\frac{MS_B - MS_E}{MS_B + (k-1) MS_E + k (MS_J - MS_E)/n},\\quad
        ICC3 = \\frac{MS_B - MS_E}{MS_B + (k-1) MS_E},

        ICC1k = \\frac{MS_B - MS_W}{MS_B},\\quad
        ICC2k = \\frac{MS_B - MS_E}{MS_B + (MS_J - MS_E)/n},\\quad
        ICC3k = \\frac{MS_B - MS_E}{MS_B}.

    F tests: :math:`MS_B/MS_W` on (n-1, n(k-1)) df for ICC1/ICC1k, :math:`MS_B/MS_E` on (n-1, (n-1)(k-1))
    for the others. Confidence intervals as psych computes them: exact F-based bounds for ICC1, ICC3 and
    their k versions, and for ICC2/ICC2k the approximation of McGraw & Wong (1996) with Satterthwaite's df.

    **Test-retest default: ICC(2,1)** (``ICC2``, two-way random effects, absolute agreement, single
    measurement): it counts systematic shifts between samples (e.g. a drift of the whole distribution) as
    disagreement, which is what "the same answer again" means; it is :attr:`ICCResult.test_retest`.
    Use ICC3 (consistency) to ignore such shifts, and the k forms for the reliability of the mean of k
    samples.

    Matches ``psych::ICC(x, lmer = FALSE)`` exactly (1e-10 on the reference data) and psych's default
    ``lmer = TRUE`` to its optimiser's tolerance (about 1e-7).

    Parameters
    ----------
    matrix : DataFrame or array-like
        Targets x samples. Targets with a missing sample are dropped (listwise), and counted.
    confidence : float
        Level of the intervals (psych: ``1 - alpha``).

    Returns
    -------
    ICCResult
        ``forms`` (six :class:`ICCForm`: ``type``, ``description``, ``icc``, ``f``, ``df1``, ``df2``,
        ``p``, ``ci_low``, ``ci_high``; also ``result["ICC2"]``), the mean squares, ``n``, ``k``,
        ``n_missing``, ``note``. Fewer than 2 targets or samples, or identical ratings everywhere, give
        None values with a note; without residual variance (samples agree exactly) the ICCs are defined
        but F, p and the intervals are not (None, with a note).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"icc: confidence must be between 0 and 1, got {confidence}")
    from scipy import stats

    values, _ = _as_table(matrix, "icc")
    x, n_missing = _complete(values)
    n, k = x.shape
    notes: list[str | None] = [None if n_missing == 0 else
                               f"listwise deletion: {n_missing} target(s) with a missing sample dropped, {n} used"]
    df_b, df_w, df_e = n - 1, n * (k - 1), (n - 1) * (k - 1)
    types = list(_ICC_DESCRIPTIONS)
    dfs = {"ICC1": (df_b, df_w), "ICC1k": (df_b, df_w)}

    def forms_from(iccs: dict, f: dict, p: dict, lo: dict, hi: dict) -> tuple[ICCForm, ...]:
        return tuple(
            ICCForm(type=t, description=_ICC_DESCRIPTIONS[t], icc=iccs.get(t), f=f.get(t),
                    df1=dfs.get(t, (df_b, df_e))[0], df2=dfs.get(t, (df_b, df_e))[1], p=p.get(t),
                    ci_low=lo.get(t), ci_high=hi.get(t))
            for t in types
        )

    def undefined(reason: str) -> ICCResult:
        return ICCResult(forms=forms_from({}, {}, {}, {}, {}), ms_targets=None, ms_within=None, ms_samples=None,
                         ms_error=None, n=n, k=k, n_missing=n_missing, confidence=confidence,
                         note=_join(notes + [reason]))

    if n < 2:
        return undefined(f"ICC undefined: fewer than 2 complete targets (n = {n})")
    if k < 2:
        return undefined(f"ICC undefined: fewer than 2 samples per target (k = {k})")

    grand = x.mean()
    row = x.mean(axis=1)
    col = x.mean(axis=0)
    ss_b = k * np.sum((row - grand) ** 2)
    ss_j = n * np.sum((col - grand) ** 2)
    resid = x - row[:, None] - col[None, :] + grand
    ss_e = np.sum(resid**2)
    scale = np.sum((x - grand) ** 2)
    if scale <= _ZERO**2 * max(np.sum(x**2), 1.0):
        return undefined("ICC undefined: every rating is identical")
    # exact zeros where only rounding error is left
    tiny = _ZERO**2 * max(np.sum(x**2), 1.0)
    ss_b, ss_j, ss_e = (0.0 if v <= tiny else float(v) for v in (ss_b, ss_j, ss_e))
    msb, msj, mse = ss_b / df_b, ss_j / (k - 1), ss_e / df_e
    msw = (ss_j + ss_e) / df_w

    with np.errstate(divide="ignore", invalid="ignore"):
        iccs = {
            "ICC1": (msb - msw) / (msb + (k - 1) * msw),
            "ICC2": (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n),
            "ICC3": (msb - mse) / (msb + (k - 1) * mse),
            "ICC1k": (msb - msw) / msb if msb > 0 else math.nan,
            "ICC2k": (msb - mse) / (msb + (msj - mse) / n),
            "ICC3k": (msb - mse) / msb if msb > 0 else math.nan,
        }
    iccs = {t: _finite(v) for t, v in iccs.items()}
    undefined_iccs = [t for t in types if iccs[t] is None]
    if undefined_iccs:
        notes.append(f"{', '.join(undefined_iccs)} undefined: no variance between targets")

    f: dict[str, float | None] = {}
    p: dict[str, float | None] = {}
    lo: dict[str, float | None] = {}
    hi: dict[str, float | None] = {}
    a = 1.0 - confidence
    if msw > 0:
        f11 = msb / msw
        p11 = float(stats.f.sf(f11, df_b, df_w))
        f1l = f11 / stats.f.ppf(1 - a / 2, df_b, df_w)
        f1u = f11 * stats.f.ppf(1 - a / 2, df_w, df_b)
        f["ICC1"] = f["ICC1k"] = float(f11)
        p["ICC1"] = p["ICC1k"] = p11
        lo["ICC1"], hi["ICC1"] = (f1l - 1) / (f1l + k - 1), (f1u - 1) / (f1u + k - 1)
        if f11 > 0:
            lo["ICC1k"], hi["ICC1k"] = 1 - 1 / f1l, 1 - 1 / f1u
    if mse > 0:
        f21 = msb / mse
        p21 = float(stats.f.sf(f21, df_b, df_e))
        f3l = f21 / stats.f.ppf(1 - a / 2, df_b, df_e)
        f3u = f21 * stats.f.ppf(1 - a / 2, df_e, df_b)
        for t in ("ICC2", "ICC3", "ICC2k", "ICC3k"):
            f[t], p[t] = float(f21), p21
        lo["ICC3"], hi["ICC3"] = (f3l - 1) / (f3l + k - 1), (f3u - 1) / (f3u + k - 1)
        if f21 > 0:
            lo["ICC3k"], hi["ICC3k"] = 1 - 1 / f3l, 1 - 1 / f3u
        icc2 = iccs["ICC2"]
        if icc2 is not None:
            fj = msj / mse
            vn = (k - 1) * (n - 1) * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
            vd = (n - 1) * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
            with np.errstate(divide="ignore", invalid="ignore"):
                v = vn / vd
                f3u_ = stats.f.ppf(1 - a / 2, n - 1, v)
                f3l_ = stats.f.ppf(1 - a / 2, v, n - 1)
                l3 = n * (msb - f3u_ * mse) / (f3u_ * (k * msj + (k * n - k - n) * mse) + n * msb)
                u3 = n * (f3l_ * msb - mse) / (k * msj + (k * n - k - n) * mse + n * f3l_ * msb)
            lo["ICC2"], hi["ICC2"] = l3, u3
            lo["ICC2k"] = l3 * k / (1 + l3 * (k - 1))
            hi["ICC2k"] = u3 * k / (1 + u3 * (k - 1))
    else:
        notes.append("no residual variance (the samples agree exactly up to a shift per sample): "
                     "F, p and confidence intervals of ICC2, ICC3, ICC2k and ICC3k undefined")
    if msw <= 0:
        notes.append("no variance within targets: F, p and confidence intervals of ICC1 and ICC1k undefined")
    lo = {t: _finite(v) for t, v in lo.items()}
    hi = {t: _finite(v) for t, v in hi.items()}
    missing_ci = [t for t in types if t in f and (lo.get(t) is None or hi.get(t) is None)]
    if missing_ci:
        notes.append(f"confidence interval undefined for {', '.join(missing_ci)}")
    return ICCResult(forms=forms_from(iccs, f, p, lo, hi), ms_targets=float(msb), ms_within=float(msw),
                     ms_samples=float(msj), ms_error=float(mse), n=n, k=k, n_missing=n_missing,
                     confidence=confidence, note=_join(notes))
