"""A study's models side by side: the tables of the combined report (``STUDY/report``).

A study (:mod:`psychometrics.study`) runs one design on several models. This module reads its complete
runs and makes the tables that set the models side by side, one row per model x inventory x answer mode x
scale unless said otherwise:

``verdict``         each model's score with its interval over respondents, the human norm, how far the
                    design moves it, and its label (:func:`model_verdicts`)
``fragility``       how much the measurement moves each model's score: the range of its cell means (in
                    points and human SDs), option-order flips, and the share of its score variance that
                    the method factors (option order, template, wording, item order) explain
``reliability``     within-cell reliability per model: the median over design cells of the run's
                    reliability rows (alpha, omega), and their range
``model_variance``  the scores of all models stacked, with **model** as a factor entered first beside
                    the design factors (:func:`model_variance`): what share of the score variance, and how
                    many score points (variance components), is which model answered, and what share is
                    the design

The unit of analysis is :mod:`psychometrics.analysis.units`'s: a respondent is persona x sample, a design
cell is option order x template x wording x item order, the answer mode stratifies everything. Runs are
labelled by model (:func:`psychometrics.analysis.compare.run_labels`). Only runs the study recorded as
complete are read (a run with failed requests is incomplete until the study is re-run).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from psychometrics.errors import PsytestError

if TYPE_CHECKING:
    from psychometrics.run.owner import Run

#: The design factors that change how a question is asked (not who answers: persona is the respondent).
METHOD_FACTORS = ("option_order", "template", "wording", "item_order")
#: The key columns of every per-model table.
MODEL_KEYS = ["model", "inventory", "mode", "scale"]


@dataclass
class StudyRuns:
    """A study directory's complete runs: ``questionnaire`` and ``behavior`` map each model's label to its
    run directory (study order); ``models`` maps a label to the model string; ``record`` is
    ``study.json``; ``skipped`` names the runs left out (incomplete) and why."""

    root: Path
    record: dict
    questionnaire: dict[str, Path]
    behavior: dict[str, Path]
    models: dict[str, str]
    skipped: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return list(self.questionnaire)


def is_study_directory(path: Path) -> bool:
    """Whether ``path`` is a directory with psytest's ``study.json``."""
    from psychometrics.study.runner import MANIFEST

    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def study_runs(root: Path) -> StudyRuns:
    """The complete runs of the study in ``root`` (from its ``study.json``); one-line error for a directory
    that is not a study, or a study with no complete questionnaire run."""
    from psychometrics import limits
    from psychometrics.analysis.compare import run_labels
    from psychometrics.study.runner import MANIFEST, MANIFEST_KIND

    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise PsytestError(f"{root}: not a study directory (no {MANIFEST}); give the directory psytest study wrote")
    record = limits.read_json(path, "study manifest")
    if not isinstance(record, dict) or record.get("kind") != MANIFEST_KIND or not isinstance(record.get("runs"), list):
        raise PsytestError(f"{path}: not a psytest study manifest; give the directory psytest study wrote")
    complete: dict[str, dict[str, Path]] = {"questionnaire": {}, "behavior": {}}
    skipped = []
    for entry in record["runs"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str) or \
                entry.get("kind") not in complete or not isinstance(entry.get("run_dir"), str):
            raise PsytestError(f"{path}: runs: an entry is not a run record; give the directory psytest study wrote")
        run_dir = (root / entry["run_dir"]).resolve()
        if root.resolve() not in run_dir.parents:  # the manifest names its own runs, nothing outside
            raise PsytestError(f"{path}: runs: '{entry['run_dir']}' is outside the study directory")
        if entry.get("status") != "complete":
            skipped.append(f"{entry['model']} ({entry['kind']}): {entry.get('status')}")
            continue
        complete[entry["kind"]][entry["model"]] = root / entry["run_dir"]
    models = list(complete["questionnaire"])
    if not models:
        raise PsytestError(f"{root}: no complete questionnaire run in the study; run psytest study again to "
                           "complete them")
    labels = run_labels(models, [complete["questionnaire"][m] for m in models])
    by_model = dict(zip(models, labels))
    return StudyRuns(root, record, {by_model[m]: complete["questionnaire"][m] for m in models},
                     {by_model[m]: d for m, d in complete["behavior"].items() if m in by_model},
                     {label: model for model, label in by_model.items()}, skipped)


def open_runs(runs: StudyRuns) -> dict[str, "Run"]:
    """Each questionnaire run opened (:func:`psychometrics.run.owner.open_run`), by label."""
    from psychometrics.run.owner import open_run

    return {label: open_run(path) for label, path in runs.questionnaire.items()}


def stacked_scores(opened: dict[str, "Run"]) -> pd.DataFrame:
    """Every model's scale and facet scores per respondent x design cell, stacked, with ``model`` first."""
    frames = [run.scores().assign(model=label) for label, run in opened.items()]
    stacked = pd.concat(frames, ignore_index=True)
    return stacked[["model", *[c for c in stacked.columns if c != "model"]]]


def model_variance(stacked: pd.DataFrame) -> pd.DataFrame:
    """The variance decomposition of the stacked scale scores with ``model`` entered first.

    :func:`psychometrics.statistics.design_effects.variance_decomposition` with ``extra_factors =
    ["model"]``: per inventory x mode x scale, a main-effects model score ~ model + option order + template
    + persona + wording + item order (those varied). ``share`` is each source's sequential sum of squares
    over the total (eta squared); with the same balanced design for every model the factors are orthogonal
    and the shares do not depend on the order. ``variance_component`` (balanced designs) is in squared
    score points; ``component_sd`` is its square root, the typical shift in score points a source makes. The
    residual holds the interactions, among them model x design: models that the design moves differently.
    """
    from psychometrics.statistics.design_effects import variance_decomposition

    table = variance_decomposition(stacked[stacked["kind"] == "scale"], extra_factors=["model"])
    if "component_sd" not in table.columns:  # the component as an SD, in score points, if not given already
        at = list(table.columns).index("component_share") + 1
        table.insert(at, "component_sd", table["variance_component"].map(
            lambda v: math.sqrt(v) if pd.notna(v) and v >= 0 else math.nan))
    return table


def model_verdicts(opened: dict[str, "Run"]) -> pd.DataFrame:
    """Each model's verdict table (:func:`psychometrics.analysis.verdict.verdict_table`) stacked, ``model``
    first."""
    frames = [_verdict_of(run).assign(model=label) for label, run in opened.items()]
    table = pd.concat(frames, ignore_index=True)
    return table[["model", *[c for c in table.columns if c != "model"]]]


def _verdict_of(run: "Run") -> pd.DataFrame:
    from psychometrics.analysis.verdict import verdict_table

    return verdict_table(run.scores(), run.answers().responses, run.inventories, run.persona_set)


def fragility(opened: dict[str, "Run"], verdict: pd.DataFrame) -> pd.DataFrame:
    """Per model x inventory x mode x scale: how far the design moves the score (from the verdict: the
    range of the cell means in points and in human SDs, the option-order flip rate) and ``method_share``,
    the share of the model's own score variance (over respondents x cells) that the method factors explain
    (sequential sums of squares of option order, template, wording and item order, entered after persona,
    so a persona's trait shaping is not counted as the method's)."""
    from psychometrics.conditions import FACTORS
    from psychometrics.statistics.design_effects import variance_decomposition
    from psychometrics.statistics.frames import varied

    keep = ["model", "inventory", "mode", "scale", "label", "movement_points", "movement_share_sd", "flip_rate",
            "n_cells"]
    base = verdict[[c for c in keep if c in verdict.columns]].copy()
    shares = []
    for label, run in opened.items():
        scores = run.scores()
        scores = scores[scores["kind"] == "scale"]
        if scores.empty:
            continue
        factors = [f for f in ("persona", *METHOD_FACTORS) if f in FACTORS and varied(scores, f)]
        table = variance_decomposition(scores, factors)
        method = table[table["source"].isin(METHOD_FACTORS)]
        summed = method.groupby(["inventory", "mode", "scale"], sort=False)["share"].sum(min_count=1)
        shares.append(summed.rename("method_share").reset_index().assign(model=label))
    if shares:
        base = base.merge(pd.concat(shares, ignore_index=True), on=MODEL_KEYS, how="left")
    else:
        base["method_share"] = math.nan
    return base.reset_index(drop=True)


#: The ``scale`` of a reliability row that speaks for every scale of an inventory x mode (none computed).
ALL_SCALES = "(all scales)"


def reliability_by_model(runs: StudyRuns) -> pd.DataFrame:
    """Per model x inventory x mode x scale: the run's reliability rows (across respondents, within design
    cells: :mod:`psychometrics.analysis.tables`) summarised over the cells: ``n_cells`` with an alpha, the
    median, smallest and largest alpha, the median omega total, and the run's note when no cell had one."""
    from psychometrics.analysis.tables import analyze_run

    rows = []
    for label, path in runs.questionnaire.items():
        table = analyze_run(path, structure=False)["reliability"]
        if table is None or table.empty:
            continue
        table = table[table["kind"] == "scale"] if "kind" in table.columns else table
        if "scale" not in table.columns:  # no design cell had enough respondents: one sentence per inventory x mode
            table = table.assign(scale=math.nan)
        for (inventory, mode, scale), part in table.groupby(["inventory", "mode", "scale"], sort=False, dropna=False):
            scale = ALL_SCALES if pd.isna(scale) else scale
            alpha = pd.to_numeric(part.get("alpha", pd.Series(dtype=float)), errors="coerce").dropna()
            omega = pd.to_numeric(part.get("omega_total", pd.Series(dtype=float)), errors="coerce").dropna()
            notes = [n for n in part.get("note", pd.Series(dtype=object)).dropna().astype(str).unique()]
            rows.append({"model": label, "inventory": inventory, "mode": mode, "scale": scale,
                         "n_cells": int(alpha.size), "alpha_median": float(alpha.median()) if alpha.size else math.nan,
                         "alpha_min": float(alpha.min()) if alpha.size else math.nan,
                         "alpha_max": float(alpha.max()) if alpha.size else math.nan,
                         "omega_total_median": float(omega.median()) if omega.size else math.nan,
                         "unit": part["unit"].iloc[0] if "unit" in part.columns else None,
                         "note": None if alpha.size else ("; ".join(notes[:2]) or "no reliability computed")})
    return pd.DataFrame(rows, columns=[*MODEL_KEYS, "n_cells", "alpha_median", "alpha_min", "alpha_max",
                                       "omega_total_median", "unit", "note"])


def runs_table(runs: StudyRuns, opened: dict[str, "Run"]) -> pd.DataFrame:
    """One row per model: its label, model string, run directory (relative to the study) and behaviour run."""
    rows = []
    for label, path in runs.questionnaire.items():
        behavior = runs.behavior.get(label)
        rows.append({"model": label, "model_string": runs.models[label],
                     "run_dir": path.relative_to(runs.root).as_posix(),
                     "behavior_run_dir": behavior.relative_to(runs.root).as_posix() if behavior else None,
                     "inventories": ", ".join(inv.id for inv in opened[label].inventories)})
    return pd.DataFrame(rows)


def study_summary(runs: StudyRuns, tables: dict[str, pd.DataFrame]) -> dict:
    """``summary.json``'s content: the models, the verdict grid (label and score per model x scale), the
    model's share of the variance per scale, the validity headline, and the runs left out."""
    from psychometrics.analysis.units import UNIT

    def records(frame: pd.DataFrame | None, columns: list[str]) -> list[dict]:
        if frame is None or frame.empty:
            return []
        return json.loads(frame[[c for c in columns if c in frame.columns]].to_json(orient="records"))

    variance = tables.get("model_variance")
    model_rows = variance[variance["source"] == "model"] if variance is not None and not variance.empty else None
    return {
        "kind": "psytest-study-report",
        "study_sha256": runs.record.get("study_sha256"),
        "models": [{"model": label, "model_string": runs.models[label]} for label in runs.labels],
        "study_models": [m.get("model") for m in runs.record.get("models") or [] if isinstance(m, dict)],
        "unit": UNIT,
        "verdict": records(tables.get("verdict"), [*MODEL_KEYS, "score", "ci_low", "ci_high", "norm_mean", "norm_sd",
                                                    "movement_points", "movement_share_sd", "flip_rate", "label"]),
        "model_share": records(model_rows, ["inventory", "mode", "scale", "share", "component_share", "component_sd",
                                            "p_value", "balanced"]),
        "validity_mixed": records(tables.get("validity_mixed"), ["trait", "task", "n", "n_models", "within",
                                                                 "within_p", "between", "between_p", "note"]),
        "left_out": runs.skipped,
    }
