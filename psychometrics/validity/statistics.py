"""Self-report against behaviour: does what a model says about itself predict what it does?

The unit of analysis is the *respondent*: one model playing one persona (``model x persona``). A
questionnaire run gives each respondent's self-report (scale scores per design cell) and a behaviour run
gives its behaviour (one score per conversation: task x variant x sample). Sample indices are
independent draws and are *not* linked across sessions (sample 0 of the questionnaire and sample 0 of
the behaviour run are unrelated), so every score is averaged within the respondent first:

* self-report of trait T: the mean over design cells of each inventory's scale for T, signed by the
  scale's ``trait_sign``; when several inventories measure T, their respondent scores are z-standardized
  over the respondents and averaged (the composite);
* behaviour on a task: the mean over samples within each variant, then the respondent's level in a
  respondent + variant model fitted within each model over *every* variant
  (:mod:`psychometrics.validity.behavior_scores`: additive, ``lm(m ~ respondent + variant)``; for ratio
  measures such as reply length multiplicative, relative to the model's mean respondent). A respondent
  that lost a variant with a high or a low mean keeps its level; with every variant readable the score
  is the plain mean over variants. Unreadable replies are missing, never 0; each respondent's missing
  share is reported, and whether it differs across respondents or tracks the self-report or the score.

Respondents. Every table is computed over the respondents with both self-report and behaviour
(:func:`validity_tables` notes how many of each kind were left out): the reliabilities that correct a
correlation, the correlation, the manipulation check and the MTMM matrix describe the same respondents.

Scopes. Each model is analysed alone (its personas are its respondents) and, when there are several
models, pooled: both variables are centred within model first, so the pooled correlation is the
within-model association (the partial correlation given the model) and differences between models'
means cannot create it. Its test has ``n - k - 1`` degrees of freedom for ``k`` models, as the slope
test of ``lm(behaviour ~ self + model)``. Centring (rather than standardizing) within model weighs each
model by its within-model spread; per-model rows do not depend on the units. The mixed model
(:func:`mixed_model`) separates the within-model from the between-model association.

Tables (:func:`validity_tables`):

``validity_pairs``
    every trait x task pair: Pearson r across respondents, two-sided t-test p, its 95% CI (the BCa
    bootstrap over respondents, and Fisher's z at the test's degrees of freedom beside it;
    :func:`~psychometrics.statistics.correlation.r_interval`; none, with a note, when more than 1% of bootstrap
    resamples of the respondents leave a score constant, i.e. r rests on a few respondents),
    Benjamini-Hochberg adjusted p over the declared pairs and over all pairs of the scope, ``confirmed``
    (declared, r in the task's declared direction, BH p < .05), ``power_r30`` (:func:`~psychometrics.statistics.correlation.power_r`) and r
    corrected for unreliability :math:`r_c = r / \\sqrt{\\rho_{self}\\,\\rho_{behaviour}}` (Spearman, 1904)
    with its own 95% interval, only when both reliabilities reach :data:`RELIABILITY_FLOOR` (.5), never
    clipped (:func:`disattenuate`). A note also marks r resting on fewer than 3 respondents off the modal
    score (:func:`~psychometrics.statistics.correlation.off_mode`).
``dissociation``
    share of declared pairs confirmed, overall and per trait; dissociation index = 1 - share; beside it
    the share of declared pairs with the declared sign, their mean r in the declared direction and their
    mean power to detect r = .3, so that low power is not read as dissociation (:func:`dissociation_index`).
``validity_incremental`` / ``persona_effect``
    per declared pair, the partial r and delta R^2 of the self-report beyond the persona's target levels
    (and model), TOST equivalence, the manipulation-check gate and the pair's ``conclusion``; per trait and
    task, the persona-effect ratio d_behaviour / d_self-report (:mod:`psychometrics.validity.incremental`).
    ``dissociation`` gets the same index on incremental validity beside the plain one.
``validity_mixed``
    per declared pair, with two or more models: ``z_b ~ self_within + self_between + (1 | model)`` (REML).
``manipulation_check`` / ``manipulation_levels``
    the persona's target level on a trait against the achieved self-report and the achieved behaviour
    (signed by the task's direction), over the trait's own personas and the baseline personas (no
    target): r and slope across levels, and n, mean and SD per target level.
``behavior_reliability`` / ``selfreport_reliability``
    Cronbach's alpha of each behaviour score across variants with Feldt's 95% interval (``reliability``,
    ``reliability_low``, ``reliability_high``; pairwise-complete covariances over every variant with 3+
    respondents), the split-half over the variants every respondent has beside it (Spearman-Brown; with
    the fewest and most variants a respondent has), and Cronbach's alpha of each self-report scale across
    respondents (composite reliability for several inventories).
``behavior_missingness``
    per task: respondents' missing shares, the chi-square test that they are equal, and their
    correlation with the self-report of the task's trait and with the score; ``flag`` when either is
    significant.
``validity_mtmm`` / ``validity_mtmm_summary``
    the MTMM matrix with behaviour as one more method (:mod:`psychometrics.statistics.mtmm`; within-model r of each
    pair's complete respondents, tested with n - k - 1 df).
``validity_scores``
    the respondent-level scores everything above is computed from, with each behaviour score's
    ``missing_share`` (conversations without a valid score) and ``variants`` (with one).

Checked against R (``tests/reference/validity.R``): ``cor``, ``cor.test`` (r, p and its Fisher interval),
``lm``, ``psych::r.con``, ``p.adjust(method = "BH")``, ``psych::alpha``, ``lme4::lmer(REML = TRUE)``,
``boot::boot.ci(type = "bca")`` on the resamples boot drew, the power formula of ``pwr::pwr.r.test``
(and a simulation of it), per-level ``mean``/``sd``, the variant sets and respondents used, the
variant-centred scores (``lm``), alpha and its Feldt interval (``psych::alpha``) and the missingness
table (``chisq.test``, ``cor.test``); ``tests/reference/behavior_scores.R`` checks ratio scores
(``glm(family = quasipoisson)``) and alpha on ratio tasks.

Reliabilities for the correction. Self-report: Cronbach's alpha over respondents of the item values
averaged within each respondent (:func:`selfreport_reliability`; the items come from
:func:`read_selfreport`), i.e. the reliability of the very score that is correlated; without item data
no correction is made. Behaviour: Cronbach's alpha across variants (:func:`behavior_reliability`; with
2 to 4 variants one split-half is a single arbitrary split, alpha the mean over all of them and it uses
every variant). Pooled rows use the within-model (centred) versions of both.

Differences from R
------------------
* The mixed model is fitted by a profiled REML written for one random intercept
  (:func:`psychometrics.statistics.mixed_model.random_intercept_reml`), not statsmodels' ``MixedLM``, which does not
  converge at the boundary of the reference data and reports convergence short of the optimum elsewhere
  (see that module). The results equal ``lmer``'s to its optimiser's tolerance (about 1e-8). lme4 gives no p values; here they are t tests with between-within degrees of
  freedom.
* ``psych::alpha`` uses pairwise-complete item covariances; :func:`~psychometrics.statistics.reliability.cronbach_alpha`
  (self-report) drops respondents with a missing item (identical on complete data). Behaviour alpha
  uses pairwise-complete covariances as psych does.
* Bootstrap resamples use NumPy's random stream (seeded per scope, trait and task) and cannot match R's;
  given the same resamples the BCa interval equals ``boot.ci``'s.

References
----------
Benjamini, Y., & Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B, 57, 289-300.
Spearman, C. (1904). The proof and measurement of association between two things. Am. J. Psychol., 15, 72-101.
Hunter, J. E., & Schmidt, F. L. (2004). Methods of meta-analysis (2nd ed.). Sage.
Brown, W. (1910). Some experimental results in the correlation of mental abilities. Br. J. Psychol., 3, 296-322.
Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation deduced from a small sample.
Metron, 1, 3-32.
Mosier, C. I. (1943). On the reliability of a weighted composite. Psychometrika, 8, 161-168.
Cohen, J. (1988). Statistical power analysis for the behavioral sciences (2nd ed.). Erlbaum.
Efron, B. (1987). Better bootstrap confidence intervals. JASA, 82, 171-185.
Davison, A. C., & Hinkley, D. V. (1997). Bootstrap methods and their application. Cambridge University Press.
Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests. Psychometrika, 16, 297-334.
Feldt, L. S., Woodruff, D. J., & Salih, F. A. (1987). Statistical inference for coefficient alpha.
Applied Psychological Measurement, 11, 93-103.
Campbell, D. T., & Fiske, D. W. (1959). Convergent and discriminant validation by the multitrait-multimethod
matrix. Psychological Bulletin, 56, 81-105.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from psychometrics.statistics.correlation import (
    FEW_OFF_MODE, bh_adjust, centre_within, correlation, few_off_mode_note, fisher_interval, off_mode, power_r,
    r_interval,
)
from psychometrics.errors import PsytestError
from psychometrics.statistics.mixed_model import random_intercept_reml

if TYPE_CHECKING:
    from psychometrics.inventories.model import Inventory

SELFREPORT_COLUMNS = ("model", "persona", "inventory", "scale", "trait", "trait_sign", "score", "cell")
ITEM_COLUMNS = ("model", "persona", "inventory", "scale", "trait", "item", "value")
BEHAVIOR_COLUMNS = ("model", "persona", "sample", "task", "variant", "trait", "direction", "outcome", "score")
TARGET_COLUMNS = ("persona", "trait", "level")
RESPONDENT = ["model", "persona"]
POOLED = "pooled"
BEHAVIOR_METHOD = "behavior"
INTENTION_METHOD = "intention"  # tasks whose ``method`` is self-report: hypothetical choices, intention items

#: No correction for attenuation when either reliability is below this (a split-half of .15 turned r = .11
#: into .51): the correction divides by the square root of the reliabilities and inflates their error.
RELIABILITY_FLOOR = 0.5


# ------------------------------------------------------------------------------------------ inputs


def read_selfreport(run_dirs: Iterable[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Self-report of questionnaire runs: scale scores per design cell, and item means per respondent.

    Returns ``(scores, items)``. ``scores`` has one row per design cell x scale that has a ``trait``
    (columns :data:`SELFREPORT_COLUMNS`; ``cell`` names the run and every condition but the persona).
    ``items`` has the keyed item values averaged over a respondent's cells (:data:`ITEM_COLUMNS`), the
    data of :func:`selfreport_reliability`.
    """
    from psychometrics.conditions import CONDITION_FIELDS
    from psychometrics.run.owner import open_run
    from psychometrics.statistics.scoring import item_matrix

    scores: list[pd.DataFrame] = []
    frames: list[pd.DataFrame] = []
    inventories: dict[str, Inventory] = {}
    for index, run_dir in enumerate(run_dirs):
        run = open_run(run_dir)  # the run's own inventories (hash-checked), answers and invalid-answer policy
        run_inventories = run.inventories
        for inventory in run_inventories:
            known = inventories.setdefault(inventory.id, inventory)
            if known.content_hash != inventory.content_hash:
                raise PsytestError(f"{run_dir}: inventory '{inventory.id}' differs from the one of an earlier run; "
                                   "give runs that used the same inventory file")
        frame = run.answers().responses.copy()
        frame["persona"] = frame["persona"].fillna("none")
        model = run.manifest.model
        frame["model"] = model
        frames.append(frame)
        cells = run.scores()
        cells = cells[cells["kind"] == "scale"].assign(persona=lambda c: c["persona"].fillna("none"))
        others = [c for c in CONDITION_FIELDS if c != "persona" and c in cells.columns]
        cells = cells.assign(cell=[f"{index}:" + "|".join(map(str, row)) for row in cells[others].itertuples(index=False)])
        for inventory in run_inventories:
            for scale in inventory.scales:
                if scale.trait is None:
                    continue
                part = cells[(cells["inventory"] == inventory.id) & (cells["scale"] == scale.id)]
                scores.append(part.assign(model=model, trait=scale.trait, trait_sign=scale.trait_sign))
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


def targets_frame(persona_set) -> pd.DataFrame:
    """``persona, trait, level`` rows of a persona set's targets (a :class:`PersonaSet` or its name/path).

    Personas and traits without a row have level 0 (a baseline persona, or a trait the persona does not set).
    """
    if isinstance(persona_set, (str, Path)):
        from psychometrics.design.personas import resolve_persona_set

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


def variant_sets(behavior: pd.DataFrame, variant_order: dict[str, list[str]] | None = None) -> dict[str, dict]:
    """Per task, which variants each respondent has conversations of (readable or not).

    Returns ``{task: {"order", "common", "counts"}}``: ``order`` every variant of the task in the task
    file's order (``variant_order``; by default the natural order of the ids), ``common`` the variants
    *every* respondent with the task has (in that order), ``counts`` a Series of each respondent's number
    of variants. Respondents whose sets differ (an incomplete run, runs with different ``--variants``, or
    stored leftovers) cannot be split alike: the split-half uses ``common`` (the variant-centred scores and
    alpha use every variant).
    """
    out: dict[str, dict] = {}
    if behavior.empty:
        return out
    sets = behavior.groupby([*RESPONDENT, "task"])["variant"].agg(frozenset)
    for task, part in sets.groupby(level="task"):
        present = frozenset().union(*part)
        common = frozenset.intersection(*part)
        order = [v for v in (variant_order or {}).get(task, []) if v in present]
        order += sorted(present - set(order), key=_natural)
        counts = part.map(len).droplevel("task")
        out[task] = {"order": order, "common": [v for v in order if v in common], "counts": counts}
    return out


def common_variants(behavior: pd.DataFrame, variant_order: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """The conversations of the variants every respondent of the task has (:func:`variant_sets`)."""
    if behavior.empty:
        return behavior
    keep = {task: set(entry["common"]) for task, entry in variant_sets(behavior, variant_order).items()}
    mask = [variant in keep.get(task, ()) for task, variant in zip(behavior["task"], behavior["variant"])]
    return behavior[np.asarray(mask, bool)]


_NO_MEANS = pd.Series([], dtype=float, index=pd.MultiIndex.from_tuples([], names=[*RESPONDENT, "variant"]))


def _variant_means(behavior: pd.DataFrame) -> pd.Series:
    return behavior.groupby([*RESPONDENT, "task", "variant"])["score"].mean()


def behavior_scores(behavior: pd.DataFrame) -> pd.DataFrame:
    """Respondents x tasks: the variant-centred score over *every* variant the respondent has
    (:func:`psychometrics.validity.behavior_scores.centred_scores`: the respondent level of an additive
    respondent + variant model within each model, multiplicative for ratio tasks), so a respondent that
    lost a variant with a high or low mean keeps its level. With every cell observed it is the plain mean
    over variants of each variant's mean over samples (ratio tasks: divided by the model's mean)."""
    from psychometrics.validity.behavior_scores import centred_scores

    return centred_scores(behavior)[0]


def _in_scope(index: pd.Index, scope: str) -> np.ndarray:
    return np.ones(len(index), bool) if scope == POOLED else (index.get_level_values("model") == scope)


def _scopes(models: Iterable[str]) -> list[str]:
    models = sorted(set(models))
    return models + ([POOLED] if len(models) > 1 else [])


def _respondent_keys(frame: pd.DataFrame) -> set[tuple]:
    return set(map(tuple, frame[RESPONDENT].drop_duplicates().to_numpy()))


def _only(frame: pd.DataFrame, keys: set[tuple]) -> pd.DataFrame:
    return frame[[key in keys for key in zip(frame["model"], frame["persona"])]]


def _rng(seed: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\0".join(map(str, names)).encode())])


def _join(notes: Iterable[str | None]) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(dict.fromkeys(kept)) if kept else None


# ------------------------------------------------------------------------------------- reliability


def behavior_reliability(behavior: pd.DataFrame, variant_order: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Reliability of each behaviour score across variants, per model and pooled: Cronbach's alpha with
    Feldt's interval, and the split-half beside it.

    ``reliability`` (the value that corrects correlations), ``reliability_low`` / ``reliability_high``
    (95%) and ``reliability_method`` (``"alpha"``) come from
    :func:`psychometrics.validity.behavior_scores.variant_alpha` on the respondent x variant table of
    every variant with 3+ respondents (missing cells pairwise; ratio tasks relative to each variant's
    mean; pooled: centred within model); ``n_alpha`` / ``k_alpha`` are its respondents and variants.
    With few variants one split-half is one arbitrary split; alpha is the mean over all of them
    (Cronbach, 1951) and uses every variant.

    The split-half uses the variants every respondent of the task has (:func:`variant_sets`), in the task
    file's order (``variant_order``; by default the natural order of their ids, v01, v02, ...). For each
    respondent, half A is the mean over the 1st, 3rd, 5th ... of them (each variant first averaged over
    samples) and half B over the 2nd, 4th, ...; :math:`r_{AB}` is their correlation across respondents
    (centred within model when pooled) and the Spearman-Brown reliability of the full score is
    :math:`2 r_{AB} / (1 + r_{AB})` (Brown, 1910; none when :math:`r_{AB} < 0`).

    ``n_variants`` is the number of shared variants the split-half uses; ``n_variants_min`` / ``n_variants_max``
    the fewest and most variants a respondent of the scope has, with a note when they differ from it.
    ``missing_rate`` is the share of those variants' conversations without a valid score.
    """
    from psychometrics.validity.behavior_scores import ratio_tasks, variant_alpha, variant_matrix

    _check(behavior, ("model", "persona", "task", "variant", "trait", "direction", "score"), "behaviour data")
    info = task_info(behavior)
    ratio = ratio_tasks(behavior)
    sets = variant_sets(behavior, variant_order)
    used = common_variants(behavior, variant_order)
    means = _variant_means(used)
    by_task = {task: part for task, part in used.groupby("task")}
    rows = []
    for scope in _scopes(behavior["model"]):
        for task, (trait, direction) in info.iterrows():
            in_task = by_task.get(task, used.iloc[:0])
            part = means.xs(task, level="task") if task in by_task else _NO_MEANS
            counts = sets[task]["counts"] if task in sets else pd.Series([], dtype=int)
            if scope != POOLED:
                in_task, part = in_task[in_task["model"] == scope], part[_in_scope(part.index, scope)]
                counts = counts[_in_scope(counts.index, scope)]
            order = sets[task]["common"] if task in sets else []
            fewest, most = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
            row = {"scope": scope, "task": task, "trait": trait, "direction": direction, "n": None,
                   "n_variants": len(order), "n_variants_min": fewest, "n_variants_max": most,
                   "r_half": None, "spearman_brown": None,
                   "missing_rate": float(in_task["score"].isna().mean()) if len(in_task) else None, "note": None}
            alpha = variant_alpha(variant_matrix(behavior, task, None if scope == POOLED else [scope], task in ratio))
            row.update(reliability=alpha["reliability"], reliability_low=alpha["low"], reliability_high=alpha["high"],
                       reliability_method="alpha", n_alpha=alpha["n"], k_alpha=alpha["k"])
            notes = [alpha["note"] and f"alpha: {alpha['note']}"]
            if most > len(order):
                here = f"{fewest} to {most}" if most != fewest else f"{most}"
                notes.append(f"respondents' variant sets differ: the split-half uses the {len(order)} variant(s) "
                             f"every respondent has ({here} per respondent in this scope), the score and alpha all")
            if len(order) < 2:
                notes.append("split-half needs at least 2 variants")
            else:
                halves = [part[part.index.get_level_values("variant").isin(order[start::2])]
                          .groupby(RESPONDENT).mean() for start in (0, 1)]
                both = pd.concat(halves, axis=1, keys=["a", "b"])
                groups = both.index.get_level_values("model") if scope == POOLED else None
                stats = correlation(both["a"], both["b"], groups)
                row.update(n=stats["n"], r_half=stats["r"])
                notes.append(stats["note"])
                r = stats["r"]
                if r is not None and r >= 0:
                    row["spearman_brown"] = 2 * r / (1 + r)
                elif r is not None:
                    notes.append("the two halves correlate negatively: the variants do not measure one thing "
                                 "(reliability not estimable)")
                if r is not None:
                    notes.append(few_off_mode_note(both["a"], both["b"], groups, ("half-A", "half-B")) or "")
            row["note"] = _join(notes)
            rows.append(row)
    return pd.DataFrame(rows, columns=["scope", "task", "trait", "direction", "n", "n_variants", "n_variants_min",
                                       "n_variants_max", "r_half", "spearman_brown", "missing_rate", "reliability",
                                       "reliability_low", "reliability_high", "reliability_method", "n_alpha",
                                       "k_alpha", "note"])


def selfreport_reliability(items: pd.DataFrame, selfreport: pd.DataFrame) -> pd.DataFrame:
    """Cronbach's alpha of each trait scale across respondents, per model and pooled, and of composites.

    ``items`` holds each respondent's keyed item values averaged over its design cells, so alpha is the
    reliability of the respondent-level scale score that enters the correlations (pooled: every item
    centred within model, the within-model reliability). Only respondents of ``selfreport`` count (give
    the respondents of the correlations). When several inventories measure a trait the composite (mean
    of z-scored scale scores) has Mosier's (1943) reliability

    .. math:: \\rho_c = 1 - \\frac{\\sum_i \\sigma_i^2 (1 - \\alpha_i)}{k^2\\,\\sigma_c^2}

    over the respondents with every component (variances in the scope; centred within model when pooled).
    Rows with ``inventory == "composite"`` hold it.
    """
    from psychometrics.statistics.reliability import cronbach_alpha

    _check(items, ITEM_COLUMNS, "self-report item data")
    components = self_components(selfreport)
    items = _only(items, set(components.index))
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
        values = np.column_stack([centre_within(values[:, j], models) for j in range(values.shape[1])])
        composite = centre_within(composite, models)
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
    return {(s, t): r for s, t, r in zip(table["scope"], table["task"], table["reliability"])}


# -------------------------------------------------------------------------------------------- pairs


def _both(selfs: pd.DataFrame, behaviours: pd.DataFrame, info: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    index = selfs.index.intersection(behaviours.index).sort_values()
    return selfs.reindex(index), behaviours.reindex(index=index, columns=info.index)


def validity_pairs(selfreport: pd.DataFrame, behavior: pd.DataFrame, *,
                   self_reliability: pd.DataFrame | None = None, behavior_reliability: pd.DataFrame | None = None,
                   seed: int = 0, n_boot: int = 2000, ci_method: str = "bca",
                   declared: dict[tuple[str, str], int] | None = None,
                   reliability_floor: float = RELIABILITY_FLOOR) -> pd.DataFrame:
    """Every trait x task pair in every scope (each model; pooled when several): see the module docstring.

    ``declared`` (``{(trait, task): sign}``) gives the declared pairs and their expected signs explicitly
    (``psytest validity --pairs``); by default a pair is declared when the task belongs to the trait.

    Only respondents with both self-report and behaviour enter (give reliabilities computed on the same
    respondents, as :func:`validity_tables` does). ``declared`` marks pairs whose task belongs to the
    trait; ``expected_sign`` is the task's direction. Reliabilities are the tables of
    :func:`selfreport_reliability` and :func:`behavior_reliability`; the corrected r and its interval
    are :func:`disattenuate`'s (none below ``reliability_floor``). ``ci_low``/``ci_high`` are the 95% interval of :func:`~psychometrics.statistics.correlation.r_interval` (``ci_method``,
    by default the BCa bootstrap over respondents), ``fisher_low``/``fisher_high`` Fisher's z interval;
    ``power_r30`` is :func:`~psychometrics.statistics.correlation.power_r` at the pair's degrees of freedom.
    """
    info = task_info(behavior)
    selfs, behaviours = _both(self_scores(selfreport), behavior_scores(behavior), info)
    index = selfs.index
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
                if declared is None:
                    is_declared, sign = task_trait == trait, direction
                else:
                    is_declared, sign = (trait, task) in declared, declared.get((trait, task))
                row = {"scope": scope, "trait": trait, "task": task, "task_trait": task_trait,
                       "declared": is_declared, "expected_sign": sign if is_declared else None,
                       "n": stats["n"], "r": stats["r"], "ci_low": None, "ci_high": None,
                       "fisher_low": None, "fisher_high": None, "p": stats["p"],
                       "power_r30": power_r(stats["n"] - stats["k"] - 1)}
                notes = [stats["note"]]
                if stats["r"] is not None:
                    notes.append(few_off_mode_note(x, y, groups))
                    ci = r_interval(x, y, groups, method=ci_method, n_boot=n_boot, rng=_rng(seed, scope, trait, task))
                    row.update(ci_low=ci["low"], ci_high=ci["high"])
                    if ci["note"] is None:
                        row["fisher_low"], row["fisher_high"] = fisher_interval(stats["r"], stats["df"])
                    notes.append(ci["note"])
                    if ci["failed"] and ci["note"] is None:
                        notes.append(f"{ci['failed']} of {n_boot} bootstrap resamples had a constant score")
                rs, rb = rel_self.get((scope, trait)), rel_behavior.get((scope, task))
                row.update(rel_self=rs, rel_behavior=rb)
                row.update(disattenuate(stats["r"], stats["df"], rs, rb, reliability_floor, notes))
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
               "fisher_low", "fisher_high", "p", "p_bh_declared", "p_bh_all", "confirmed", "power_r30", "rel_self",
               "rel_behavior", "r_corrected", "r_corrected_low", "r_corrected_high", "note"]
    return pd.DataFrame(rows, columns=columns)


def disattenuate(r: float | None, df: int | None, rel_self: float | None, rel_behavior: float | None,
                 floor: float = RELIABILITY_FLOOR, notes: list | None = None) -> dict:
    """r corrected for the unreliability of both scores, with its 95% interval, or nothing below the floor.

    :math:`r_c = r / \\sqrt{\\rho_s \\rho_b}` (Spearman, 1904) when both reliabilities are at least ``floor``;
    its interval is Fisher's interval of r (:func:`~psychometrics.statistics.correlation.fisher_interval`
    at the test's df) divided by the same factor (Hunter & Schmidt, 2004, ch. 3: the correction is a
    constant, so the interval's limits are corrected as the point is; the reliabilities' own sampling
    error is not in it, so it is too narrow). Nothing is clipped: a corrected value beyond +-1 is reported
    as it is, with a note (a reliability is underestimated, or r is overestimated). ``notes`` gets the
    sentences. Returns ``r_corrected``, ``r_corrected_low``, ``r_corrected_high``.
    """
    out: dict[str, float | None] = {"r_corrected": None, "r_corrected_low": None, "r_corrected_high": None}
    notes = notes if notes is not None else []
    if r is None or rel_self is None or rel_behavior is None or any(
            isinstance(v, float) and math.isnan(v) for v in (rel_self, rel_behavior)):
        return out
    low_ones = [f"{name} {value:.2f}" for name, value in (("self-report", rel_self), ("behaviour", rel_behavior))
                if value < floor]
    if low_ones:
        notes.append(f"not corrected for attenuation: reliability below the floor {floor:g} ({', '.join(low_ones)})")
        return out
    factor = math.sqrt(rel_self * rel_behavior)
    low, high = fisher_interval(r, df) if df is not None else (None, None)
    corrected = r / factor
    out["r_corrected"] = corrected
    if low is not None and high is not None:
        out["r_corrected_low"], out["r_corrected_high"] = low / factor, high / factor
    if abs(corrected) > 1:
        notes.append(f"corrected r {corrected:.2f} is beyond +-1 (not clipped): a reliability is "
                     "underestimated or r overestimated")
    return out


def dissociation_index(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per scope, overall and per trait, over the declared pairs.

    ``declared``, ``tested`` (r computable), ``confirmed``; ``share_confirmed`` = confirmed / tested and the
    dissociation index ``1 - share_confirmed`` (as defined: the share of declared associations not
    confirmed). Because "not confirmed" includes "too few respondents to tell", three numbers stand beside
    it: ``share_expected_sign`` (tested pairs whose r has the declared sign; 0.5 expected by chance),
    ``mean_signed_r`` (mean of :math:`r \\cdot` expected sign: positive when behaviour follows the
    self-report on average) and ``mean_power_r30`` (mean power of the tested pairs to detect r = .3,
    :func:`~psychometrics.statistics.correlation.power_r`; a low value means a high dissociation index says little).
    """
    rows = []
    declared = pairs[pairs["declared"].astype(bool)] if len(pairs) else pairs
    for scope in dict.fromkeys(declared["scope"]) if len(declared) else []:
        part = declared[declared["scope"] == scope]
        for trait in ["all", *sorted(set(part["trait"]))]:
            sel = part if trait == "all" else part[part["trait"] == trait]
            tested_rows = sel[sel["r"].notna()]
            tested = len(tested_rows)
            confirmed = int(sel["confirmed"].sum())
            share = confirmed / tested if tested else None
            signed = tested_rows["r"].astype(float) * tested_rows["expected_sign"].astype(float)
            power = tested_rows["power_r30"].dropna().astype(float) if "power_r30" in tested_rows else pd.Series([])
            rows.append({"scope": scope, "trait": trait, "declared": len(sel), "tested": tested,
                         "confirmed": confirmed, "share_confirmed": share,
                         "dissociation": None if share is None else 1 - share,
                         "share_expected_sign": float((signed > 0).mean()) if tested else None,
                         "mean_signed_r": float(signed.mean()) if tested else None,
                         "mean_power_r30": float(power.mean()) if len(power) else None})
    return pd.DataFrame(rows, columns=["scope", "trait", "declared", "tested", "confirmed", "share_confirmed",
                                       "dissociation", "share_expected_sign", "mean_signed_r", "mean_power_r30"])


# -------------------------------------------------------------------------------------- mixed model


def mixed_model(selfreport: pd.DataFrame, behavior: pd.DataFrame,
                declared: dict[tuple[str, str], int] | None = None) -> pd.DataFrame:
    """Within- and between-model association of each declared pair (needs two or more models).

    Over the respondents with both scores, self-report and behaviour are z-standardized, and

    .. math:: z_b = \\beta_0 + \\beta_w (z_s - \\bar z_{s,m}) + \\beta_b \\bar z_{s,m} + u_m + e,
              \\quad u_m \\sim N(0, \\tau^2),\\; e \\sim N(0, \\sigma^2)

    is fitted by REML (:func:`~psychometrics.statistics.mixed_model.random_intercept_reml`; ``lme4::lmer(zb ~ within + between + (1 | model))``).
    :math:`\\beta_w` is the association among one model's personas, :math:`\\beta_b` the association
    between models' mean self-report and mean behaviour. The t tests use between-within degrees of
    freedom (SAS ``DDFM=BETWITHIN``): :math:`n - k - 1` for :math:`\\beta_w` and :math:`k - 2` for
    :math:`\\beta_b` with k models, so :math:`\\beta_b` rests honestly on k model means (no test for k = 2).
    ``declared``: the pairs, as in :func:`validity_pairs` (by default each task with its own trait).
    """
    from scipy import stats

    selfs, behaviours = self_scores(selfreport), behavior_scores(behavior)
    index = selfs.index.intersection(behaviours.index)
    rows = []
    info = task_info(behavior)
    wanted = list(declared) if declared is not None else [(t, task) for task, (t, _) in info.iterrows()]
    for trait, task in wanted:
        if trait not in selfs.columns or task not in behaviours.columns:
            continue
        data = pd.DataFrame({"s": selfs.loc[index, trait], "b": behaviours.loc[index, task]}).dropna()
        models = data.index.get_level_values("model").to_numpy()
        k = len(set(models))
        row = {"trait": trait, "task": task, "n": len(data), "n_models": k}
        zs, zb = _zscore(data["s"]).to_numpy(), _zscore(data["b"]).to_numpy()
        between = zs - centre_within(zs, models) if len(zs) else zs
        within = zs - between
        if k < 2 or len(data) < k + 3 or not np.isfinite(zs).all() or not np.isfinite(zb).all() \
                or np.abs(within).max() < 1e-12 or np.ptp(between) < 1e-12:
            rows.append(row | {"note": "needs 2 or more models, self-report varying within and between models and "
                                       "more respondents than models + 2"})
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


def _manipulation_data(selfreport: pd.DataFrame, behavior: pd.DataFrame, targets: pd.DataFrame):
    """Respondents with both measures; per targeted trait the respondents of the check (the trait's own
    personas and the untargeted baseline ones), their levels and each measure's signed values."""
    info = task_info(behavior)
    selfs, behaviours = _both(self_scores(selfreport), behavior_scores(behavior), info)
    index = selfs.index
    targeted = targets[targets["level"] != 0]
    traits = sorted(set(targeted["trait"]) & (set(selfs.columns) | set(info["trait"])))
    levels = target_levels(targets, index, traits)
    personas = index.get_level_values("persona")
    baseline = ~personas.isin(set(targeted["persona"]))
    out = []
    for trait in traits:
        # the trait's own personas (a multi-trait profile at level 0 of this trait is one of them) and the baseline
        members = np.asarray(baseline | personas.isin(set(targets.loc[targets["trait"] == trait, "persona"])))
        if levels.loc[members, trait].nunique() < 2:
            continue  # no persona in the data targets it
        measures = [("self-report", "self-report", selfs[trait])] if trait in selfs.columns else []
        measures += [(task, "behavior", behaviours[task] * direction)
                     for task, (t, direction) in info.iterrows() if t == trait]
        out.append((trait, members, levels[trait], measures))
    return index, out


def _manipulation_cells(selfreport: pd.DataFrame, behavior: pd.DataFrame, targets: pd.DataFrame):
    """Per scope (each model, then pooled), trait and measure: (scope, trait, measure, kind, target
    levels, signed values, model of each respondent or None) over the respondents of the check."""
    index, data = _manipulation_data(selfreport, behavior, targets)
    models = index.get_level_values("model")
    for scope in _scopes(models):
        in_scope = _in_scope(index, scope)
        for trait, members, levels, measures in data:
            mask = in_scope & members
            groups = models[mask] if scope == POOLED else None
            for measure, kind, values in measures:
                yield scope, trait, measure, kind, levels[mask].to_numpy(float), values[mask].to_numpy(float), groups


def manipulation_check(selfreport: pd.DataFrame, behavior: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """Does the persona's target level move the self-report and the behaviour of its trait?

    For every trait some persona of the data targets, over the respondents with both measures who play
    one of the trait's own personas or an untargeted (baseline, level 0) persona (personas targeting
    other traits are left out: they are not level 0 of this trait's manipulation), in each model and
    pooled (centred within model): r and OLS slope of the achieved self-report on the target level, and
    of each of the trait's tasks, its score multiplied by the task's direction (so a working manipulation
    gives a positive r everywhere). Slopes are in the score's units per target level; the test has
    :math:`n - 2` (pooled :math:`n - k - 1`) degrees of freedom. Per-level means are in
    :func:`manipulation_levels`.

    Degenerate cases carry a note and no r: a score constant over these respondents, or r exactly 0
    because the scores tie across the target levels; fewer than :data:`FEW_OFF_MODE` respondents off the
    modal score are noted.
    """
    rows = []
    for scope, trait, measure, kind, x, y, groups in _manipulation_cells(selfreport, behavior, targets):
        stats = correlation(x, y, groups)
        complete = ~np.isnan(y)
        row = {"scope": scope, "trait": trait, "measure": measure, "kind": kind, "n": stats["n"],
               "n_levels": int(len(set(x[complete]))), "r": stats["r"], "slope": stats["slope"], "p": stats["p"]}
        notes = [stats["note"]]
        if stats["r"] is not None and abs(stats["r"]) < 1e-12:
            row.update(r=None, slope=None, p=None)
            notes.append("the scores tie across target levels (r = 0 exactly): no trend estimable")
        elif stats["r"] is not None:
            count = off_mode(y[complete], None if groups is None else np.asarray(groups)[complete])
            if count < FEW_OFF_MODE:
                notes.append(f"r rests on {count} respondent(s) off the modal score")
        row["note"] = _join(notes)
        rows.append(row)
    return pd.DataFrame(rows, columns=["scope", "trait", "measure", "kind", "n", "n_levels", "r", "slope", "p",
                                       "note"])


def manipulation_levels(selfreport: pd.DataFrame, behavior: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """Per trait, measure and target level: n, mean and SD (ddof 1) of the achieved score.

    The same respondents and signed scores as :func:`manipulation_check` (the trait's own personas and
    the baseline, level 0), per model and pooled over models (raw scores, not centred). A working
    manipulation shows means rising with the level for self-report and for every task.
    """
    rows = []
    for scope, trait, measure, kind, x, y, _ in _manipulation_cells(selfreport, behavior, targets):
        for level, part in pd.DataFrame({"level": x, "y": y}).groupby("level"):
            valid = part["y"].dropna()
            rows.append({"scope": scope, "trait": trait, "measure": measure, "kind": kind, "level": level,
                         "n": len(valid), "mean": float(valid.mean()) if len(valid) else None,
                         "sd": float(valid.std(ddof=1)) if len(valid) > 1 else None})
    return pd.DataFrame(rows, columns=["scope", "trait", "measure", "kind", "level", "n", "mean", "sd"])


# ------------------------------------------------------------------------------------------- MTMM


def behavior_trait_scores(behavior: pd.DataFrame) -> pd.DataFrame:
    """Respondents x traits: mean over the trait's tasks of the direction-signed, within-model z score."""
    scores = behavior_scores(behavior)
    info = task_info(behavior)
    models = scores.index.get_level_values("model")
    z = scores.groupby(models).transform(lambda col: _zscore(col))
    signed = z * info.loc[z.columns, "direction"].to_numpy()
    return signed.T.groupby(info.loc[signed.columns, "trait"].to_numpy()).mean().T


def task_methods(behavior: pd.DataFrame) -> dict[str, str]:
    """Per task, its MTMM method: ``intention`` for tasks whose ``method`` is self-report, else ``behavior``.

    Read from a ``method`` column when the frame has one, else from the shipped task file of that id
    (tasks that are not shipped count as behaviour)."""
    tasks = sorted(set(behavior["task"]))
    if "method" in behavior.columns:
        declared = behavior.drop_duplicates("task").set_index("task")["method"].to_dict()
    else:
        from psychometrics.behavior.task import TASK_DIR, load_task

        declared = {}
        for task in tasks:
            path = TASK_DIR / f"{task}.yaml"
            declared[task] = load_task(path).method if path.is_file() else BEHAVIOR_METHOD
    return {task: INTENTION_METHOD if declared.get(task) == "self-report" else BEHAVIOR_METHOD for task in tasks}


def behavior_mtmm(selfreport: pd.DataFrame, behavior: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The MTMM matrix and Campbell-Fiske summary with behaviour as one more method.

    Over the respondents with both self-report and behaviour, methods are the inventories (signed
    respondent scale scores), ``behavior`` (:func:`behavior_trait_scores` of the tasks whose ``method`` is
    behaviour) and ``intention`` (the same over the tasks whose ``method`` is self-report: hypothetical
    choices and intention items ask what the model would do, the questionnaire's method, so counting them
    as behaviour would inflate the heteromethod correlations; :func:`task_methods`). Each correlation uses the
    pair's complete respondents, centred within model after that deletion (the within-model association
    pooled over models), and is tested with :math:`n - k - 1` degrees of freedom
    (:func:`psychometrics.statistics.mtmm.mtmm_matrix` with ``groups``).
    """
    from psychometrics.statistics.mtmm import mtmm_matrix

    both = _respondent_keys(selfreport) & _respondent_keys(behavior)
    components = self_components(_only(selfreport, both))
    behaviour = _only(behavior, both)
    methods = task_methods(behaviour)
    parts = []
    for method in (BEHAVIOR_METHOD, INTENTION_METHOD):
        tasks = [task for task, m in methods.items() if m == method]
        if not tasks:
            continue
        part = behavior_trait_scores(behaviour[behaviour["task"].isin(tasks)])
        part.columns = pd.MultiIndex.from_tuples([(method, t) for t in part.columns])
        parts.append(part)
    index = components.index
    for part in parts:
        index = index.intersection(part.index)
    index = index.sort_values()
    wide = pd.concat([components.reindex(index), *(part.reindex(index) for part in parts)], axis=1)
    wide.columns = pd.MultiIndex.from_tuples(list(wide.columns), names=["method", "trait"])
    return mtmm_matrix(wide, groups=index.get_level_values("model"))


# ------------------------------------------------------------------------------------------ all tables


def _scores_long(selfreport: pd.DataFrame, behavior: pd.DataFrame) -> pd.DataFrame:
    selfs = self_scores(selfreport).stack().rename("score").reset_index().rename(columns={"level_2": "measure"})
    behaviours = behavior_scores(behavior).stack().rename("score").reset_index().rename(columns={"task": "measure"})
    selfs.columns = [*RESPONDENT, "measure", "score"]
    info = task_info(behavior)
    selfs = selfs.assign(kind="self-report", trait=selfs["measure"], direction=1)
    behaviours = behaviours.assign(kind="behavior", trait=info.loc[behaviours["measure"], "trait"].to_numpy(),
                                   direction=info.loc[behaviours["measure"], "direction"].to_numpy())
    from psychometrics.validity.behavior_scores import missing_shares

    shares = missing_shares(behavior)
    keys = pd.MultiIndex.from_frame(behaviours[[*RESPONDENT, "measure"]])
    behaviours = behaviours.assign(missing_share=shares["missing_share"].reindex(keys).to_numpy(),
                                   variants=shares["variants"].reindex(keys).to_numpy())
    columns = [*RESPONDENT, "kind", "measure", "trait", "direction", "score", "missing_share", "variants"]
    return pd.concat([selfs.reindex(columns=columns), behaviours[columns]], ignore_index=True)


def _incremental_tables(selfreport, behavior, targets, manipulation, bound, seed, n_boot, notes, declared=None):
    """``validity_incremental`` and ``persona_effect`` (:mod:`psychometrics.validity.incremental`)."""
    from psychometrics.validity.incremental import incremental_pairs, persona_effect_ratio, target_matrix

    info = task_info(behavior)
    selfs, behaviours = _both(self_scores(selfreport), behavior_scores(behavior), info)
    usable = targets if targets is not None and (targets["level"] != 0).any() else None
    if usable is None:
        notes.append(("validity_incremental", "no persona targets: nothing to partial out, so the conclusions rest on "
                                              "the plain r and a common cause (the persona prompt) is not ruled out"))
    else:
        levels = target_matrix(usable, selfs.index)
        notes.append(("validity_incremental", f"incremental validity is beyond the target levels of {levels.shape[1]} "
                                              f"trait(s) ({', '.join(levels.columns)})"))
    incremental = incremental_pairs(selfs, behaviours, info, usable, manipulation, bound=bound,
                                   declared=declared)
    ratio = persona_effect_ratio(selfs, behaviours, info, usable, manipulation, seed=seed, n_boot=n_boot) \
        if usable is not None else pd.DataFrame()
    return incremental, ratio


TABLE_NAMES = ("validity_incremental", "validity_pairs", "dissociation", "persona_effect", "validity_mixed",
               "manipulation_check", "manipulation_levels", "behavior_reliability", "behavior_missingness",
               "selfreport_reliability", "validity_mtmm", "validity_mtmm_summary",
               "validity_scores")


def validity_tables(selfreport: pd.DataFrame, behavior: pd.DataFrame, targets: pd.DataFrame | None = None, *,
                    items: pd.DataFrame | None = None, variant_order: dict[str, list[str]] | None = None,
                    seed: int = 0, n_boot: int = 2000, ci_method: str = "bca",
                    declared: dict[tuple[str, str], int] | None = None,
                    equivalence_bound: float = 0.2, reliability_floor: float = RELIABILITY_FLOOR
                    ) -> dict[str, pd.DataFrame]:
    """Every validity table (see the module docstring), plus ``notes`` saying what could not be computed.

    Everything is computed over the respondents with both self-report and behaviour (a note says how
    many of each were left out), so the reliabilities that correct a correlation, the correlation itself,
    the manipulation check and the MTMM matrix describe the same respondents; behaviour scores are
    variant-centred over every variant (:func:`behavior_scores`). A ``ratio`` column (True for ratio
    measures, :func:`psychometrics.validity.behavior_scores.mark_ratio_tasks`) selects the multiplicative
    model for those tasks. ``items`` (from
    :func:`read_selfreport`) gives the self-report reliabilities; without it the correlations are not
    corrected for unreliability. ``targets`` (:func:`targets_frame`) enables the manipulation check.
    ``ci_method`` chooses the interval of r (:func:`~psychometrics.statistics.correlation.r_interval`: ``"fisher"`` or ``"bca"``).
    ``declared`` (``{(trait, task): sign}``) declares the pairs explicitly (:func:`validity_pairs`).
    ``equivalence_bound`` is the smallest |rho| of interest of the equivalence test, ``reliability_floor``
    the reliability below which no correlation is corrected for attenuation.
    """
    from psychometrics.validity.incremental import check_bound

    check_bound(equivalence_bound)
    if not 0 < reliability_floor <= 1:
        raise PsytestError(f"reliability floor {reliability_floor}: give a reliability between 0 and 1, e.g. 0.5")
    _check(selfreport, SELFREPORT_COLUMNS, "self-report data")
    _check(behavior, BEHAVIOR_COLUMNS, "behaviour data")
    if targets is not None:
        _check(targets, TARGET_COLUMNS, "persona targets")
    if n_boot < 100:
        raise PsytestError(f"--bootstrap {n_boot}: use at least 100 resamples")
    selfreport = selfreport.assign(persona=selfreport["persona"].fillna("none"))
    behavior = behavior.assign(persona=behavior["persona"].fillna("none"),
                               score=pd.to_numeric(behavior["score"], errors="coerce"))
    if items is not None:
        items = items.assign(persona=items["persona"].fillna("none"))
    notes: list[tuple[str, str]] = []
    empty = pd.DataFrame()
    tables = {name: empty for name in TABLE_NAMES}
    self_keys, behavior_keys = _respondent_keys(selfreport), _respondent_keys(behavior)
    both = self_keys & behavior_keys
    if len(both) < 3:
        if not behavior.empty:
            tables["behavior_reliability"] = behavior_reliability(behavior, variant_order)
        notes.append(("validity_pairs", (f"{len(both)} respondents (model x persona) have both self-report and "
                                         "behaviour; need 3. Use the same model and persona set in both runs")))
        return tables | {"notes": pd.DataFrame(notes, columns=["table", "note"])}
    only_self, only_behavior = len(self_keys - both), len(behavior_keys - both)
    if only_self or only_behavior:
        notes.append(("validity_pairs", f"{len(both)} respondents have both self-report and behaviour and enter "
                                        f"every table; left out: {only_self} with self-report only, {only_behavior} "
                                        "with behaviour only"))
    selfreport, behavior = _only(selfreport, both), _only(behavior, both)
    tables["behavior_reliability"] = behavior_reliability(behavior, variant_order)
    for task, entry in variant_sets(behavior, variant_order).items():
        if int(entry["counts"].max()) > len(entry["common"]):
            notes.append(("behavior_reliability", f"task '{task}': respondents' variant sets differ "
                          f"({int(entry['counts'].min())} to {int(entry['counts'].max())} variants); its "
                          f"variant-centred scores and alpha use every variant, the split-half the "
                          f"{len(entry['common'])} every respondent has"))
    from psychometrics.validity.behavior_scores import centred_scores, missingness_table

    scores, score_notes = centred_scores(behavior)
    notes += [("validity_scores", note) for note in score_notes]
    tables["behavior_missingness"] = missingness_table(behavior, self_scores(selfreport), scores, task_info(behavior),
                                                       _scopes(behavior["model"]))
    for row in tables["behavior_missingness"].itertuples():
        if row.flag:
            notes.append(("behavior_missingness", f"task '{row.task}' ({row.scope}): {row.note}"))
    if items is not None and not selfreport.empty:
        tables["selfreport_reliability"] = selfreport_reliability(_only(items, both), selfreport)
    else:
        notes.append(("validity_pairs", "no self-report item data: correlations are not corrected for unreliability"))
    tables["validity_scores"] = _scores_long(selfreport, behavior)
    pairs = validity_pairs(selfreport, behavior, self_reliability=tables["selfreport_reliability"],
                           behavior_reliability=tables["behavior_reliability"], seed=seed, n_boot=n_boot,
                           ci_method=ci_method, declared=declared, reliability_floor=reliability_floor)
    tables["validity_pairs"], tables["dissociation"] = pairs, dissociation_index(pairs)
    if not pairs["declared"].any():
        notes.append(("dissociation", "no task measures a trait of the self-report; nothing was declared"))
    if len({model for model, _ in both}) >= 2:
        tables["validity_mixed"] = mixed_model(selfreport, behavior, declared)
    else:
        notes.append(("validity_mixed", "one model only: within- and between-model associations need 2 or more"))
    if targets is not None and (targets["level"] != 0).any():
        tables["manipulation_check"] = manipulation_check(selfreport, behavior, targets)
        tables["manipulation_levels"] = manipulation_levels(selfreport, behavior, targets)
        if tables["manipulation_check"].empty:
            notes.append(("manipulation_check", "no persona in the data sets a target on a measured trait"))
    else:
        notes.append(("manipulation_check", "no persona targets (use a trait-shaping persona set)"))
    tables["validity_incremental"], tables["persona_effect"] = _incremental_tables(
        selfreport, behavior, targets, tables["manipulation_check"], equivalence_bound, seed, n_boot, notes,
        declared)
    if not tables["validity_incremental"].empty:
        from psychometrics.validity.incremental import incremental_dissociation

        extra = incremental_dissociation(tables["validity_incremental"])
        tables["dissociation"] = tables["dissociation"].merge(extra, on=["scope", "trait"], how="left")
    table, summary = behavior_mtmm(selfreport, behavior)
    tables["validity_mtmm"], tables["validity_mtmm_summary"] = table, summary
    if table.empty:
        notes.append(("validity_mtmm", "fewer than two methods share two traits"))
    return tables | {"notes": pd.DataFrame(notes, columns=["table", "note"])}
