"""Respondent scores on a behavioural task that a missing variant cannot move, their reliability, and
whether missingness tracks anything.

A task's variants are reworded cover stories whose means differ a lot (an open question asked two ways
can draw 41 or 211 words). A respondent's plain mean over whichever variants were readable therefore
moves with *which* variants it lost: a persona that lost the high-mean variant looks low. Scores here
separate the respondent from the variant, within each model (variants of one model are not comparable
with another's), on the respondent x variant table of cell means :math:`m_{rv}` (the mean valid score of
respondent r on variant v over its samples; a cell without one is missing).

Interval measures (amounts, shares, counts of choices): the additive two-way model

.. math:: m_{rv} = a_r + b_v + e_{rv}, \\qquad \\textstyle\\sum_v b_v = 0,

fitted by least squares on the observed cells; the respondent's score is :math:`\\hat a_r`, its level on
the average variant. With every cell observed :math:`\\hat a_r` is the plain mean over variants; with
cells missing it is the mean of :math:`m_{rv} - \\hat b_v` over the respondent's own variants, where each
variant's effect is estimated net of the levels of the respondents who have it (a variant missed mostly
by high scorers is not mistaken for a low one). This is ``lm(m ~ 0 + respondent + variant)`` with sum
contrasts, i.e. the fixed-effects version of a variant random effect (Searle, Casella & McCulloch, 1992).

Ratio measures (reply length; tasks whose kind is ``relative_to_model``): the multiplicative model
:math:`E\\,m_{rv} = \\alpha_r \\beta_v`, fitted by Poisson quasi-likelihood (``glm(m ~ 0 + respondent +
variant, family = quasipoisson)``; computed by iterative proportional fitting of the row and column
margins), and the score is :math:`\\hat\\alpha_r / \\overline{\\hat\\alpha}`, the respondent's length in
units of its model's average respondent (1 = the model's usual, as before). A variant that draws five
times the words then scales every respondent's cell by five and moves nobody. Why not logs: a reply of
zero words (or a one-word refusal kept as data) makes :math:`\\log m` undefined or dominant, while the
quasi-likelihood fit takes zeros and weighs cells as lengths vary (variance proportional to the mean);
with every cell observed the score is the plain mean over variants divided by the model's mean, exactly
what the analysis used before.

A cell contributes only through the model: a variant only one respondent has is fitted exactly by its
own effect and tells nothing about that respondent. When the respondents and variants of a model fall
apart into groups that share no variant, levels of different groups cannot be compared: respondents
outside the largest group get no score (noted).

Reliability across variants (:func:`variant_alpha`): Cronbach's alpha of the respondent x variant table,
each variant a parallel form, :math:`\\alpha = \\frac{k}{k-1}\\left(1 - \\frac{\\sum_v s^2_v}{\\sum_{v,w}
s_{vw}}\\right)`, from pairwise-complete covariances as ``psych::alpha`` computes it (missing cells are left
out pair by pair), with Feldt's 95% interval :math:`1 - (1-\\alpha)\\,F_{1-p,\\;n-1,\\;(n-1)(k-1)}`
(Feldt, Woodruff & Salih, 1987; ``psych::alpha``'s ``feldt``, with n the respondents with any cell).
Ratio tasks enter divided by each variant's mean in the model (their scale); pooled over models every
variant is centred within model first (the within-model reliability; a cell alone in its model and
variant is left out, as it would centre to 0). Alpha uses every variant with 3 or
more respondents, so it rests on more variants than the split-half over the shared ones and is not
at the mercy of one split.

Missingness (:func:`missingness_table`): per scope and task, each respondent's share of conversations
without a valid score; the test that these shares are equal across respondents (Pearson's chi-square on
the respondents x {valid, missing} counts, summed over models when pooled) and their correlation with
the self-report of the task's trait and with the score. A task is flagged when the shares differ or
track either (p < .05; the chi-square has little power with a few conversations per respondent, the
correlations more): its scores or validity may then reflect what was lost, whatever the centring.

Checked against R in ``tests/reference/behavior_scores.R`` and ``validity.R`` (``lm``,
``glm(family = quasipoisson)``, ``psych::alpha`` and its ``feldt`` interval, ``chisq.test``, ``cor.test``).
Cross-check: with the variant as a random effect instead (``lmer(m ~ 1 + (1 | respondent) + (1 |
variant))``), the predicted respondent levels correlate above .9999 with these scores on the reference
data where the plain mean's correlate .96 (the random-effect version shrinks levels toward the mean;
the fixed-effect one is used as it needs no variance estimate from a handful of variants).

References
----------
Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests. Psychometrika, 16, 297-334.
Feldt, L. S., Woodruff, D. J., & Salih, F. A. (1987). Statistical inference for coefficient alpha.
Applied Psychological Measurement, 11, 93-103.
Searle, S. R., Casella, G., & McCulloch, C. E. (1992). Variance components. Wiley.
McCullagh, P., & Nelder, J. A. (1989). Generalized linear models (2nd ed.). Chapman & Hall.
Little, R. J. A., & Rubin, D. B. (2019). Statistical analysis with missing data (3rd ed.). Wiley.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RESPONDENT = ["model", "persona"]
#: Fewest respondents with a cell for a variant to enter alpha.
MIN_VARIANT_RESPONDENTS = 3


def ratio_tasks(behavior: pd.DataFrame) -> set[str]:
    """Tasks marked as ratio measures (a true ``ratio`` column, as :func:`mark_ratio_tasks` sets it)."""
    if "ratio" not in behavior.columns or behavior.empty:
        return set()
    return set(behavior.loc[behavior["ratio"].fillna(False).astype(bool), "task"])


def mark_ratio_tasks(frame: pd.DataFrame, tasks: dict) -> pd.DataFrame:
    """``frame`` with a ``ratio`` column: True for tasks whose kind is ``relative_to_model`` (reply length)."""
    from psychometrics.behavior.kinds import get_kind

    ratio = {task_id for task_id, task in tasks.items() if get_kind(task.kind).relative_to_model}
    return frame.assign(ratio=frame["task"].isin(ratio))


def cell_means(behavior: pd.DataFrame) -> pd.Series:
    """Mean valid score per model x persona x task x variant over samples (cells without one left out)."""
    valid = behavior[behavior["score"].notna()]
    return valid.groupby([*RESPONDENT, "task", "variant"])["score"].mean()


def _components(table: np.ndarray) -> np.ndarray:
    """Label of each row's connected group in the bipartite graph rows-variants of observed cells."""
    n_rows, n_cols = table.shape
    parent = list(range(n_rows + n_cols))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for r, c in zip(*np.nonzero(~np.isnan(table))):
        a, b = find(int(r)), find(n_rows + int(c))
        if a != b:
            parent[a] = b
    return np.array([find(r) for r in range(n_rows)])


def _keep_largest_group(table: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows outside the largest connected group (by rows with cells) set missing; how many were."""
    has = ~np.isnan(table).all(axis=1)
    if has.sum() == 0:
        return table, 0
    labels = _components(table)
    groups, counts = np.unique(labels[has], return_counts=True)
    if len(groups) == 1:
        return table, 0
    keep = labels == groups[np.argmax(counts)]
    out = table.copy()
    out[~keep] = np.nan
    return out, int((has & ~keep).sum())


def fit_additive(table: np.ndarray) -> np.ndarray:
    """Least-squares respondent levels :math:`\\hat a_r` of ``m = a_r + b_v`` (sum-to-zero b) on the
    observed cells of a respondents x variants table; NaN for rows without a cell. The table must be
    connected (:func:`_keep_largest_group`).

    Solved exactly through the variants' reduced normal equations (respondents eliminated):
    :math:`(C + J/k)\\,b = q` with :math:`C = \\mathrm{diag}(n_v) - N^\\top D_r^{-1} N` (N the 0/1 table
    of observed cells, :math:`D_r` each respondent's number of cells) and
    :math:`q_v = \\sum_{r \\ni v} (m_{rv} - \\bar m_r)`; then :math:`\\hat a_r` is the mean of
    :math:`m_{rv} - b_v` over the respondent's cells. k x k, whatever the number of respondents.
    """
    observed = ~np.isnan(table)
    out = np.full(table.shape[0], np.nan)
    rows = observed.any(axis=1)
    cols = observed.any(axis=0)
    if not rows.any():
        return out
    seen, values = observed[rows][:, cols].astype(float), np.where(observed, table, 0.0)[rows][:, cols]
    per_row = seen.sum(axis=1)
    row_mean = values.sum(axis=1) / per_row
    k = seen.shape[1]
    c = np.diag(seen.sum(axis=0)) - (seen / per_row[:, None]).T @ seen
    q = (values - seen * row_mean[:, None]).sum(axis=0)
    b = np.linalg.solve(c + np.full((k, k), 1.0 / k), q)
    out[rows] = ((values - seen * b[None, :]).sum(axis=1)) / per_row
    return out


def fit_multiplicative(table: np.ndarray, *, tol: float = 1e-14, max_iter: int = 10_000) -> tuple[np.ndarray, bool]:
    """Poisson quasi-likelihood respondent factors of ``E m = alpha_r beta_v`` on the observed cells,
    divided by their mean (1 = the average respondent); NaN for rows without a cell. Returns the scores
    and whether the iteration converged. Cells must be >= 0; a variant whose cells are all 0 carries no
    information and is ignored."""
    table = np.where(np.isnan(table), np.nan, table)
    observed = ~np.isnan(table)
    observed &= ~(np.nansum(np.where(observed, table, 0), axis=0) <= 0)[None, :]
    values = np.where(observed, table, 0.0)
    has = observed.any(axis=1)
    out = np.full(table.shape[0], np.nan)
    if not has.any():
        return out, True
    alpha = np.where(has, values.sum(axis=1) / np.maximum(observed.sum(axis=1), 1), 0.0)
    beta = np.ones(table.shape[1])
    row_sum, col_sum = values.sum(axis=1), values.sum(axis=0)
    converged = False
    for _ in range(max_iter):
        denom = (observed * alpha[:, None]).sum(axis=0)
        beta = np.where(denom > 0, col_sum / np.where(denom > 0, denom, 1), 0.0)
        denom = (observed * beta[None, :]).sum(axis=1)
        new = np.where(denom > 0, row_sum / np.where(denom > 0, denom, 1), 0.0)
        scale = new[has].mean()
        if scale > 0:
            new, beta = new / scale, beta * scale
        change = np.max(np.abs(new - alpha)[has])
        alpha = new
        if change <= tol * max(1.0, float(np.max(np.abs(alpha[has])))):
            converged = True
            break
    out[has] = alpha[has] / alpha[has].mean() if alpha[has].mean() > 0 else np.nan
    return out, converged


def _task_table(means: pd.Series, model: str, task: str) -> pd.DataFrame:
    part = means.xs((model, task), level=("model", "task"))
    return part.unstack("variant")


def centred_scores(behavior: pd.DataFrame, ratio: set[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Respondents x tasks: the variant-centred score of every respondent (module docstring), and notes.

    ``ratio`` names the ratio-measure tasks (default :func:`ratio_tasks`). Every variant of every
    respondent is used; respondents without a valid score on a task get NaN.
    """
    ratio = ratio_tasks(behavior) if ratio is None else set(ratio)
    tasks = sorted(set(behavior["task"]))
    respondents = pd.MultiIndex.from_frame(behavior[RESPONDENT].drop_duplicates()).sort_values()
    out = pd.DataFrame(np.nan, index=respondents, columns=pd.Index(tasks, name="task"))
    notes: list[str] = []
    means = cell_means(behavior)
    if means.empty:
        return out, notes
    present = set(zip(means.index.get_level_values("model"), means.index.get_level_values("task")))
    for model, task in sorted(present):
        table = _task_table(means, model, task)
        values, dropped = _keep_largest_group(table.to_numpy(float))
        if dropped:
            notes.append(f"task '{task}', model '{model}': {dropped} respondent(s) share no variant with the "
                         "others (through any chain of respondents); their level cannot be compared and they have "
                         "no score")
        if task in ratio:
            if bool((values[~np.isnan(values)] < 0).any()):
                notes.append(f"task '{task}': negative scores on a ratio measure; scored as an interval measure")
                scores = fit_additive(values)
            else:
                scores, converged = fit_multiplicative(values)
                if not converged:
                    notes.append(f"task '{task}', model '{model}': the ratio model did not converge")
        else:
            scores = fit_additive(values)
        index = pd.MultiIndex.from_arrays([[model] * len(table), table.index], names=RESPONDENT)
        out.loc[index, task] = scores
    return out, notes


def missing_shares(behavior: pd.DataFrame) -> pd.DataFrame:
    """Per model x persona x task: conversations, those without a valid score, their share, and the number
    of variants with a valid score."""
    grouped = behavior.assign(missing=behavior["score"].isna()).groupby([*RESPONDENT, "task"])
    out = grouped.agg(conversations=("missing", "size"), missing=("missing", "sum"))
    out["missing_share"] = out["missing"] / out["conversations"]
    valid = behavior[behavior["score"].notna()].groupby([*RESPONDENT, "task"])["variant"].nunique()
    out["variants"] = valid.reindex(out.index).fillna(0).astype(int)
    return out


# -------------------------------------------------------------------------------------- reliability


def variant_matrix(behavior: pd.DataFrame, task: str, models: list[str] | None, ratio: bool) -> pd.DataFrame:
    """Respondents x variants of one task: cell means, divided by the variant's mean in the model for a
    ratio task, and centred within model per variant when ``models`` holds several (pooled)."""
    means = cell_means(behavior[behavior["task"] == task])
    if means.empty:
        return pd.DataFrame()
    wide = means.droplevel("task").unstack("variant")
    if models is not None:
        wide = wide[wide.index.get_level_values("model").isin(models)]
    groups = wide.index.get_level_values("model")
    if ratio:
        variant_mean = wide.groupby(groups).transform("mean")
        wide = wide / variant_mean.where(variant_mean > 0)
    if len(set(groups)) > 1:  # a cell alone in its model and variant would centre to 0: left out
        wide = wide.where(wide.groupby(groups).transform("count") >= 2)
        wide = wide - wide.groupby(groups).transform("mean")
    return wide


def variant_alpha(wide: pd.DataFrame, confidence: float = 0.95) -> dict:
    """Cronbach's alpha across variants with pairwise-complete covariances and Feldt's interval.

    Variants with fewer than :data:`MIN_VARIANT_RESPONDENTS` respondents or no variance are left out.
    Returns ``reliability``, ``low``, ``high``, ``n`` (respondents with a cell), ``k`` (variants) and a
    ``note`` (None values when undefined). Equals ``psych::alpha(wide)$total$raw_alpha`` and its ``feldt``.
    """
    from scipy import stats

    out: dict = {"reliability": None, "low": None, "high": None, "n": 0, "k": 0, "note": None}
    if wide.empty:
        out["note"] = "no valid scores"
        return out
    counts = wide.notna().sum()
    wide = wide.loc[:, counts >= MIN_VARIANT_RESPONDENTS]
    wide = wide.loc[:, wide.var(ddof=1) > 1e-12 * np.maximum(1.0, (wide**2).mean())]
    wide = wide[wide.notna().any(axis=1)]
    n, k = len(wide), wide.shape[1]
    out.update(n=n, k=k)
    if k < 2:
        out["note"] = (f"alpha needs 2 or more variants with {MIN_VARIANT_RESPONDENTS}+ respondents and varying "
                       f"scores ({k})")
        return out
    cov = wide.cov(min_periods=2).to_numpy(float)  # pairwise complete, as cov(use = "pairwise")
    if np.isnan(cov).any():
        out["note"] = "some pairs of variants share fewer than 2 respondents: alpha not estimable"
        return out
    total = float(cov.sum())
    if total <= 0:
        out["note"] = "the variants' covariances sum to 0 or less: alpha not estimable"
        return out
    alpha = k / (k - 1) * (1 - float(np.trace(cov)) / total)
    p = 1 - confidence
    df1, df2 = n - 1, (n - 1) * (k - 1)
    out.update(reliability=alpha, low=1 - (1 - alpha) * float(stats.f.ppf(1 - p / 2, df1, df2)),
               high=1 - (1 - alpha) * float(stats.f.ppf(p / 2, df1, df2)))
    notes = []
    if alpha < 0:
        notes.append("alpha is negative: the variants do not measure one thing")
    if int(wide.notna().all(axis=1).sum()) < n:
        notes.append(f"{n - int(wide.notna().all(axis=1).sum())} of {n} respondents lack a variant "
                     "(pairwise-complete covariances)")
    out["note"] = "; ".join(notes) or None
    return out


# -------------------------------------------------------------------------------------- missingness


def _homogeneity(counts: pd.DataFrame) -> tuple[float | None, int | None]:
    """Pearson's chi-square that respondents' missing shares are equal (respondents x {missing, valid})."""
    table = np.column_stack([counts["missing"].to_numpy(float),
                             (counts["conversations"] - counts["missing"]).to_numpy(float)])
    if len(table) < 2 or (table.sum(axis=0) == 0).any():
        return None, None
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum()), len(table) - 1


def missingness_table(behavior: pd.DataFrame, selfs: pd.DataFrame, scores: pd.DataFrame,
                      info: pd.DataFrame, scopes: list[str]) -> pd.DataFrame:
    """Per scope and task: does missingness differ across respondents, and does it track the self-report
    of the task's trait or the score? (module docstring). ``selfs`` and ``scores`` are respondent x trait
    and respondent x task tables; ``info`` the task table (trait, direction)."""
    from scipy import stats

    from psychometrics.statistics.correlation import correlation

    shares = missing_shares(behavior)
    rows = []
    for scope in scopes:
        for task, (trait, _direction) in info.iterrows():
            part = shares.xs(task, level="task") if task in shares.index.get_level_values("task") else None
            if part is None:
                continue
            if scope != "pooled":
                part = part[part.index.get_level_values("model") == scope]
            if part.empty:
                continue
            models = part.index.get_level_values("model")
            chi2, df = 0.0, 0
            for _, block in part.groupby(level="model"):
                value, block_df = _homogeneity(block)
                if value is not None and block_df is not None:
                    chi2, df = chi2 + value, df + block_df
            row = {"scope": scope, "task": task, "trait": trait, "n": len(part),
                   "missing_rate": float(part["missing"].sum() / part["conversations"].sum()),
                   "missing_min": float(part["missing_share"].min()),
                   "missing_max": float(part["missing_share"].max()),
                   "chi2": chi2 if df else None, "chi2_df": df or None,
                   "chi2_p": float(stats.chi2.sf(chi2, df)) if df else None,
                   "r_self": None, "p_self": None, "r_score": None, "p_score": None}
            groups = models if scope == "pooled" else None
            share = part["missing_share"]
            if trait in selfs.columns:
                got = correlation(share.to_numpy(float), selfs[trait].reindex(share.index).to_numpy(float), groups)
                row.update(r_self=got["r"], p_self=got["p"])
            if task in scores.columns:
                got = correlation(share.to_numpy(float), scores[task].reindex(share.index).to_numpy(float), groups)
                row.update(r_score=got["r"], p_score=got["p"])
            uneven = row["chi2_p"] is not None and row["chi2_p"] < 0.05
            tracks = [name for name, p in (("self-report", row["p_self"]), ("score", row["p_score"]))
                      if p is not None and p < 0.05]
            reasons = (["missing shares differ across respondents (chi-square p < .05)"] if uneven else []) + \
                ([f"missingness tracks the {' and the '.join(tracks)} (p < .05)"] if tracks else [])
            row["flag"] = bool(reasons)
            row["note"] = "; ".join(reasons) + ": scores and validity may reflect what was lost" if reasons else None
            rows.append(row)
    return pd.DataFrame(rows, columns=["scope", "task", "trait", "n", "missing_rate", "missing_min", "missing_max",
                                       "chi2", "chi2_df", "chi2_p", "r_self", "p_self", "r_score", "p_score", "flag",
                                       "note"])
