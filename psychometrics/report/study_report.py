"""The combined report of a study (``STUDY/report``): the models side by side, verdict first.

``build_study_report(STUDY)`` reads the study's complete runs and writes, as one derived set
(:class:`psychometrics.run.outputs.DerivedSet`, kind ``study-report``, with every run's fingerprint as its
inputs, so ``psytest reproduce STUDY`` can re-derive and compare it):

``verdict.csv``         model x inventory x mode x scale: score, 95% CI over respondents, norm, movement,
                        label (:func:`psychometrics.analysis.across_models.model_verdicts`)
``fragility.csv``       how far the design moves each model's score
``reliability.csv``     within-cell reliability per model (median over cells)
``model_variance.csv``  the variance decomposition with model as a factor
``validity_*.csv`` ...  self-report vs behaviour within and between models, when the study had tasks
                        (the tables ``psytest validity`` writes, but ``run_info.csv``)
``models.csv``          each model's label, model string and run directories
``report.html``         the page: the verdict grid, profiles, fragility, reliability, the model-factor
                        variance, self-report vs behaviour; self-contained, model text escaped
``summary.json``        the headline numbers (:func:`psychometrics.analysis.across_models.study_summary`)

Nothing in the page is not in a CSV, and the runs are only read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import pandas as pd

from psychometrics.report import ReportPaths

__all__ = ["STUDY_REPORT_KIND", "build_study_report", "study_report_tables"]

STUDY_REPORT_KIND = "study-report"
#: The study report's own tables; the validity tables (when the study had tasks) keep the names
#: :func:`psychometrics.validity.tables.compute_validity` gives them (and ``psytest validity`` writes).
OWN_TABLES = ("models", "verdict", "fragility", "reliability", "model_variance")


def study_report_tables(study_dir: Path, inputs: Optional[dict] = None) -> dict[str, pd.DataFrame]:
    """Every table of the study report, computed from the study's runs; ``inputs``, if given, receives
    what they were computed from (each run's fingerprint and the study file's sha256)."""
    from psychometrics.analysis import across_models as am
    from psychometrics.run.owner import open_run

    runs = am.study_runs(Path(study_dir))
    opened = am.open_runs(runs)
    stacked = am.stacked_scores(opened)
    verdict = am.model_verdicts(opened)
    tables: dict[str, pd.DataFrame] = {
        "models": am.runs_table(runs, opened),
        "verdict": verdict,
        "fragility": am.fragility(opened, verdict),
        "reliability": am.reliability_by_model(runs),
        "model_variance": am.model_variance(stacked),
    }
    behavior = {label: path for label, path in runs.behavior.items() if label in runs.questionnaire}
    if behavior:
        from psychometrics.errors import PsytestError
        from psychometrics.validity.tables import compute_validity

        from psychometrics.run.persona_match import PersonaSetMismatch

        try:
            validity = compute_validity([runs.questionnaire[label] for label in behavior], list(behavior.values()),
                                        options=("self-report run", "behaviour run"))
        except PersonaSetMismatch:
            raise  # respondents that are not the same people: refused, not a footnote
        except PsytestError as exc:  # e.g. too few respondents: the report says why there is no section
            validity = {"notes": pd.DataFrame([{"table": "validity", "note": str(exc)}])}
        tables.update({name: frame for name, frame in validity.items() if name != "run_info" and name not in OWN_TABLES})
    if inputs is not None:
        inputs["study_sha256"] = runs.record.get("study_sha256")
        inputs["runs"] = [{"model": label, "run": path.relative_to(runs.root).as_posix(), **opened[label].inputs()}
                          for label, path in runs.questionnaire.items()]
        inputs["behavior_runs"] = [{"model": label, "run": path.relative_to(runs.root).as_posix(),
                                    **open_run(path, expect="behavior").inputs()} for label, path in behavior.items()]
    tables["_summary"] = pd.DataFrame([{"summary": json.dumps(am.study_summary(runs, tables), allow_nan=False,
                                                              default=_jsonable)}])
    return tables


def _jsonable(value):
    return None if value is None else str(value)


def build_study_report(study_dir: Path, out_dir: Optional[Path] = None, *, dpi: int = 96) -> ReportPaths:
    """Compute the study report's tables and write them, ``report.html`` and ``summary.json`` into
    ``out_dir`` (default ``STUDY/report``), as one derived set (module docstring)."""
    from psychometrics.analysis.across_models import is_study_directory
    from psychometrics.errors import PsytestError
    from psychometrics.run.outputs import DerivedSet, claim_directory
    from psychometrics.study.runner import LAYOUT

    study_dir = Path(study_dir)
    if not is_study_directory(study_dir):
        raise PsytestError(f"{study_dir}: not a study directory (no study.json); give the directory psytest study "
                           "wrote")
    default = study_dir / LAYOUT["report"]
    out_dir = Path(out_dir) if out_dir is not None else default
    owned = out_dir.resolve() == default.resolve()
    claim_directory(out_dir, STUDY_REPORT_KIND, owned=owned, create=False)  # refused before the work
    inputs: dict = {}
    tables = study_report_tables(study_dir, inputs)
    summary = json.loads(tables.pop("_summary")["summary"].iloc[0])
    page, csv_names = render_study_page(study_dir, tables, summary, dpi)
    with DerivedSet(out_dir, STUDY_REPORT_KIND, inputs=inputs, owned=owned, options={"dpi": dpi}) as report:
        csvs = report.write_tables(tables)
        html_path = report.write_text("report.html", page)
        summary["files"] = sorted(csv_names + ["report.html", "summary.json"])
        summary_path = report.write_text("summary.json",
                                         json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return ReportPaths(out_dir, html_path, summary_path, csvs)


# ---------------------------------------------------------------------------------------------------
# the page


def verdict_grids(verdict: pd.DataFrame) -> list[dict]:
    """One grid per inventory for the template, models x scales: ``inventory``, ``columns`` (scale id, with
    the answer mode when the study has two, and its name) and ``rows`` (the models that took the inventory,
    each with one cell per column: score to two decimals, label and its CSS class, the reason as a tooltip);
    ``labels``: the labels shown, for the key; ``reasons``: model, scale, label and reason of every cell
    that is not interpretable, printed under the grid (a tooltip alone is lost on paper and screenshots)."""
    from psychometrics.report.html import format_cell

    if verdict is None or verdict.empty:
        return []
    two_modes = verdict["mode"].nunique() > 1
    grids = []
    for inventory, part in verdict.groupby("inventory", sort=False):
        keys = list(dict.fromkeys(zip(part["scale"], part["mode"])))
        names = dict(zip(zip(part["scale"], part["mode"]), part.get("scale_name", part["scale"])))
        columns = [{"scale": scale + (f" ({mode})" if two_modes else ""), "name": str(names.get((scale, mode)) or "")}
                   for scale, mode in keys]
        cells = {(r["model"], r["scale"], r["mode"]): r for r in part.to_dict(orient="records")}
        rows = []
        for model in dict.fromkeys(part["model"]):
            row = []
            for scale, mode in keys:
                record = cells.get((model, scale, mode))
                label = str(record.get("label") or "unlabelled") if record else "absent"
                value = record.get("score") if record else None
                score = f"{value:.2f}" if isinstance(value, float) and math.isfinite(value) else format_cell(value)
                row.append({"score": score, "label": label, "css": "v-" + label.replace(" ", "-"),
                            "reason": str(record.get("reason") or "") if record else "not administered"})
            rows.append({"model": model, "cells": row})
        labels = list(dict.fromkeys(c["label"] for r in rows for c in r["cells"]))
        reasons = [{"model": r["model"], "scale": column["name"] or column["scale"], "label": c["label"],
                    "reason": c["reason"]}
                   for r in rows for column, c in zip(columns, r["cells"]) if c["label"] != "interpretable"]
        grids.append({"inventory": str(inventory), "columns": columns, "rows": rows, "labels": labels,
                      "reasons": reasons})
    return grids


def _title(summary: dict) -> str:
    shown, planned = len(summary["models"]), len(summary.get("study_models") or [])
    return f"psytest study: {shown} of {planned} models" if planned > shown else f"psytest study: {shown} models"


def _label_rules() -> list[tuple[str, str]]:
    from psychometrics.analysis.verdict import LABEL_RULES

    return list(LABEL_RULES)


def render_study_page(study_dir: Path, tables: dict[str, pd.DataFrame], summary: dict, dpi: int) -> tuple[str, list[str]]:
    """(``report.html``, the CSV names it cites)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from psychometrics import __version__
    from psychometrics.report import study_figures as figs
    from psychometrics.report.figures import png_bytes
    from psychometrics.report.html import TEMPLATES, Section, figure_entry, table_view

    drawn: dict[str, dict] = {}
    for name, (key, title, caption, function) in figs.FIGURES.items():
        try:
            plot = function(tables)
            if plot is not None:
                drawn[name] = figure_entry(key, title, caption, png_bytes(plot, dpi=dpi))
        except Exception as exc:  # one broken figure must not cost the report; the page says why
            drawn[name] = figure_entry(key, title, caption, None, f"{type(exc).__name__}: {exc}")

    def figures(*names: str) -> list[dict]:
        return [drawn[n] for n in names if n in drawn]

    sections = [
        Section("profiles", "Profiles", "All models on every scale, on the same full-range axes.", figures("profiles")),
        Section("fragility", "Fragility", "How much of each model's score is the measurement design.",
                figures("fragility"), [v for v in [table_view("Movement per model and scale", "fragility.csv",
                                                              tables.get("fragility"))] if v]),
        Section("reliability", "Reliability", "Across respondents (persona x sample) within each design cell, "
                "summarised over the cells.", figures("reliability"),
                [v for v in [table_view("Within-cell reliability", "reliability.csv", tables.get("reliability"))] if v]),
        Section("model-variance", "Model vs design", "Which model answered, against how it was asked: the shares "
                "of the score variance and the variance components in squared score points (component_sd: their "
                "square root).", figures("model_variance"),
                [v for v in [table_view("Variance decomposition with model as a factor", "model_variance.csv",
                                        tables.get("model_variance"),
                                        ["inventory", "mode", "scale", "source", "df", "share", "variance_component",
                                         "component_sd", "component_share", "p_value", "n", "balanced", "note"],
                                        max_rows=200)] if v]),
    ]
    validity = {name: frame for name, frame in tables.items() if name not in OWN_TABLES}
    if validity:
        from psychometrics.report.validity_section import validity_section

        section = validity_section(validity, dpi=dpi)
        if section is not None:
            mixed = table_view("Within and between models", "validity_mixed.csv", tables.get("validity_mixed"))
            if mixed is not None and all(view.source != "validity_mixed.csv" for view in section.tables):
                section.tables.insert(0, mixed)
            sections.append(section)
    csv_names = [f"{name}.csv" for name, table in tables.items() if table is not None and not table.empty]
    grids = verdict_grids(tables.get("verdict"))
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    page = env.get_template("study_report.html.j2").render(
        title=_title(summary),
        study_dir=str(study_dir), study_sha256=str(summary.get("study_sha256") or ""),
        grids=grids, labels=list(dict.fromkeys(label for grid in grids for label in grid["labels"])),
        rules=_label_rules(),
        models=table_view("Models and their runs", "models.csv", tables.get("models"), max_rows=10_000),
        sections=sections, left_out=summary.get("left_out") or [],
        files=sorted(csv_names + ["report.html", "summary.json"]), generator=f"psytest {__version__}")
    return page, csv_names
