"""Self-report against behaviour: does what a model says about itself predict what it does?

The unit of analysis is the *respondent*: one model playing one persona (``model x persona``). A
questionnaire run gives each respondent's self-report (scale scores per design cell) and a behaviour run
gives its behaviour (one score per conversation: task x variant x sample). Sample indices are
independent draws and are *not* linked across sessions (sample 0 of the questionnaire and sample 0 of
the behaviour run are unrelated), so every score is averaged within the respondent first:

* self-report of trait T: the mean over design cells of each inventory's scale for T, signed by the
  scale's ``trait_sign``; when several inventories measure T, their respondent scores are z-standardized
  over all respondents and averaged (the composite);
* behaviour on a task: the mean over samples within each variant, then the mean over variants (every
  variant weighs the same however many of its conversations were readable). Unreadable replies are
  missing, never 0.

Scopes. Each model is analysed alone (its personas are its respondents) and, when there are several
models, pooled: both variables are centred within model first, so the pooled correlation is the
within-model association (the partial correlation given the model) and differences between models'
means cannot create it. Its test has ``n - k - 1`` degrees of freedom for ``k`` models, as the slope
test of ``lm(behaviour ~ self + model)``. Centring (rather than standardizing) within model weighs each
model by its within-model spread; per-model rows do not depend on the units. The mixed model (:func:`mixed_model`) separates the
within-model from the between-model association.

Tables (:func:`validity_tables`):

``validity_pairs``
    every trait x task pair: Pearson r across respondents, its percentile bootstrap 95% CI (respondents
    resampled with replacement, within model when pooled; seeded), two-sided t-test p, Benjamini-Hochberg
    adjusted p over the declared pairs and over all pairs of the scope, ``confirmed`` (declared, r in the
    task's declared direction, BH p < .05) and r corrected for unreliability
    :math:`r_c = r / \\sqrt{\\rho_{self}\\,\\rho_{behaviour}}` (Spearman, 1904), clipped to [-1, 1] with a note.
``dissociation``
    share of declared pairs confirmed, overall and per trait; dissociation index = 1 - share.
``validity_mixed``
    per declared pair, with two or more models: ``z_b ~ self_within + self_between + (1 | model)`` (REML).
``manipulation_check``
    the persona's target level on a trait against the achieved self-report and the achieved behaviour
    (signed by the task's direction): r and slope per target level.
``behavior_reliability`` / ``selfreport_reliability``
    split-half reliability of each behaviour score across variants (Spearman-Brown) and Cronbach's alpha
    of each self-report scale across respondents (composite reliability for several inventories).
``validity_mtmm`` / ``validity_mtmm_summary``
    the MTMM matrix with behaviour as one more method (:mod:`psychometrics.mtmm`).
``validity_scores``
    the respondent-level scores everything above is computed from.

Checked against R (``tests/reference/validity.R``): ``cor``, ``cor.test``, ``lm``, ``p.adjust(method =
"BH")``, ``psych::alpha``, ``lme4::lmer(REML = TRUE)``.

Reliabilities for the correction. Self-report: Cronbach's alpha over respondents of the item values
averaged within each respondent (:func:`selfreport_reliability`; the items come from
:func:`read_selfreport`), i.e. the reliability of the very score that is correlated; without item data
no correction is made. Behaviour: split-half across variants with the Spearman-Brown step-up
(:func:`behavior_reliability`). Pooled rows use the within-model (centred) versions of both.

Differences from R
------------------
* The mixed model is fitted by a profiled REML written here for one random intercept
  (:func:`random_intercept_reml`), not statsmodels' ``MixedLM``: on the reference data ``MixedLM``
  stopped at a zero model variance with undefined standard errors where ``lmer`` found 0.2. The results
  equal ``lmer``'s to its optimiser's tolerance (about 1e-8). lme4 gives no p values; here they are t
  tests with between-within degrees of freedom.
* ``psych::alpha`` uses pairwise-complete item covariances; :func:`~psychometrics.reliability.cronbach_alpha`
  drops respondents with a missing item (identical on complete data).
* Bootstrap intervals use NumPy's random stream (seeded per scope, trait and task) and cannot match R's.

References
----------
Benjamini, Y., & Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B, 57, 289-300.
Spearman, C. (1904). The proof and measurement of association between two things. Am. J. Psychol., 15, 72-101.
Brown, W. (1910). Some experimental results in the correlation of mental abilities. Br. J. Psychol., 3, 296-322.
Mosier, C. I. (1943). On the reliability of a weighted composite. Psychometrika, 8, 161-168.
Efron, B., & Tibshirani, R. J. (1993). An introduction to the bootstrap. Chapman & Hall.
Campbell, D. T., & Fiske, D. W. (1959). Convergent and discriminant validation by the multitrait-multimethod
matrix. Psychological Bulletin, 56, 81-105.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from psychometrics.errors import PsytestError

SELFREPORT_COLUMNS = ("model", "persona", "inventory", "scale", "trait", "trait_sign", "score", "cell")
ITEM_COLUMNS = ("model", "persona", "inventory", "scale", "trait", "item", "value")
BEHAVIOR_COLUMNS = ("model", "persona", "sample", "task", "variant", "trait", "direction", "outcome", "score")
TARGET_COLUMNS = ("persona", "trait", "level")
RESPONDENT = ["model", "persona"]
POOLED = "pooled"
BEHAVIOR_METHOD = "behavior"


# ------------------------------------------------------------------------------------------ inputs


def read_selfreport(run_dirs: Iterable[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Self-report of questionnaire runs: scale scores per design cell, and item means per respondent.

    Returns ``(scores, items)``. ``scores`` has one row per design cell x scale that has a ``trait``
    (columns :data:`SELFREPORT_COLUMNS`; ``cell`` names the run and every condition but the persona).
    ``items`` has the keyed item values averaged over a respondent's cells (:data:`ITEM_COLUMNS`), the
    data of :func:`selfreport_reliability`.
    """
    from psychometrics.design import CONDITION_FIELDS
    from psychometrics.library import resolve_inventory
    from psychometrics.run import RESPONSES, read_manifest
    from psychometrics.scoring import item_matrix, responses_frame, scale_scores
    from psychometrics.store import RunStore

    scores, frames, inventories = [], [], {}
    for index, run_dir in enumerate(run_dirs):
        run_dir = Path(run_dir)
        manifest = read_manifest(run_dir)
        if manifest.get("study") == "behavior" or not (run_dir / RESPONSES).exists():
            raise PsytestError(f"{run_dir}: not a questionnaire run (no {RESPONSES}); self-report comes from "
                               "runs made by 'psytest administer'")
        sources = manifest.get("inventory_sources", {})
        run_inventories = [resolve_inventory(sources.get(e["id"], e["id"])) for e in manifest.get("inventories", [])]
        for inventory in run_inventories:
            known = inventories.setdefault(inventory.id, inventory)
            if known.content_hash != inventory.content_hash:
                raise PsytestError(f"{run_dir}: inventory '{inventory.id}' differs from the one of an earlier run; "
                                   "give runs that used the same inventory file")
        with RunStore(run_dir / RESPONSES) as store:
            frame = responses_frame(store)
        frame["persona"] = frame["persona"].fillna("none")
        frame["model"] = manifest["model"]
        frames.append(frame)
        cells = scale_scores(frame, run_inventories)
        cells = cells[cells["kind"] == "scale"]
        others = [c for c in CONDITION_FIELDS if c != "persona"]
        cells = cells.assign(cell=[f"{index}:" + "|".join(map(str, row)) for row in cells[others].itertuples(index=False)])
        for inventory in run_inventories:
            for scale in inventory.scales:
                if scale.trait is None:
                    continue
                part = cells[(cells["inventory"] == inventory.id) & (cells["scale"] == scale.id)]
                scores.append(part.assign(model=manifest["model"], trait=scale.trait, trait_sign=scale.trait_sign))
    items = []
    if frames:
        everything = pd.concat(frames, ignore_index=True)
        for inventory in inventories.values():
            matrix = item_matrix(everything, inventory, by=("model", "persona"))
            for scale in inventory.scales:
                if scale.trait is None:
                    continue
                long = matrix[list(scale.items)].rename_axis(columns="item").stack(future_stack=True)
                long = long.rename("value").reset_index()
                items.append(long.assign(inventory=inventory.id, scale=scale.id, trait=scale.trait))
    scores_frame = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(columns=SELFREPORT_COLUMNS)
    items_frame = pd.concat(items, ignore_index=True) if items else pd.DataFrame(columns=ITEM_COLUMNS)
    return scores_frame[list(SELFREPORT_COLUMNS)], items_frame[list(ITEM_COLUMNS)]


def selfreport_frame(run_dirs: Iterable[Path]) -> pd.DataFrame:
    """Scale scores per design cell of questionnaire runs (see :func:`read_selfreport`)."""
    return read_selfreport(run_dirs)[0]


def targets_frame(persona_set) -> pd.DataFrame:
    """``persona, trait, level`` rows of a persona set's targets (a :class:`PersonaSet` or its name/path).

    Personas and traits without a row have level 0 (a baseline persona, or a trait the persona does not set).
    """
    if isinstance(persona_set, (str, Path)):
        from psychometrics.personas import resolve_persona_set

        persona_set = resolve_persona_set(str(persona_set))
    rows = [(p.id, trait, level) for p in persona_set.personas for trait, level in p.targets.items()]
    return pd.DataFrame(rows, columns=list(TARGET_COLUMNS))


def _check(frame: pd.DataFrame | None, columns: Iterable[str], what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise PsytestError(f"{what}: expected a table with columns {', '.join(columns)}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PsytestError(f"{what}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    return frame


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


# ------------------------------------------------------------------------------ respondent scores


def self_components(selfreport: pd.DataFrame) -> pd.DataFrame:
    """Respondents x (inventory, trait): the signed scale score averaged over the respondent's cells."""
    signed = selfreport.assign(signed=selfreport["score"].astype(float) * selfreport["trait_sign"].astype(float))
    wide = signed.groupby([*RESPONDENT, "inventory", "trait"])["signed"].mean().unstack(["inventory", "trait"])
    return wide.sort_index(axis=1)


def _zscore(column: pd.Series) -> pd.Series:
    sd = column.std(ddof=1)
    return (column - column.mean()) / sd if sd > 0 else column * np.nan


def self_scores(selfreport: pd.DataFrame) -> pd.DataFrame:
    """Respondents x traits: the trait's scale score, or the mean of its z-scored scales over inventories."""
    components = self_components(selfreport)
    traits = sorted(set(components.columns.get_level_values("trait")))
    out = {}
    for trait in traits:
        block = components.xs(trait, axis=1, level="trait")
        out[trait] = block.iloc[:, 0] if block.shape[1] == 1 else block.apply(_zscore).mean(axis=1)
    return pd.DataFrame(out, index=components.index)


def task_info(behavior: pd.DataFrame) -> pd.DataFrame:
    """One row per task: its trait and declared direction (+1/-1)."""
    info = behavior[["task", "trait", "direction"]].drop_duplicates()
    duplicated = info["task"][info["task"].duplicated()]
    if len(duplicated):
        raise PsytestError(f"behaviour data: task '{duplicated.iloc[0]}' has more than one trait or direction; "
                           "give runs made with the same task files")
    return info.assign(direction=info["direction"].astype(int)).sort_values("task").set_index("task")


def _variant_means(behavior: pd.DataFrame) -> pd.Series:
    return behavior.groupby([*RESPONDENT, "task", "variant"])["score"].mean()


def behavior_scores(behavior: pd.DataFrame) -> pd.DataFrame:
    """Respondents x tasks: mean over variants of each variant's mean valid score over samples."""
    return _variant_means(behavior).groupby([*RESPONDENT, "task"]).mean().unstack("task")


def _in_scope(index: pd.Index, scope: str) -> np.ndarray:
    return np.ones(len(index), bool) if scope == POOLED else (index.get_level_values("model") == scope)


def _scopes(models: Iterable[str]) -> list[str]:
    models = sorted(set(models))
    return models + ([POOLED] if len(models) > 1 else [])


def _centre(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    codes = pd.factorize(np.asarray(groups))[0]
    return values - (np.bincount(codes, values) / np.bincount(codes))[codes]


# ----------------------------------------------------------------------------------- correlations


def correlation(x, y, groups=None) -> dict:
    """Pearson r of complete pairs with its two-sided t test; within groups when ``groups`` is given.

    With groups (models) both variables are centred within group, and the test has :math:`n - k - 1`
    degrees of freedom (the partial correlation given the group). :math:`t = r\\sqrt{df / (1 - r^2)}`.
    Returns ``n``, ``r``, ``df``, ``p``, ``slope`` (of y on x), ``note`` (None values when undefined).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(keep.sum())
    out = {"n": n, "r": None, "df": None, "p": None, "slope": None, "note": None}
    k = 1
    if groups is not None:
        groups = np.asarray(groups)[keep]
        k = len(set(groups))
        x, y = _centre(x, groups), _centre(y, groups)
    df = n - k - 1
    if n < 3 or df < 1:
        out["note"] = f"too few respondents with both scores ({n}{f' in {k} models' if k > 1 else ''})"
        return out
    sxx, syy = float(((x - x.mean()) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    if sxx <= 1e-12 * max(1.0, float((x**2).sum())) or syy <= 1e-12 * max(1.0, float((y**2).sum())):
        out["note"] = "a score is constant across respondents" + (" within models" if k > 1 else "")
        return out
    from scipy import stats

    sxy = float(((x - x.mean()) * (y - y.mean())).sum())
    r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    p = 0.0 if abs(r) == 1 else float(2 * stats.t.sf(abs(r) * math.sqrt(df / (1 - r * r)), df))
    out.update(r=r, df=df, p=p, slope=sxy / sxx)
    return out


def bootstrap_r(x, y, groups=None, *, n_boot: int = 2000, rng: np.random.Generator,
                confidence: float = 0.95) -> tuple[float | None, float | None, int]:
    """Percentile bootstrap CI of r over respondents (complete pairs), resampled within groups if given.

    Returns ``(low, high, failed)``: ``failed`` resamples had a constant variable and are left out.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    members = [np.arange(len(x))] if groups is None else [
        np.flatnonzero(np.asarray(groups)[keep] == g) for g in pd.unique(np.asarray(groups)[keep])]
    values = []
    for start in range(0, n_boot, 500):
        size = min(500, n_boot - start)
        xs, ys = [], []
        for rows in members:
            pick = rows[rng.integers(0, len(rows), size=(size, len(rows)))]
            xs.append(x[pick] - x[pick].mean(axis=1, keepdims=True))
            ys.append(y[pick] - y[pick].mean(axis=1, keepdims=True))
        xc, yc = np.concatenate(xs, axis=1), np.concatenate(ys, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            denominator = np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
            values.append(np.where(denominator > 1e-12, (xc * yc).sum(axis=1) / denominator, np.nan))
    draws = np.concatenate(values)
    finite = draws[np.isfinite(draws)]
    if len(finite) < max(10, n_boot // 2):
        return None, None, int(n_boot - len(finite))
    tail = (1 - confidence) / 2
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail)), int(n_boot - len(finite))


def bh_adjust(p: Iterable[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p values (``p.adjust(method = "BH")``); None stays None.

    :math:`\\tilde p_{(i)} = \\min_{j \\ge i} \\min(1, m\\,p_{(j)} / j)` for the m non-missing p values sorted.
    """
    values = list(p)
    present = [i for i, v in enumerate(values) if v is not None and not (isinstance(v, float) and math.isnan(v))]
    out: list[float | None] = [None] * len(values)
    m = len(present)
    order = sorted(present, key=lambda i: values[i], reverse=True)
    running = 1.0
    for rank, i in zip(range(m, 0, -1), order):
        running = min(running, values[i] * m / rank)
        out[i] = running
    return out


def _rng(seed: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\0".join(map(str, names)).encode())])


def _join(notes: Iterable[str | None]) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(dict.fromkeys(kept)) if kept else None


# ------------------------------------------------------------------------------------- reliability


def behavior_reliability(behavior: pd.DataFrame, variant_order: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Split-half reliability of each behaviour score across variants, per model and pooled.

    Variants are taken in the task file's order (``variant_order``; by default the natural order of
    their ids, v01, v02, ...). For each respondent, half A is the mean over the 1st, 3rd, 5th ... variant
    (each variant first averaged over samples) and half B over the 2nd, 4th, ...; :math:`r_{AB}` is their
    correlation across respondents (centred within model when pooled) and the Spearman-Brown
    reliability of the full score is :math:`2 r_{AB} / (1 + r_{AB})` (none when :math:`r_{AB} < 0`).
    ``missing_rate`` is the share of conversations without a valid score.
    """
    _check(behavior, ("model", "persona", "task", "variant", "trait", "direction", "score"), "behaviour data")
    info = task_info(behavior)
    means = _variant_means(behavior)
    by_task = {task: (part, means.xs(task, level="task")) for task, part in behavior.groupby("task")}
    rows = []
    for scope in _scopes(behavior["model"]):
        for task, (trait, direction) in info.iterrows():
            in_task, part = by_task[task]
            if scope != POOLED:
                in_task, part = in_task[in_task["model"] == scope], part[_in_scope(part.index, scope)]
            present = set(in_task["variant"])
            order = [v for v in (variant_order or {}).get(task, []) if v in present]
            order += sorted(present - set(order), key=_natural)
            halves = [part[part.index.get_level_values("variant").isin(order[start::2])]
                      .groupby(RESPONDENT).mean() for start in (0, 1)]
            both = pd.concat(halves, axis=1, keys=["a", "b"])
            row = {"scope": scope, "task": task, "trait": trait, "direction": direction, "n": None,
                   "n_variants": len(order), "r_half": None, "spearman_brown": None,
                   "missing_rate": float(in_task["score"].isna().mean()) if len(in_task) else None, "note": None}
            if len(order) < 2:
                row["note"] = "split-half needs at least 2 variants"
            else:
                groups = both.index.get_level_values("model") if scope == POOLED else None
                stats = correlation(both["a"], both["b"], groups)
                row.update(n=stats["n"], r_half=stats["r"], note=stats["note"])
                r = stats["r"]
                if r is not None and r >= 0:
                    row["spearman_brown"] = 2 * r / (1 + r)
                elif r is not None:
                    row["note"] = "the two halves correlate negatively: the variants do not measure one thing " \
                                  "(reliability not estimable)"
            rows.append(row)
    return pd.DataFrame(rows, columns=["scope", "task", "trait", "direction", "n", "n_variants", "r_half",
                                       "spearman_brown", "missing_rate", "note"])


def selfreport_reliability(items: pd.DataFrame, selfreport: pd.DataFrame) -> pd.DataFrame:
    """Cronbach's alpha of each trait scale across respondents, per model and pooled, and of composites.

    ``items`` holds each respondent's keyed item values averaged over its design cells, so alpha is the
    reliability of the respondent-level scale score that enters the correlations (pooled: every item
    centred within model, the within-model reliability). When several inventories measure a trait the
    composite (mean of z-scored scale scores) has Mosier's (1943) reliability

    .. math:: \\rho_c = 1 - \\frac{\\sum_i \\sigma_i^2 (1 - \\alpha_i)}{k^2\\,\\sigma_c^2}

    over the respondents with every component (variances in the scope; centred within model when pooled).
    Rows with ``inventory == "composite"`` hold it.
    """
    from psychometrics.reliability import cronbach_alpha

    _check(items, ITEM_COLUMNS, "self-report item data")
    components = self_components(selfreport)
    rows = []
    for scope in _scopes(components.index.get_level_values("model")):
        for trait in sorted(set(components.columns.get_level_values("trait"))):
            inventories = list(components.xs(trait, axis=1, level="trait").columns)
            alphas = []
            for inventory in inventories:
                part = items[(items["inventory"] == inventory) & (items["trait"] == trait)]
                wide = part.pivot_table(index=RESPONDENT, columns="item", values="value", aggfunc="mean", dropna=False)
                wide = wide[_in_scope(wide.index, scope)]
                if scope == POOLED:
                    wide = wide - wide.groupby(level="model").transform("mean")
                result = cronbach_alpha(wide) if wide.shape[1] and len(wide) else None
                alpha = result.raw_alpha if result else None
                alphas.append(alpha)
                rows.append({"scope": scope, "trait": trait, "inventory": inventory,
                             "scale": ", ".join(sorted(set(part["scale"]))), "reliability": alpha,
                             "n": result.n if result else 0, "k": result.k if result else 0,
                             "note": result.note if result else "no item data"})
            if len(inventories) > 1:
                rows.append(_composite_reliability(components, trait, inventories, alphas, scope))
    return pd.DataFrame(rows, columns=["scope", "trait", "inventory", "scale", "reliability", "n", "k", "note"])


def _composite_reliability(components, trait, inventories, alphas, scope) -> dict:
    row = {"scope": scope, "trait": trait, "inventory": "composite", "scale": ", ".join(inventories),
           "reliability": None, "n": 0, "k": len(inventories), "note": None}
    z = components.xs(trait, axis=1, level="trait").apply(_zscore).dropna()
    z = z[_in_scope(z.index, scope)]
    row["n"] = len(z)
    if any(a is None for a in alphas) or len(z) < 3:
        row["note"] = "composite reliability needs every component's alpha and 3 respondents"
        return row
    values = z.to_numpy(float)
    composite = values.mean(axis=1)
    if scope == POOLED:
        models = z.index.get_level_values("model")
        values = np.column_stack([_centre(values[:, j], models) for j in range(values.shape[1])])
        composite = _centre(composite, models)
    k = len(inventories)
    error = float((values.var(axis=0, ddof=1) * (1 - np.asarray(alphas, float))).sum())
    total = float(composite.var(ddof=1))
    if total > 0:
        row["reliability"] = 1 - error / (k * k * total)
    return row


def _reliability_lookup(table: pd.DataFrame | None, key: str) -> dict:
    if table is None or table.empty:
        return {}
    if key == "trait":  # the composite where there is one, else the single scale
        table = table.assign(rank=(table["inventory"] != "composite").astype(int)).sort_values("rank")
        table = table.drop_duplicates(["scope", "trait"])
        return {(s, t): r for s, t, r in zip(table["scope"], table["trait"], table["reliability"])}
    return {(s, t): r for s, t, r in zip(table["scope"], table["task"], table["spearman_brown"])}


# -------------------------------------------------------------------------------------------- pairs


def validity_pairs(selfreport: pd.DataFrame, behavior: pd.DataFrame, *,
                   self_reliability: pd.DataFrame | None = None, behavior_reliability: pd.DataFrame | None = None,
                   seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Every trait x task pair in every scope (each model; pooled when several): see the module docstring.

    ``declared`` marks pairs whose task belongs to the trait; ``expected_sign`` is the task's direction.
    Reliabilities are the tables of :func:`selfreport_reliability` and :func:`behavior_reliability`; the
    corrected r is given only when both are positive.
    """
    selfs, behaviours = self_scores(selfreport), behavior_scores(behavior)
    info = task_info(behavior)
    index = selfs.index.union(behaviours.index)
    selfs, behaviours = selfs.reindex(index), behaviours.reindex(index)
    rel_self = _reliability_lookup(self_reliability, "trait")
    rel_behavior = _reliability_lookup(behavior_reliability, "task")
    rows = []
    for scope in _scopes(index.get_level_values("model")):
        mask = _in_scope(index, scope)
        groups = index.get_level_values("model")[mask] if scope == POOLED else None
        block = []
        for trait in selfs.columns:
            for task, (task_trait, direction) in info.iterrows():
                x, y = selfs.loc[mask, trait].to_numpy(float), behaviours.loc[mask, task].to_numpy(float)
                stats = correlation(x, y, groups)
                declared = task_trait == trait
                row = {"scope": scope, "trait": trait, "task": task, "task_trait": task_trait,
                       "declared": declared, "expected_sign": direction if declared else None,
                       "n": stats["n"], "r": stats["r"], "ci_low": None, "ci_high": None, "p": stats["p"]}
                notes = [stats["note"]]
                if stats["r"] is not None:
                    low, high, failed = bootstrap_r(x, y, groups, n_boot=n_boot, rng=_rng(seed, scope, trait, task))
                    row.update(ci_low=low, ci_high=high)
                    if failed:
                        notes.append(f"{failed} of {n_boot} bootstrap resamples had a constant score")
                rs, rb = rel_self.get((scope, trait)), rel_behavior.get((scope, task))
                row.update(rel_self=rs, rel_behavior=rb, r_corrected=None)
                if stats["r"] is not None and rs is not None and rb is not None and rs > 0 and rb > 0:
                    corrected = stats["r"] / math.sqrt(rs * rb)
                    if abs(corrected) > 1:
                        notes.append(f"corrected r {corrected:.2f} clipped to {math.copysign(1, corrected):.0f}")
                        corrected = math.copysign(1.0, corrected)
                    row["r_corrected"] = corrected
                row["note"] = _join(notes)
                block.append(row)
        all_adjusted = bh_adjust([r["p"] for r in block])
        declared_adjusted = bh_adjust([r["p"] if r["declared"] else None for r in block])
        for row, p_all, p_declared in zip(block, all_adjusted, declared_adjusted):
            row["p_bh_declared"], row["p_bh_all"] = p_declared, p_all
            row["confirmed"] = bool(row["declared"] and row["r"] is not None and p_declared is not None
                                    and np.sign(row["r"]) == row["expected_sign"] and p_declared < 0.05)
        rows += block
    columns = ["scope", "trait", "task", "task_trait", "declared", "expected_sign", "n", "r", "ci_low", "ci_high",
               "p", "p_bh_declared", "p_bh_all", "confirmed", "rel_self", "rel_behavior", "r_corrected", "note"]
    return pd.DataFrame(rows, columns=columns)


def dissociation_index(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per scope, overall and per trait: declared pairs, how many could be tested, how many were confirmed,
    the share confirmed (of those tested) and the dissociation index ``1 - share``."""
    rows = []
    declared = pairs[pairs["declared"].astype(bool)] if len(pairs) else pairs
    for scope in dict.fromkeys(declared["scope"]) if len(declared) else []:
        part = declared[declared["scope"] == scope]
        for trait in ["all", *sorted(set(part["trait"]))]:
            sel = part if trait == "all" else part[part["trait"] == trait]
            tested = int(sel["r"].notna().sum())
            confirmed = int(sel["confirmed"].sum())
            share = confirmed / tested if tested else None
            rows.append({"scope": scope, "trait": trait, "declared": len(sel), "tested": tested,
                         "confirmed": confirmed, "share_confirmed": share,
                         "dissociation": None if share is None else 1 - share})
    return pd.DataFrame(rows, columns=["scope", "trait", "declared", "tested", "confirmed", "share_confirmed",
                                       "dissociation"])


# -------------------------------------------------------------------------------------- mixed model


def random_intercept_reml(y, x, groups) -> dict:
    """REML fit of ``y = X beta + u_group + e`` with one random intercept, as ``lme4::lmer(REML = TRUE)``.

    With :math:`\\lambda = \\tau^2/\\sigma^2` and :math:`V_g = I + \\lambda J` for a group of size
    :math:`n_g`, :math:`A = \\sum_g X_g' V_g^{-1} X_g`, :math:`\\hat\\beta = A^{-1} \\sum_g X_g' V_g^{-1} y_g` and
    :math:`RSS = \\sum_g (y_g - X_g\\hat\\beta)' V_g^{-1} (y_g - X_g\\hat\\beta)`, the profiled REML deviance
    :math:`(n-p)\\log RSS + \\sum_g \\log(1 + n_g\\lambda) + \\log|A|` is minimised over
    :math:`\\theta = \\sqrt\\lambda \\ge 0` (lme4's parameter). Then :math:`\\hat\\sigma^2 = RSS/(n-p)`,
    :math:`\\hat\\tau^2 = \\lambda\\hat\\sigma^2` and :math:`\\operatorname{cov}(\\hat\\beta) = \\hat\\sigma^2 A^{-1}`.
    The deviance is scanned on a grid of :math:`\\theta` (0 and 1e-4..100) and refined by Brent's method.
    Returns ``beta``, ``se``, ``residual_variance``, ``group_variance``, ``theta``, ``reml_criterion``.
    """
    from scipy.optimize import minimize_scalar

    y, x = np.asarray(y, float), np.asarray(x, float)
    n, p = x.shape
    parts = []
    for g in pd.unique(np.asarray(groups)):
        rows = np.asarray(groups) == g
        xg, yg = x[rows], y[rows]
        parts.append((int(rows.sum()), xg.T @ xg, xg.T @ yg, float(yg @ yg), xg.sum(axis=0), float(yg.sum())))

    def solve(theta: float):
        lam = theta * theta
        a, b, yy, logdet = np.zeros((p, p)), np.zeros(p), 0.0, 0.0
        for size, xx, xy, y2, xs, ys in parts:
            shrink = lam / (1 + size * lam)
            a += xx - shrink * np.outer(xs, xs)
            b += xy - shrink * xs * ys
            yy += y2 - shrink * ys * ys
            logdet += math.log1p(size * lam)
        beta = np.linalg.solve(a, b)
        rss = max(yy - float(b @ beta), 1e-300)
        deviance = (n - p) * math.log(rss) + logdet + float(np.linalg.slogdet(a)[1])
        return deviance, beta, rss, a

    grid = np.concatenate([[0.0], np.logspace(-4, 2, 61)])
    values = [solve(t)[0] for t in grid]
    best = int(np.argmin(values))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    theta = float(grid[best])
    if high > low:
        found = minimize_scalar(lambda t: solve(t)[0], bounds=(low, high), method="bounded",
                                options={"xatol": 1e-12, "maxiter": 500})
        if found.fun < values[best]:
            theta = float(found.x)
    if theta > 0 and values[0] <= solve(theta)[0] + 1e-10:  # flat at the boundary: lme4 reports it singular
        theta = 0.0
    deviance, beta, rss, a = solve(theta)
    sigma2 = rss / (n - p)
    criterion = deviance + (n - p) * (1 + math.log(2 * math.pi / (n - p)))  # lme4's REMLcrit
    return {"beta": beta, "se": np.sqrt(np.diag(sigma2 * np.linalg.inv(a))), "residual_variance": sigma2,
            "group_variance": theta * theta * sigma2, "theta": theta, "reml_criterion": criterion}


def mixed_model(selfreport: pd.DataFrame, behavior: pd.DataFrame) -> pd.DataFrame:
    """Within- and between-model association of each declared pair (needs two or more models).

    Over the respondents with both scores, self-report and behaviour are z-standardized, and

    .. math:: z_b = \\beta_0 + \\beta_w (z_s - \\bar z_{s,m}) + \\beta_b \\bar z_{s,m} + u_m + e,
              \\quad u_m \\sim N(0, \\tau^2),\\; e \\sim N(0, \\sigma^2)

    is fitted by REML (:func:`random_intercept_reml`; ``lme4::lmer(zb ~ within + between + (1 | model))``).
    :math:`\\beta_w` is the association among one model's personas, :math:`\\beta_b` the association
    between models' mean self-report and mean behaviour. The t tests use between-within degrees of
    freedom (SAS ``DDFM=BETWITHIN``): :math:`n - k - 1` for :math:`\\beta_w` and :math:`k - 2` for
    :math:`\\beta_b` with k models, so :math:`\\beta_b` rests honestly on k model means (no test for k = 2).
    """
    from scipy import stats

    selfs, behaviours = self_scores(selfreport), behavior_scores(behavior)
    index = selfs.index.intersection(behaviours.index)
    rows = []
    for task, (trait, _direction) in task_info(behavior).iterrows():
        if trait not in selfs.columns:
            continue
        data = pd.DataFrame({"s": selfs.loc[index, trait], "b": behaviours.loc[index, task]}).dropna()
        models = data.index.get_level_values("model").to_numpy()
        k = len(set(models))
        row = {"trait": trait, "task": task, "n": len(data), "n_models": k}
        zs, zb = _zscore(data["s"]).to_numpy(), _zscore(data["b"]).to_numpy()
        between = zs - _centre(zs, models) if len(zs) else zs
        within = zs - between
        if k < 2 or len(data) < k + 3 or not np.isfinite(zs).all() or not np.isfinite(zb).all() \
                or np.abs(within).max() < 1e-12:
            rows.append(row | {"note": "needs 2 or more models, scores varying within models and more respondents "
                                       "than models + 2"})
            continue
        fit = random_intercept_reml(zb, np.column_stack([np.ones(len(zs)), within, between]), models)
        (_, b_w, b_b), (_, se_w, se_b) = fit["beta"], fit["se"]
        df_w, df_b = len(data) - k - 1, k - 2
        p_w = float(2 * stats.t.sf(abs(b_w / se_w), df_w))
        p_b = float(2 * stats.t.sf(abs(b_b / se_b), df_b)) if df_b > 0 and se_b > 0 else None
        notes = [f"between-model coefficient rests on {k} model means" if k < 5 else None,
                 "model variance estimated at 0 (boundary)" if fit["theta"] == 0 else None]
        rows.append(row | {
            "within": b_w, "within_se": se_w, "within_df": df_w, "within_p": p_w,
            "between": b_b, "between_se": se_b, "between_df": df_b, "between_p": p_b,
            "model_variance": fit["group_variance"], "residual_variance": fit["residual_variance"],
            "note": _join(notes)})
    return pd.DataFrame(rows, columns=["trait", "task", "n", "n_models", "within", "within_se", "within_df", "within_p",
                                       "between", "between_se", "between_df", "between_p", "model_variance",
                                       "residual_variance", "note"])


# ------------------------------------------------------------------------------ manipulation check


def target_levels(targets: pd.DataFrame, index: pd.Index, traits: Iterable[str]) -> pd.DataFrame:
    """Respondents x traits: the persona's target level (0 where the persona sets no target for the trait)."""
    _check(targets, TARGET_COLUMNS, "persona targets")
    level = targets.groupby(["persona", "trait"])["level"].first()
    personas = index.get_level_values("persona")
    return pd.DataFrame({t: [float(level.get((p, t), 0)) for p in personas] for t in traits}, index=index)


def manipulation_check(selfreport: pd.DataFrame, behavior: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """Does the persona's target level move the self-report and the behaviour of its trait?

    For every trait some persona of the data targets, across respondents (each model; pooled and centred within
    model when several): r and OLS slope of the achieved self-report on the target level, and of each of
    the trait's tasks, its score multiplied by the task's direction (so a working manipulation gives a
    positive r everywhere). Slopes are in the score's units per target level.
    """
    selfs, behaviours = self_scores(selfreport), behavior_scores(behavior)
    info = task_info(behavior)
    index = selfs.index.union(behaviours.index)
    selfs, behaviours = selfs.reindex(index), behaviours.reindex(index)
    traits = sorted(set(targets.loc[targets["level"] != 0, "trait"]) & (set(selfs.columns) | set(info["trait"])))
    levels = target_levels(targets, index, traits)
    traits = [t for t in traits if levels[t].nunique() > 1]  # some persona in the data targets it
    rows = []
    for scope in _scopes(index.get_level_values("model")):
        mask = _in_scope(index, scope)
        groups = index.get_level_values("model")[mask] if scope == POOLED else None
        for trait in traits:
            measures = [("self-report", "self-report", selfs[trait] if trait in selfs.columns else None)]
            measures += [(task, "behavior", behaviours[task] * direction)
                         for task, (t, direction) in info.iterrows() if t == trait]
            for measure, kind, values in measures:
                if values is None:
                    continue
                stats = correlation(levels.loc[mask, trait], values[mask], groups)
                rows.append({"scope": scope, "trait": trait, "measure": measure, "kind": kind, "n": stats["n"],
                             "r": stats["r"], "slope": stats["slope"], "p": stats["p"], "note": stats["note"]})
    return pd.DataFrame(rows, columns=["scope", "trait", "measure", "kind", "n", "r", "slope", "p", "note"])


# ------------------------------------------------------------------------------------------- MTMM


def behavior_trait_scores(behavior: pd.DataFrame) -> pd.DataFrame:
    """Respondents x traits: mean over the trait's tasks of the direction-signed, within-model z score."""
    scores = behavior_scores(behavior)
    info = task_info(behavior)
    models = scores.index.get_level_values("model")
    z = scores.groupby(models).transform(lambda col: _zscore(col))
    signed = z * info.loc[z.columns, "direction"].to_numpy()
    return signed.T.groupby(info.loc[signed.columns, "trait"].to_numpy()).mean().T


def behavior_mtmm(selfreport: pd.DataFrame, behavior: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The MTMM matrix and Campbell-Fiske summary with behaviour as one more method.

    Methods are the inventories (signed respondent scale scores) and ``behavior``
    (:func:`behavior_trait_scores`); every column is centred within model, so the correlations are
    within-model associations pooled over models.
    """
    from psychometrics.mtmm import mtmm_matrix

    components = self_components(selfreport)
    behaviour = behavior_trait_scores(behavior)
    behaviour.columns = pd.MultiIndex.from_tuples([(BEHAVIOR_METHOD, t) for t in behaviour.columns])
    wide = pd.concat([components, behaviour], axis=1)
    wide.columns = pd.MultiIndex.from_tuples(list(wide.columns), names=["method", "trait"])
    models = wide.index.get_level_values("model")
    wide = wide - wide.groupby(models).transform("mean")
    return mtmm_matrix(wide)


# ------------------------------------------------------------------------------------------ all tables


def _scores_long(selfreport: pd.DataFrame, behavior: pd.DataFrame) -> pd.DataFrame:
    selfs = self_scores(selfreport).stack().rename("score").reset_index().rename(columns={"level_2": "measure"})
    behaviours = behavior_scores(behavior).stack().rename("score").reset_index().rename(columns={"task": "measure"})
    selfs.columns = [*RESPONDENT, "measure", "score"]
    info = task_info(behavior)
    selfs = selfs.assign(kind="self-report", trait=selfs["measure"], direction=1)
    behaviours = behaviours.assign(kind="behavior", trait=info.loc[behaviours["measure"], "trait"].to_numpy(),
                                   direction=info.loc[behaviours["measure"], "direction"].to_numpy())
    columns = [*RESPONDENT, "kind", "measure", "trait", "direction", "score"]
    return pd.concat([selfs[columns], behaviours[columns]], ignore_index=True)


def validity_tables(selfreport: pd.DataFrame, behavior: pd.DataFrame, targets: pd.DataFrame | None = None, *,
                    items: pd.DataFrame | None = None, variant_order: dict[str, list[str]] | None = None,
                    seed: int = 0, n_boot: int = 2000) -> dict[str, pd.DataFrame]:
    """Every validity table (see the module docstring), plus ``notes`` saying what could not be computed.

    ``items`` (from :func:`read_selfreport`) gives the self-report reliabilities; without it the
    correlations are not corrected for unreliability. ``targets`` (:func:`targets_frame`) enables the
    manipulation check.
    """
    _check(selfreport, SELFREPORT_COLUMNS, "self-report data")
    _check(behavior, BEHAVIOR_COLUMNS, "behaviour data")
    if targets is not None:
        _check(targets, TARGET_COLUMNS, "persona targets")
    if n_boot < 100:
        raise PsytestError(f"--bootstrap {n_boot}: use at least 100 resamples")
    selfreport = selfreport.assign(persona=selfreport["persona"].fillna("none"))
    behavior = behavior.assign(persona=behavior["persona"].fillna("none"),
                               score=pd.to_numeric(behavior["score"], errors="coerce"))
    notes: list[tuple[str, str]] = []
    empty = pd.DataFrame()
    tables = {name: empty for name in ("validity_pairs", "dissociation", "validity_mixed", "manipulation_check",
                                       "behavior_reliability", "selfreport_reliability", "validity_mtmm",
                                       "validity_mtmm_summary", "validity_scores")}
    if not behavior.empty:
        tables["behavior_reliability"] = behavior_reliability(behavior, variant_order)
    if items is not None and not selfreport.empty:
        tables["selfreport_reliability"] = selfreport_reliability(items, selfreport)
    else:
        notes.append(("validity_pairs", "no self-report item data: correlations are not corrected for unreliability"))
    self_keys = set(map(tuple, selfreport[RESPONDENT].drop_duplicates().to_numpy()))
    both = self_keys & set(map(tuple, behavior[RESPONDENT].drop_duplicates().to_numpy()))
    if len(both) < 3:
        notes.append(("validity_pairs", (f"{len(both)} respondents (model x persona) have both self-report and "
                                         "behaviour; need 3. Use the same model and persona set in both runs")))
        return tables | {"notes": pd.DataFrame(notes, columns=["table", "note"])}
    tables["validity_scores"] = _scores_long(selfreport, behavior)
    pairs = validity_pairs(selfreport, behavior, self_reliability=tables["selfreport_reliability"],
                           behavior_reliability=tables["behavior_reliability"], seed=seed, n_boot=n_boot)
    tables["validity_pairs"], tables["dissociation"] = pairs, dissociation_index(pairs)
    if not pairs["declared"].any():
        notes.append(("dissociation", "no task measures a trait of the self-report; nothing was declared"))
    if len({model for model, _ in both}) >= 2:
        tables["validity_mixed"] = mixed_model(selfreport, behavior)
    else:
        notes.append(("validity_mixed", "one model only: within- and between-model associations need 2 or more"))
    if targets is not None and (targets["level"] != 0).any():
        tables["manipulation_check"] = manipulation_check(selfreport, behavior, targets)
        if tables["manipulation_check"].empty:
            notes.append(("manipulation_check", "no persona in the data sets a target on a measured trait"))
    else:
        notes.append(("manipulation_check", "no persona targets (use a trait-shaping persona set)"))
    table, summary = behavior_mtmm(selfreport, behavior)
    tables["validity_mtmm"], tables["validity_mtmm_summary"] = table, summary
    if table.empty:
        notes.append(("validity_mtmm", "fewer than two methods share two traits"))
    return tables | {"notes": pd.DataFrame(notes, columns=["table", "note"])}
