"""Everything derived from a run's responses (or from item data): the tables behind every report.

The unit of analysis is defined once, in :mod:`psychometrics.analysis.units`: a *respondent* is one
persona answering one sample (persona x sample); a *design cell* is one combination of option order,
template, wording and item order; the answer mode stratifies everything. Reliability, item-total, EFA,
CFA, MTMM and test-retest are computed across the respondents within each design cell (rows carry the
cell's columns), and only where a cell has enough respondents; otherwise one row per inventory x mode
says what to add. Across design cells psytest reports stability (the sensitivity tables). Every table
has a column ``unit`` that says what its rows were computed over.

``by`` chooses a coarser grouping (e.g. only ``persona`` and ``mode``): item values are then averaged over
the conditions left out within each group first. Left-out respondent fields coarsen the respondents (a
persona averaged over its samples is one respondent); left-out cell fields pool those cells (their cell
column reads ``all``). A grouping without ``persona`` and ``sample`` has one respondent per cell, so
no reliability or structure is computed from it: design cells are never the rows of those analyses.

Tables (each a tidy DataFrame, written as ``<name>.csv``):

``scores``                one row per respondent x scale/facet (reverse keying and the scoring rule applied)
``score_summary``         per scale: mean over respondents (each averaged over its design cells), SD over
                          respondents and over cell means, t interval over respondents
``norms``                 per scale and norm group: z, T, percentile, Hedges' g (or d vs norm) with CI, the
                          respondents (averaged over cells) as the sample
``reliability``           per scale: alpha (Feldt CI), standardized alpha, lambda-6, omega total and
                          hierarchical, split-half (min, mean, max), with notes where undefined
``item_total``            corrected item-total correlation of each item
``retest``                test-retest ICCs across repeated samples, personas as targets, per design cell
``efa_loadings``, ``efa_fit``     EFA with as many factors as scales (minres, oblimin), and its congruence
                          with the instrument's intended structure
``cfa_fit``               CFA of the instrument's model
``factor_effects``, ``variance_decomposition``, ``option_order_flips``, ``position_bias``,
``acquiescence``, ``response_styles``     sensitivity to each design factor (runs only)
``mtmm``, ``mtmm_summary``                multitrait-multimethod matrix when two instruments share traits
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from psychometrics.analysis import units
from psychometrics.analysis.units import CELL_FIELDS, RESPONDENT_FIELDS, respondent_scores
from psychometrics.conditions import CONDITION_FIELDS, condition_columns
from psychometrics.errors import PsytestError
from psychometrics.inventories.model import Inventory
from psychometrics.statistics.scoring import item_matrix, scores_from_matrix
from psychometrics.textsafe import printable

Tables = dict[str, pd.DataFrame]


# ---------------------------------------------------------------------------------------------------
# shaping data


def _note(*parts: str | None) -> str | None:
    joined = "; ".join(p for p in parts if p)
    return joined or None


def _safe(call, *args, **kwargs):
    """(result, note): user-facing problems become notes, so one degenerate scale never stops the analysis.

    The statistics refuse data they cannot use with a one-line :class:`ValueError` that says why: its
    message is the note (on one line, control characters escaped, as every message psytest shows).
    Numerical failures (a singular matrix, a division by zero) are noted with their type's name."""
    try:
        return call(*args, **kwargs), None
    except (np.linalg.LinAlgError, ZeroDivisionError, FloatingPointError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    except (PsytestError, ValueError) as exc:
        return None, printable(" ".join(str(exc).split()))


# ---------------------------------------------------------------------------------------------------
# per-inventory item analyses (shared by runs and item data)


def reliability_tables(matrix: pd.DataFrame, inventory: Inventory, labels: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reliability per scale and corrected item-total correlations."""
    from psychometrics.statistics import reliability as rel
    from psychometrics.statistics.omega import omega

    rows, item_rows = [], []
    for scale in inventory.scales:
        block = matrix[scale.items].dropna(axis=0, how="all")
        row = {**labels, "scale": scale.id, "n_items": len(scale.items), "n_respondents": len(block)}
        alpha, alpha_note = _safe(rel.cronbach_alpha, block)
        if alpha is not None:
            row.update(alpha=alpha.raw_alpha, alpha_ci_low=alpha.ci_low, alpha_ci_high=alpha.ci_high,
                       std_alpha=alpha.std_alpha, average_r=alpha.average_r)
            alpha_note = alpha.note
        six, six_note = _safe(rel.guttman_lambda6, block)
        if six is not None:
            row["lambda6"] = six.lambda6
            six_note = six.note
        halves, half_note = _safe(rel.split_half, block)
        if halves is not None:
            row.update(split_half_min=halves.beta, split_half_mean=halves.mean, split_half_max=halves.lambda4,
                       split_half_splits=halves.n_splits, split_half_method=halves.method)
            half_note = halves.note
        n_factors = 3 if len(scale.items) >= 9 else 1
        complete = block.dropna()
        omega_note: str | None
        if len(complete) <= len(scale.items):
            om, omega_note = None, (f"omega not computed: {len(complete)} complete respondents for {len(scale.items)} "
                                    "items (a factor model needs more respondents than items; add personas or samples)")
        else:
            om, omega_note = _safe(omega, complete, n_factors=n_factors, drop_constant=True)
        if om is not None:
            row["omega_total"] = om.omega_total
            row["omega_hierarchical"] = om.omega_hierarchical
            omega_note = om.note
            if n_factors == 1:
                omega_note = _note(omega_note, "omega hierarchical needs 3 group factors, i.e. at least 9 items")
        row["note"] = _note(alpha_note, six_note, half_note, omega_note)
        rows.append(row)
        item_total, item_note = _safe(rel.corrected_item_total, block)
        if item_total is not None:
            for index, item_id in enumerate(item_total.items):
                item_rows.append({**labels, "scale": scale.id, "item": item_id, "r_drop": item_total.r_drop[index],
                                  "alpha_if_dropped": (item_total.alpha_if_dropped or [None] * len(item_total.items))[index],
                                  "note": item_total.note})
    return pd.DataFrame(rows), pd.DataFrame(item_rows)


def _target_structure(inventory: Inventory, items: list[str]) -> pd.DataFrame:
    """The instrument's intended loadings on keyed data: 1 where an item belongs to a scale."""
    target = pd.DataFrame(0.0, index=items, columns=[s.id for s in inventory.scales])
    for scale in inventory.scales:
        target.loc[[i for i in scale.items if i in target.index], scale.id] = 1.0
    return target


def structure_tables(matrix: pd.DataFrame, inventory: Inventory, labels: dict,
                     reference_loadings: pd.DataFrame | None = None) -> Tables:
    """EFA with as many factors as scales, its congruence with the intended (or a reference) structure,
    and a CFA of the instrument's model."""
    from psychometrics.statistics.cfa import cfa
    from psychometrics.statistics.congruence import match_factors
    from psychometrics.statistics.efa import efa

    data = matrix.dropna()
    k = len(inventory.scales)
    tables: Tables = {}
    fit_row = {**labels, "n_respondents": len(data), "n_items": matrix.shape[1], "n_factors": k}
    if k < 2:
        fit_row["note"] = "one scale: no factor structure to examine"
        tables["efa_fit"] = pd.DataFrame([fit_row])
    elif len(data) <= matrix.shape[1]:
        fit_row["note"] = (f"EFA not run: {len(data)} complete respondents for {matrix.shape[1]} items (the correlation "
                           "matrix is singular and loadings would be arbitrary); add personas or samples")
        tables["efa_fit"] = pd.DataFrame([fit_row])
    else:
        result, note = _safe(efa, data, n_factors=k, method="minres", rotation="oblimin", drop_constant=True)
        if result is not None:
            fit_row.update(rmsr=result.fit.rmsr, rmsea=result.fit.rmsea, tli=result.fit.tli,
                           converged=result.converged, dropped_items=", ".join(result.dropped_items) or None)
            target = reference_loadings if reference_loadings is not None else _target_structure(
                inventory, list(result.loadings.index))
            target = target.reindex(result.loadings.index).fillna(0.0)
            matched, match_note = _safe(match_factors, target, result.loadings)
            if matched is not None:
                congruence = matched.congruence
                fit_row["congruence_mean"] = float(np.mean(np.abs(congruence)))
                fit_row["congruence_min"] = float(np.min(np.abs(congruence)))
                fit_row["congruence_with"] = "reference loadings" if reference_loadings is not None else "scoring key"
                loadings = matched.loadings
            else:
                loadings = result.loadings
            fit_row["note"] = _note(result.note, match_note)
            long = loadings.reset_index(names="item").melt(id_vars="item", var_name="factor", value_name="loading")
            tables["efa_loadings"] = long.assign(**labels)[[*labels, "item", "factor", "loading"]]
        else:
            fit_row["note"] = note
        tables["efa_fit"] = pd.DataFrame([fit_row])
    model = {s.id: list(s.items) for s in inventory.scales}
    cfa_row = {**labels, "n_respondents": len(data)}
    fitted, note = _safe(cfa, data, model)
    if fitted is not None:
        if fitted.fit is not None:
            fit = fitted.fit
            cfa_row.update(chisq=fit.chisq, df=fit.df, pvalue=fit.pvalue, cfi=fit.cfi, tli=fit.tli, rmsea=fit.rmsea,
                           rmsea_ci_lower=fit.rmsea_ci_lower, rmsea_ci_upper=fit.rmsea_ci_upper, srmr=fit.srmr,
                           aic=fit.aic, bic=fit.bic)
        cfa_row.update(converged=fitted.converged, n_used=fitted.n)
        cfa_row["note"] = fitted.note
    else:
        cfa_row["note"] = note
    tables["cfa_fit"] = pd.DataFrame([cfa_row])
    return tables


# ---------------------------------------------------------------------------------------------------
# runs


def _concat(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if p is not None and not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _respondent_means(group: pd.DataFrame, respondent: Sequence[str]) -> np.ndarray:
    """Each respondent's mean score over the design cells it was scored in (NaN scores skipped):
    :func:`psychometrics.analysis.units.respondent_scores`, as an array."""
    valid = group[group["score"].notna()]
    if valid.empty:
        return np.array([])
    return respondent_scores(valid, keys=(), respondent=tuple(respondent))["score"].to_numpy(dtype=float)


def score_summary(scores: pd.DataFrame, by: Sequence[str] = ("inventory", "mode", "kind", "scale"),
                  respondent: Sequence[str] = RESPONDENT_FIELDS) -> pd.DataFrame:
    """Per scale: the mean over respondents, each first averaged over the design cells it was scored in.

    ``n`` counts scored respondent x cell rows, ``n_respondents`` and ``n_cells`` the two units; ``sd`` is
    the SD over respondents and the 95% Student-t interval (R's ``t.test``) is taken over respondents, as
    the verdict's (:mod:`psychometrics.analysis.verdict`): they are the sampled units, design cells are conditions the researcher fixed. ``sd_over_cells`` is the
    SD of the cell means (each averaged over respondents): the design's spread in score points."""
    from psychometrics.statistics.norms import t_mean_ci

    rows = []
    for key, group in scores.groupby(list(by), sort=False):
        valid = group[group["score"].notna()]
        means = _respondent_means(valid, respondent)
        cells = [c for c in CELL_FIELDS if c in valid.columns]
        cell_means = (valid.groupby(cells, sort=False, dropna=False)["score"].mean().to_numpy(dtype=float)
                      if cells and len(valid) else means[:0])
        low, high = t_mean_ci(means)
        note = None
        if len(means) == 0:
            note = "no scored respondent"
        elif len(means) == 1:
            note = ("one respondent (persona x sample): no interval over respondents; the spread over design "
                    "cells is sd_over_cells (variance_decomposition.csv)")
        rows.append({**dict(zip(by, key)), "mean": float(means.mean()) if len(means) else None,
                     "sd": float(means.std(ddof=1)) if len(means) > 1 else None, "n": int(len(valid)),
                     "n_respondents": int(len(means)), "n_cells": int(len(cell_means)) if cells else 1,
                     "sd_over_cells": float(cell_means.std(ddof=1)) if len(cell_means) > 1 else None,
                     "ci_low": low, "ci_high": high, "note": note})
    return pd.DataFrame(rows)


def norm_table(scores: pd.DataFrame, inventories: list[Inventory], by: Sequence[str] = ("mode",),
               respondent: Sequence[str] = RESPONDENT_FIELDS) -> pd.DataFrame:
    """The respondents (each averaged over its design cells) against each inventory's human norms."""
    from psychometrics.statistics.norms import compare_to_norm

    rows = []
    for inventory in inventories:
        part = scores[scores["inventory"] == inventory.id]
        for norm in inventory.norms:
            for kind, table in (("scale", norm.scales), ("facet", norm.facets)):
                for target, stat in table.items():
                    selected = part[(part["kind"] == kind) & (part["scale"] == target)]
                    for key, group in selected.groupby(list(by), sort=False) if by else [((), selected)]:
                        result = compare_to_norm(_respondent_means(group, respondent), norm.group, stat.mean,
                                                 stat.sd, norm.n)
                        if result is None:
                            continue
                        key = key if isinstance(key, tuple) else (key,)
                        rows.append({"inventory": inventory.id, **dict(zip(by, key)), "kind": kind,
                                     "scale": target, **result.as_dict()})
    return pd.DataFrame(rows)


#: What a cell column reads when ``by`` pooled that field's levels (items averaged over them).
POOLED = "all"


def _cells(frame: pd.DataFrame, by: Sequence[str], *, in_index: bool = False):
    """(cell labels, rows) for each design cell of ``frame``, whose columns (or, ``in_index``, index levels:
    a respondents x items matrix, whose columns are item ids) hold the fields of ``by``; cell fields left
    out of ``by`` read :data:`POOLED`."""
    cell_by = [f for f in CELL_FIELDS if f in by]
    pooled = {f: POOLED for f in _cell_fields(by) if f not in by}
    if not cell_by:
        yield dict(pooled), frame
        return
    keys = frame.index.to_frame(index=False)[cell_by] if in_index else frame[cell_by]
    for key, rows in frame.groupby([keys[c].to_numpy() for c in cell_by], sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        labels = {**dict(zip(cell_by, key)), **pooled}
        yield {f: labels[f] for f in _cell_fields(by)}, rows


def _cell_fields(by: Sequence[str]) -> list[str]:
    """The cell columns of a table grouped by ``by``: :data:`CELL_FIELDS`, temperature only when in ``by``
    (a run that does not vary it has no temperature column: its tables are as before it was a factor)."""
    return [f for f in CELL_FIELDS if f != "temperature" or f in by]


def _absent_row(labels: dict, n_cells: int, most: int, needed: int, what: str,
                by: Sequence[str] = ()) -> pd.DataFrame:
    """The one row per inventory x mode that says a statistic was computed in no design cell, and why."""
    row = {**labels, **{f: None for f in _cell_fields(by)}, "n_cells": n_cells, "n_respondents": most,
           "note": units.too_few_respondents(most, needed, what)}
    return pd.DataFrame([row])


def _within_cell_item_tables(responses: pd.DataFrame, inventories: list[Inventory], by: Sequence[str], *,
                             structure: bool, reference_loadings: pd.DataFrame | None) -> Tables:
    """Reliability, item-total, EFA and CFA of each inventory x mode x design cell, across its respondents.

    A cell with fewer respondents than :data:`~psychometrics.analysis.units.MIN_RESPONDENTS_RELIABILITY`
    (reliability) or :func:`~psychometrics.analysis.units.min_respondents_structure` (EFA, CFA) gets no
    row; when no cell of an inventory x mode has enough, one row says so. Rows a respondent is in are the
    groups of the respondent fields in ``by``; without them every cell has one respondent."""
    reliability: list[pd.DataFrame] = []
    item_total: list[pd.DataFrame] = []
    parts: list[Tables] = []
    absent: dict[str, list[pd.DataFrame]] = {"reliability": [], "efa_fit": [], "cfa_fit": []}
    by = condition_columns(responses.columns, by)  # temperature only when the run varies it
    who = [f for f in RESPONDENT_FIELDS if f in by]
    for inventory in inventories:
        modes = responses.loc[responses["inventory"] == inventory.id, "mode"].dropna().unique()
        needed_structure = units.min_respondents_structure(len(inventory.items))
        for mode in modes:
            matrix = item_matrix(responses[responses["mode"] == mode], inventory, by)
            matrix = matrix.dropna(axis=0, how="all")
            base = {"inventory": inventory.id, "mode": mode}
            counts, reliable, structured = [], 0, 0
            for cell, rows in _cells(matrix, by, in_index=True):
                block = rows.droplevel([n for n in rows.index.names if n not in who]) if who else \
                    rows.reset_index(drop=True)
                counts.append(len(block))
                labels = {**base, **cell}
                if len(block) >= units.MIN_RESPONDENTS_RELIABILITY:
                    reliable += 1
                    rel, items = reliability_tables(block, inventory, labels)
                    reliability.append(rel)
                    item_total.append(items)
                if structure and len(block) >= needed_structure:
                    structured += 1
                    parts.append(structure_tables(block, inventory, labels, reference_loadings))
            most = max(counts, default=0)
            needed = units.MIN_RESPONDENTS_RELIABILITY
            if not reliable:
                absent["reliability"].append(_absent_row(base, len(counts), most, needed,
                                                         "Reliability (alpha, omega, lambda-6, split-half, "
                                                         "item-total)", by))
            elif reliable < len(counts):
                skipped = sum(n < needed for n in counts)
                row = _absent_row(base, len(counts), min(counts), needed, "", by)
                row["note"] = (f"reliability not computed in {skipped} of {len(counts)} design cells: fewer than "
                               f"{needed} respondents (persona x sample) there")
                absent["reliability"].append(row)
            if structure and not structured:
                for name, what in (("efa_fit", "EFA"), ("cfa_fit", "CFA")):
                    absent[name].append(_absent_row(base, len(counts), most, needed_structure, what, by))
    tables: Tables = {"reliability": _concat([*reliability, *absent["reliability"]]),
                      "item_total": _concat(item_total)}
    if structure:
        for name in ("efa_fit", "cfa_fit"):
            tables[name] = _concat([*(part.get(name) for part in parts), *absent[name]])
        tables["efa_loadings"] = _concat(part.get("efa_loadings") for part in parts)
    return tables


def retest_table(scores: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """ICC across repeated samples within each design cell: the targets are the personas, the samples the
    occasions; never cells (a cell is a condition, not a person).

    Needs ``persona`` and ``sample`` in ``by``, two or more samples, and at least
    :data:`~psychometrics.analysis.units.MIN_RESPONDENTS_RELIABILITY` personas scored in every sample of a
    cell; otherwise one row per inventory x mode says what to add."""
    from psychometrics.statistics import reliability as rel

    rows = []
    needed = units.MIN_RESPONDENTS_RELIABILITY
    scales = scores[scores["kind"] == "scale"]
    for (inventory, mode), part in scales.groupby(["inventory", "mode"], sort=False):
        base = {"inventory": inventory, "mode": mode}
        if "sample" not in by or part["sample"].nunique() < 2:
            rows.append({**base, "note": "test-retest not computed: each respondent answered one sample; run "
                                         "--samples 2 or more at a temperature above 0"})
            continue
        if "persona" not in by:
            rows.append({**base, "note": "test-retest not computed: the grouping has no persona to be the target; "
                                         "keep persona in --by"})
            continue
        computed, most, n_cells = 0, 0, 0
        for cell, cell_part in _cells(part, by):
            n_cells += 1
            for scale, group in cell_part.groupby("scale", sort=False):
                wide = group.pivot_table(index="persona", columns="sample", values="score").dropna()
                most = max(most, len(wide))
                if len(wide) < needed or wide.shape[1] < 2:
                    continue
                result, note = _safe(rel.icc, wide)
                row = {**base, **cell, "scale": scale, "n_targets": len(wide), "n_samples": wide.shape[1]}
                if result is not None:
                    form = result.test_retest
                    row.update(icc2_1=form.icc, ci_low=form.ci_low, ci_high=form.ci_high, f=form.f, p=form.p,
                               icc3_1=result["ICC3"].icc, icc2_k=result["ICC2k"].icc)
                    note = result.note
                row["note"] = note
                rows.append(row)
                computed += 1
        if not computed:
            rows.append({**base, "n_cells": n_cells, "n_targets": most,
                         "note": f"test-retest not computed: {most} persona(s) scored in every sample of a design "
                                 f"cell at most, {needed} needed; add personas (--personas)"})
    return pd.DataFrame(rows)


def mtmm_tables(scores: pd.DataFrame, inventories: list[Inventory], by: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MTMM across respondents, pooled over design cells with the cell (and mode) as a fixed effect: each
    correlation is computed from scores centred within cell (:func:`psychometrics.statistics.mtmm.mtmm_matrix`
    with the cells as groups), over the cells with at least two respondents. Absent, with one sentence,
    when no cell has :data:`~psychometrics.analysis.units.MIN_RESPONDENTS_RELIABILITY` respondents."""
    from psychometrics.statistics.mtmm import mtmm_matrix, trait_matrix

    wide = trait_matrix(scores, inventories)
    if wide.empty:
        return pd.DataFrame(), pd.DataFrame()
    index = wide.index.to_frame(index=False)
    group_fields = [f for f in (*CELL_FIELDS, "mode") if f in index.columns]
    cell_of = index[group_fields].astype(str).agg(" | ".join, axis=1) if group_fields else pd.Series("all", index=index.index)
    sizes = cell_of.map(cell_of.value_counts())
    if int(sizes.max()) < units.MIN_RESPONDENTS_RELIABILITY:
        traits = pd.Series(wide.columns.get_level_values("trait")).value_counts()
        if len(set(wide.columns.get_level_values("method"))) < 2 or (traits >= 2).sum() < 2:
            return pd.DataFrame(), pd.DataFrame()  # no two instruments share two traits: no MTMM to speak of
        note = units.too_few_respondents(int(sizes.max()), units.MIN_RESPONDENTS_RELIABILITY, "MTMM")
        return pd.DataFrame([{"n_cells": int(cell_of.nunique()), "n": int(sizes.max()), "note": note}]), pd.DataFrame()
    keep = (sizes >= 2).to_numpy()
    table, summary = mtmm_matrix(wide[keep], groups=cell_of[keep].to_numpy())
    if not table.empty:
        table.insert(table.columns.get_loc("n"), "n_cells", int(cell_of[keep].nunique()))
    return table, summary


def sensitivity_tables(responses: pd.DataFrame, scores: pd.DataFrame, inventories: list[Inventory]) -> Tables:
    from psychometrics.statistics import design_effects, response_styles

    scale_scores = scores[scores["kind"] == "scale"]
    varied = [f for f in CONDITION_FIELDS if f != "mode" and f in scale_scores and scale_scores[f].nunique() > 1]
    tables: Tables = {
        "factor_effects": _concat(design_effects.factor_effects(scale_scores, factor) for factor in varied),
        "variance_decomposition": design_effects.variance_decomposition(scale_scores) if varied else pd.DataFrame(),
        "option_order_flips": design_effects.option_order_flips(responses),
        "position_bias": response_styles.position_bias(responses, inventories),
        "acquiescence": response_styles.acquiescence(responses, inventories),
        "response_styles": response_styles.response_style_rates(responses, inventories),
    }
    return tables


def analyze_run(run_dir: Path, by: Sequence[str] | None = None, *, structure: bool = True,
                reference_loadings: pd.DataFrame | None = None, inputs: dict | None = None, run=None) -> Tables:
    """Every table for a run directory (see the module docstring), read through the run owner
    (:func:`psychometrics.run.owner.open_run`). ``inputs``, if given, receives what the tables were
    computed from (the manifest's sha256 and the store's fingerprint, read in the same transaction as the
    answers): the provenance of the files they are written to. ``run``: the run of ``run_dir`` already
    opened by the caller, whose answers (read once per run) the caller goes on to use: a large store is
    then read once, not once per table set."""
    from psychometrics.run.owner import open_run

    run = run if run is not None else open_run(run_dir)
    by = tuple(by or CONDITION_FIELDS)
    unknown = [f for f in by if f not in CONDITION_FIELDS]
    if unknown:
        raise PsytestError(f"--by: unknown factor '{unknown[0]}'; choose from {', '.join(CONDITION_FIELDS)}")
    repeated = next((f for index, f in enumerate(by) if f in by[:index]), None)
    if repeated is not None:
        raise PsytestError(f"--by: '{repeated}' is given twice; give each factor once")
    if "mode" not in by:
        by = (*by, "mode")  # text and probability answers are different measurements
    inventories = run.inventories
    answers = run.answers()
    if inputs is not None:
        inputs.update(answers.inputs)
    responses, value_checks = answers.responses, answers.value_checks
    by = condition_columns(responses.columns, by)  # temperature only when the run varies it
    cell_scores = run.scores()
    grouped = cell_scores if by == condition_columns(responses.columns) else run.scores(by)
    tables: Tables = {"scores": grouped, "score_summary": _with_value_notes(score_summary(grouped), value_checks),
                      "norms": norm_table(grouped, inventories), "value_checks": value_checks}
    tables.update(_within_cell_item_tables(responses, inventories, by, structure=structure,
                                           reference_loadings=reference_loadings))
    tables["retest"] = retest_table(grouped, by)
    tables.update(sensitivity_tables(responses, cell_scores, inventories))
    tables["mtmm"], tables["mtmm_summary"] = mtmm_tables(grouped, inventories, by)
    return with_units(tables, _run_units(by, condition_columns(responses.columns)))


#: The unit of each table of a run (:mod:`psychometrics.analysis.units`), apart from ``scores``.
RUN_UNITS = {
    "score_summary": units.OVER_RESPONDENTS, "norms": units.OVER_RESPONDENTS, "value_checks": units.ANSWERS,
    **{name: units.WITHIN_CELL for name in ("reliability", "item_total", "efa_fit", "efa_loadings", "cfa_fit",
                                            "retest", "mtmm", "mtmm_summary")},
    **{name: units.ACROSS_CELLS for name in ("factor_effects", "variance_decomposition", "option_order_flips",
                                             "position_bias", "acquiescence", "response_styles")},
}


def _run_units(by: Sequence[str], fields: Sequence[str] = CONDITION_FIELDS) -> dict[str, str]:
    """:data:`RUN_UNITS` with the unit of ``scores``: a respondent in a cell, or the coarser group of ``by``
    (``fields``: the condition fields the run's answers have)."""
    if set(fields) <= set(by):
        scores_unit = units.PER_RESPONDENT
    else:
        scores_unit = f"one group of {' x '.join(by)} (items averaged over the conditions left out)"
    return {**RUN_UNITS, "scores": scores_unit}


def with_units(tables: Tables, unit_of: dict[str, str], default: str | None = None) -> Tables:
    """``tables`` with a column ``unit`` (what the rows were computed over) in every table that has rows."""
    labelled: Tables = {}
    for name, table in tables.items():
        unit = unit_of.get(name, default)
        if table is not None and not table.empty and unit is not None and "unit" not in table.columns:
            table = table.assign(unit=unit)
        labelled[name] = table
    return labelled


def _with_value_notes(summary: pd.DataFrame, value_checks: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with a note on each inventory x mode whose store held values outside the scale."""
    if value_checks.empty or summary.empty:
        return summary
    counts = value_checks.groupby(["inventory", "mode"])["n"].sum()
    notes = []
    for inventory, mode, note in zip(summary["inventory"], summary["mode"], summary["note"]):
        n = counts.get((inventory, mode))
        extra = f"{n} stored value(s) outside the response scale set missing (value_checks.csv)" if n else None
        notes.append(_note(note if isinstance(note, str) else None, extra))
    return summary.assign(note=notes)


def analyze_item_data(matrix: pd.DataFrame, inventory: Inventory, *, structure: bool = True,
                      reference_loadings: pd.DataFrame | None = None) -> Tables:
    """The same tables for respondents x items data (raw values; keyed here): each row is a person, the
    unit of every table (``unit`` = ``person``)."""
    from psychometrics.inventories.item_data import keyed

    keyed_matrix = keyed(matrix, inventory)
    scores = scores_from_matrix(keyed_matrix, inventory)
    scores["mode"] = "data"
    labels = {"inventory": inventory.id}
    people = [name or "respondent" for name in keyed_matrix.index.names]
    reliability, item_total = reliability_tables(keyed_matrix, inventory, labels)
    tables: Tables = {"scores": scores, "score_summary": score_summary(scores, respondent=people),
                      "norms": norm_table(scores, [inventory], respondent=people), "reliability": reliability,
                      "item_total": item_total}
    if structure:
        tables.update(structure_tables(keyed_matrix, inventory, labels, reference_loadings))
    return with_units(tables, {}, default=units.PERSON)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _cell_safe(value: object) -> object:
    if not isinstance(value, str):
        return value
    value = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), value)
    return "'" + value if _formula_like(value) else value


def _formula_like(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False  # "-1.5" is a number in a spreadsheet too, and stays as it is


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its text cells made safe to open in a spreadsheet or print in a terminal.

    A cell starting with ``= + - @``, a tab or a carriage return (a model reply such as
    ``=HYPERLINK("http://...")`` or ``@SUM(...)``) becomes ``'=HYPERLINK(...)``: shown as text by Excel,
    LibreOffice and Google Sheets. Control characters other than tab and newlines (ANSI escape sequences)
    and bidi overrides are written escaped (``\x1b``). Numbers, numeric columns and text that parses as
    a number are left alone. The store keeps the exact reply; read ``responses.sqlite`` when every byte
    matters.
    """
    changed = None
    for column in frame.columns:
        series = frame[column]
        if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            continue
        safe = _safe_column(series)
        if safe is not None:
            changed = frame.copy() if changed is None else changed
            changed[column] = safe
    return frame if changed is None else changed


def _safe_column(series: pd.Series) -> pd.Series | None:
    """``series`` with :func:`_cell_safe` applied, or None when no cell changes. Each distinct value is
    checked once (a run's table repeats its levels, outcomes and replies over hundreds of thousands of rows)."""
    try:
        values = series.dropna().unique()
    except TypeError:  # unhashable cells (lists): cell by cell
        safe = series.map(_cell_safe)
        return safe if ((safe != series) & series.notna()).any() else None
    mapping = {}
    for value in values:
        made = _cell_safe(value)
        if made is not value and made != value:
            mapping[value] = made
    if not mapping:
        return None
    return series.map(mapping).where(series.isin(list(mapping)), series)


def write_tables(tables: Tables, out_dir: Path) -> list[Path]:
    """Write each non-empty table as CSV (spreadsheet-safe: :func:`spreadsheet_safe`); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        if table is None or table.empty:
            continue
        path = out_dir / f"{name}.csv"
        partial = out_dir / f".{name}.csv.{os.getpid()}.tmp"  # two processes finishing together: no torn file
        spreadsheet_safe(table).to_csv(partial, index=False)
        os.replace(partial, path)
        written.append(path)
    return written
