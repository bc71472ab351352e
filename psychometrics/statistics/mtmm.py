"""Multitrait-multimethod (MTMM) analysis: convergent and discriminant validity across instruments.

When one run administers two or more inventories that measure the same traits (e.g. BFI-44 and
IPIP-NEO-120 both measure the Big Five), each inventory is a *method*. Scale scores are matched by
respondent and design cell (the same persona, sample, option order, template, wording, item order and mode
across inventories) and correlated across respondents; a run's analysis passes the design cells as
``groups`` (:func:`psychometrics.analysis.tables.mtmm_tables`), so that cells are never the units. Scales are aligned by their shared ``trait`` name and
``trait_sign`` (IPIP-50 Emotional Stability counts as reversed neuroticism).

Correlations are classified as

* convergent (monotrait-heteromethod): the same trait measured by two methods, the validity diagonal;
* heterotrait-monomethod: different traits, same method;
* heterotrait-heteromethod: different traits, different methods.

Campbell and Fiske's (1959) criteria, each reported as comparisons passed out of comparisons made:

1. each convergent correlation is significantly above zero (one-sided t test, alpha = .05);
2. it exceeds every heterotrait-heteromethod correlation in its row and column;
3. it exceeds every heterotrait-monomethod correlation involving either of its two measures;
4. the pattern of trait intercorrelations is the same in every block: for each pair of blocks, the
   Spearman correlation between their heterotrait correlations (reported; "passed" when >= .5).

Correlations use pairwise-complete respondents; a pair with fewer than 3 respondents, or a constant
score, gives no correlation and a note. When the respondents come from several groups (``groups``, e.g.
models in :func:`psychometrics.validity.statistics.behavior_mtmm`), both columns are centred within group *after*
the pairwise deletion, so the correlation is the pooled within-group (partial) correlation of exactly the
respondents it uses, and its test has :math:`n - k - 1` degrees of freedom for :math:`k` groups (the
slope test of ``lm(b ~ a + group)``), not :math:`n - 2`.

Reference: Campbell, D. T., & Fiske, D. W. (1959). Convergent and discriminant validation by the
multitrait-multimethod matrix. Psychological Bulletin, 56(2), 81-105.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Iterable

import numpy as np
import pandas as pd

from psychometrics.conditions import CONDITION_FIELDS

if TYPE_CHECKING:
    from psychometrics.inventories.model import Inventory


def trait_matrix(scores: pd.DataFrame, inventories: Iterable[Inventory]) -> pd.DataFrame:
    """Respondents x (method, trait) scale scores, signed so that every column points to its trait's pole."""
    frames = []
    for inventory in inventories:
        part = scores[(scores["inventory"] == inventory.id) & (scores["kind"] == "scale")]
        for scale in inventory.scales:
            if scale.trait is None:
                continue
            respondent = [c for c in CONDITION_FIELDS if c in part.columns]
            column = part[part["scale"] == scale.id].set_index(respondent)["score"] * scale.trait_sign
            frames.append(column.rename((inventory.id, scale.trait)))
    if not frames:
        return pd.DataFrame()
    wide = pd.concat(frames, axis=1)
    wide.columns = pd.MultiIndex.from_tuples(wide.columns, names=["method", "trait"])
    return wide


def _correlation(a: pd.Series, b: pd.Series, groups: np.ndarray | None = None
                 ) -> tuple[float | None, int, int, str | None]:
    """r of the pairwise-complete respondents (centred within group after the deletion), n and df."""
    keep = (a.notna() & b.notna()).to_numpy()
    x, y = a.to_numpy(float)[keep], b.to_numpy(float)[keep]
    n, k = int(keep.sum()), 1
    if groups is not None:
        g = np.asarray(groups)[keep]
        k = len(set(g))
        codes = pd.factorize(g)[0]
        x = x - (np.bincount(codes, x) / np.bincount(codes))[codes]
        y = y - (np.bincount(codes, y) / np.bincount(codes))[codes]
    df = n - k - 1
    if n < 3 or df < 1:
        return None, n, df, "fewer than 3 respondents with both scores" if k == 1 else \
            f"too few respondents with both scores ({n} in {k} groups)"
    sxx, syy = float(((x - x.mean()) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    if sxx <= 1e-12 * max(1.0, float((x**2).sum())) or syy <= 1e-12 * max(1.0, float((y**2).sum())):
        return None, n, df, "a score is constant across respondents" + (" within groups" if k > 1 else "")
    r = float(((x - x.mean()) * (y - y.mean())).sum()) / math.sqrt(sxx * syy)
    return max(-1.0, min(1.0, r)), n, df, None


def _p_greater_than_zero(r: float, df: int) -> float:
    """One-sided p of :math:`t = r\\sqrt{df / (1 - r^2)}` with ``df`` degrees of freedom (n - 2, or
    n - k - 1 for correlations centred within k groups)."""
    from scipy import stats

    if df < 1 or abs(r) >= 1:
        return 0.0 if r >= 1 else 1.0
    t = r * math.sqrt(df / (1 - r * r))
    return float(stats.t.sf(t, df))


def mtmm(scores: pd.DataFrame, inventories: list[Inventory]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The MTMM correlations (long table) and the Campbell-Fiske summary.

    Returns empty frames when fewer than two inventories share at least two traits.
    """
    return mtmm_matrix(trait_matrix(scores, inventories))


def mtmm_matrix(wide: pd.DataFrame, groups: Iterable | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`mtmm` from a respondents x (method, trait) table of signed scores (any methods, e.g. behaviour).

    ``groups`` (one label per row, e.g. the model) makes every correlation a within-group one: each pair's
    complete respondents are centred within group and tested with :math:`n - k - 1` degrees of freedom.
    The table has ``r``, ``n``, ``df`` and the one-sided ``p`` of :math:`r > 0` for every pair.
    """
    if wide.empty:
        return pd.DataFrame(), pd.DataFrame()
    methods = list(dict.fromkeys(wide.columns.get_level_values("method")))
    traits_by_method = {m: set(wide[m].columns) for m in methods}
    shared = sorted(t for t in set().union(*traits_by_method.values())
                    if sum(t in traits_by_method[m] for m in methods) >= 2)
    if len(methods) < 2 or len(shared) < 2:
        return pd.DataFrame(), pd.DataFrame()
    columns = [(m, t) for m in methods for t in shared if t in traits_by_method[m]]
    group_labels = None if groups is None else np.asarray(list(groups))
    rows = []
    r_of: dict[tuple, float | None] = {}
    for (m1, t1), (m2, t2) in itertools.combinations(columns, 2):
        r, n, df, note = _correlation(wide[(m1, t1)], wide[(m2, t2)], group_labels)
        kind = ("convergent" if t1 == t2 else "heterotrait-monomethod" if m1 == m2 else "heterotrait-heteromethod")
        rows.append({"method_a": m1, "trait_a": t1, "method_b": m2, "trait_b": t2, "kind": kind, "r": r, "n": n,
                     "df": df, "p": None if r is None else _p_greater_than_zero(r, df), "note": note})
        r_of[(m1, t1, m2, t2)] = r_of[(m2, t2, m1, t1)] = r
    table = pd.DataFrame(rows)

    checks = {1: [0, 0], 2: [0, 0], 3: [0, 0]}
    for row in rows:
        if row["kind"] != "convergent" or row["r"] is None:
            continue
        m1, m2, trait, r = row["method_a"], row["method_b"], row["trait_a"], row["r"]
        checks[1][1] += 1
        checks[1][0] += row["p"] < 0.05
        for other in shared:
            if other == trait:
                continue
            for a, b in (((m1, trait), (m2, other)), ((m2, trait), (m1, other))):
                value = r_of.get((*a, *b))
                if value is not None:
                    checks[2][1] += 1
                    checks[2][0] += r > value
            for method in (m1, m2):
                value = r_of.get((method, trait, method, other))
                if value is not None:
                    checks[3][1] += 1
                    checks[3][0] += r > value
    pattern_pass, pattern_total, pattern_values = 0, 0, []
    blocks = [(m, m) for m in methods] + list(itertools.combinations(methods, 2))
    for (a1, a2), (b1, b2) in itertools.combinations(blocks, 2):
        pairs = [(t, u) for t, u in itertools.combinations(shared, 2)]
        x = [r_of.get((a1, t, a2, u)) for t, u in pairs]
        y = [r_of.get((b1, t, b2, u)) for t, u in pairs]
        keep = [(p, q) for p, q in zip(x, y) if p is not None and q is not None]
        if len(keep) >= 3:
            from scipy import stats

            rho = float(stats.spearmanr([p for p, _ in keep], [q for _, q in keep]).statistic)
            if not math.isnan(rho):
                pattern_values.append(rho)
                pattern_total += 1
                pattern_pass += rho >= 0.5
    summary = pd.DataFrame(
        [
            {"criterion": "1 convergent r > 0 (p < .05)", "passed": checks[1][0], "comparisons": checks[1][1]},
            {"criterion": "2 convergent > heterotrait-heteromethod", "passed": checks[2][0], "comparisons": checks[2][1]},
            {"criterion": "3 convergent > heterotrait-monomethod", "passed": checks[3][0], "comparisons": checks[3][1]},
            {"criterion": "4 same trait pattern in every block (Spearman >= .5)", "passed": pattern_pass,
             "comparisons": pattern_total},
        ]
    )
    summary["share_passed"] = summary["passed"] / summary["comparisons"].where(summary["comparisons"] > 0)
    summary["mean_pattern_rho"] = [None, None, None, float(np.mean(pattern_values)) if pattern_values else None]
    return table, summary
