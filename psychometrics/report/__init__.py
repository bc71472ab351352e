"""Reports of a run: tidy CSVs, one self-contained HTML page and a JSON summary.

``build_report(RUN)`` writes to ``RUN/report`` (or ``out_dir``):

``*.csv``          every analysis table (:func:`psychometrics.analysis.tables.analyze_run`), ``responses.csv``
                   (one row per answer: condition columns, item, scale, raw reply, outcome, value) and
                   ``run_info.csv`` (model and design settings)
``verdict.csv``    per inventory x mode x scale: the score over respondents, its interval, the human norm,
                   the design's movement and a label (:mod:`psychometrics.analysis.verdict`);
                   ``persona_profile.csv`` each persona's score per scale (runs with personas)
``report.html``    the verdict first (with the rules that give its labels), then the figures that carry the
                   evidence (profile, per-persona profile, option-order flips, position bias), then the
                   tables, the raw replies and the run's settings; figures are base64 PNG; no external
                   resources, no scripts, model text escaped
``summary.json``   model, inventories, ``verdict`` and ``verdict_rules``, scale means with CIs, norm
                   percentiles, reliability headline, largest design-factor effects and outcome rates

Every number in the HTML is in one of the CSVs. The run is only read, never changed.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import pandas as pd

if TYPE_CHECKING:
    from psychometrics.run.manifest import QuestionnaireManifest
    from psychometrics.run.owner import Run

__all__ = ["ReportPaths", "build_report", "responses_table"]

REPORT_DIR = "report"

#: The ``unit`` of ``responses.csv`` and ``run_info.csv`` (the analysis tables carry theirs).
ANSWER_UNIT = "one stored answer"
RUN_UNIT = "the run"


@dataclass(frozen=True)
class ReportPaths:
    """What :func:`build_report` wrote."""

    out_dir: Path
    html: Path
    summary: Path
    csvs: list[Path]


def build_report(run_dir: Path, out_dir: Optional[Path] = None, *, dpi: int = 96,
                 behavior_runs: Optional[list[Path]] = None) -> ReportPaths:
    """Analyse ``run_dir`` and write its CSVs, ``report.html`` and ``summary.json`` into ``out_dir``.

    With ``behavior_runs`` (behaviour runs of the same respondents), the report gains the section
    "Self-report vs behaviour" and the validity tables (:mod:`psychometrics.validity.statistics`)."""
    from psychometrics.analysis.tables import analyze_run
    from psychometrics.run.outputs import DerivedSet, claim_directory
    from psychometrics.run.owner import open_run

    run_dir = Path(run_dir)
    default = run_dir / REPORT_DIR
    out_dir = Path(out_dir) if out_dir is not None else default
    owned = out_dir.resolve() == default.resolve()
    run = open_run(run_dir)  # a behaviour run, or no run, is named before the output is considered
    claim_directory(out_dir, "report", owned=owned, create=False)  # refused before the work, not after
    inputs: dict = {}
    tables = analyze_run(run_dir, inputs=inputs, run=run)  # the same Run: the store is read once
    tables["responses"] = responses_table(run)
    tables.update(verdict_tables(run))
    manifest = run.questionnaire
    run_info = run_info_table(manifest, tables["responses"])
    from psychometrics.cost.actual import cost_rows, stored_run_cost

    cost = stored_run_cost(run_dir, manifest.model)
    served = served_rows(run, manifest)
    if served:
        run_info = pd.concat([run_info, pd.DataFrame(served, columns=["key", "value"]).assign(unit=RUN_UNIT)],
                             ignore_index=True)
    if cost_rows(cost):
        extra = pd.DataFrame(cost_rows(cost), columns=["key", "value"]).assign(unit=RUN_UNIT)
        run_info = pd.concat([run_info, extra], ignore_index=True)
    validity = {}
    if behavior_runs:
        from psychometrics.validity.tables import compute_validity

        validity = compute_validity([run_dir], [Path(b) for b in behavior_runs], options=("run", "--behavior"))
        validity = {("validity_notes" if name == "notes" else name): frame for name, frame in validity.items()}
        inputs["behavior_runs"] = [{"run": str(b), **open_run(b, expect="behavior").inputs()} for b in behavior_runs]
    with DerivedSet(out_dir, "report", inputs=inputs, owned=owned,
                    options={"behavior_runs": [str(b) for b in behavior_runs or []], "dpi": dpi}) as report:
        return _write_report(report, run_dir, manifest, tables, validity, run_info, dpi, cost)


def _write_report(report, run_dir: Path, manifest: "QuestionnaireManifest", tables: dict, validity: dict, run_info: pd.DataFrame,
                  dpi: int, cost: Optional[dict] = None) -> "ReportPaths":
    """The report's files, in the set ``report`` (:class:`psychometrics.run.outputs.DerivedSet`): everything is
    computed first (figures take seconds), then the CSVs, the page and the summary are written."""
    from psychometrics.report import figures as figs
    from psychometrics.report.html import build_sections, figure_entry, render_html, reply_sample, verdict_view

    out_dir = report.directory
    all_tables = {**tables, **validity, "run_info": run_info}
    csv_names = [f"{name}.csv" for name, table in all_tables.items() if table is not None and not table.empty]

    drawn = {}
    for key, title, caption, function in figs.FIGURES:
        try:
            plot = function(tables)
            if plot is not None:
                text = caption(tables) if callable(caption) else caption
                drawn[key] = figure_entry(key, title, text, figs.png_bytes(plot, dpi=dpi))
        except Exception as exc:  # one broken figure must not cost the whole report; the page says why
            drawn[key] = figure_entry(key, title, "", None, f"{type(exc).__name__}: {exc}")

    summary = summarize(manifest, tables)
    if validity:
        from psychometrics.validity.tables import ValidityResult

        renamed = {("notes" if k == "validity_notes" else k): v for k, v in validity.items()}
        summary["validity"] = ValidityResult(out_dir, renamed).headline()
    summary["files"] = sorted(csv_names + ["report.html", "summary.json"])
    if cost is not None:
        summary["cost"] = cost  # what the answers cost, from the providers' usage (psychometrics.cost.actual)
    context = {
        "title": f"psytest report: {manifest.model}",
        "what_was_run": what_was_run(manifest, tables),
        "verdict": verdict_view(tables.get("verdict"), manifest.model),
        "evidence": [drawn[key] for key in figs.EVIDENCE if key in drawn],
        "run_dir": str(run_dir),
        "run_info": list(run_info[["key", "value"]].itertuples(index=False, name=None)),
        "sections": build_sections(tables, drawn) + _validity_sections(validity, dpi),
        "replies": reply_sample(tables["responses"]),
        "files": summary["files"],
        "generator": f"psytest {manifest.packages.get('psytest', '')}".strip(),
    }
    page = render_html(context)
    csvs = report.write_tables(all_tables)
    html_path = report.write_text("report.html", page)
    summary_path = report.write_text("summary.json",
                                     json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return ReportPaths(out_dir, html_path, summary_path, csvs)


def _validity_sections(validity: dict, dpi: int) -> list:
    if not validity:
        return []
    from psychometrics.report.validity_section import validity_section

    section = validity_section({("notes" if k == "validity_notes" else k): v for k, v in validity.items()}, dpi=dpi)
    return [section] if section else []


def verdict_tables(run: "Run") -> dict[str, pd.DataFrame]:
    """``verdict`` and ``persona_profile`` (:mod:`psychometrics.analysis.verdict`) of a run: from its scores per
    respondent x design cell and its answers."""
    from psychometrics.analysis.verdict import persona_profile, verdict_table

    scores = run.scores()
    return {"verdict": verdict_table(scores, run.answers().responses, run.inventories, run.persona_set),
            "persona_profile": persona_profile(scores, run.inventories, run.persona_set)}


def what_was_run(manifest: "QuestionnaireManifest", tables: dict[str, pd.DataFrame]) -> str:
    """One line: the inventories, the answer modes, the design cells (what varied), the respondents, the answers."""
    from psychometrics.analysis.units import CELL_FIELDS

    responses = tables.get("responses")
    if responses is None or responses.empty:
        return f"{', '.join(e.id for e in manifest.inventories)}: no answers stored yet"
    items = responses.groupby("inventory", sort=False)["item_id"].nunique()
    inventories = ", ".join(f"{inv} ({n} items)" for inv, n in items.items())
    modes = " and ".join({"text": "text answers", "probs": "option probabilities"}.get(m, str(m))
                         for m in dict.fromkeys(responses["mode"]))
    fields = [f for f in CELL_FIELDS if f in responses]
    cells = int(responses.groupby(fields, dropna=False).ngroups) if fields else 1
    factors = " x ".join(f"{n} {f.replace('_', ' ')}s" for f in fields
                         if (n := responses[f].nunique(dropna=False)) > 1)
    design = f"{cells} design cell{'s' if cells != 1 else ''}" + (f" ({factors})" if factors else "")
    personas = list(responses["persona"].dropna().unique()) if "persona" in responses else []
    samples = responses["sample"].nunique(dropna=False) if "sample" in responses else 1
    sample_words = f"{samples} sample{'s' if samples != 1 else ''}"
    if not personas or personas == ["none"]:
        who = f"{samples} respondent{'s' if samples != 1 else ''} (no persona, {sample_words})"
    else:
        respondents = len(personas) * samples
        who = (f"{respondents} respondent{'s' if respondents != 1 else ''} ({len(personas)} persona"
               f"{'s' if len(personas) != 1 else ''} x {sample_words})")
    valid = (responses["outcome"] == "valid").mean()
    return f"{inventories}; {modes}; {design}; {who}; {len(responses):,} answers, {valid:.0%} valid."


def _inventories(manifest: "QuestionnaireManifest"):
    from psychometrics.inventories.library import resolve_inventory

    return [resolve_inventory(manifest.inventory_source(entry.id)) for entry in manifest.inventories]


def responses_table(run: "Run") -> pd.DataFrame:
    """Every stored answer, long: request, inventory, item, its scale, condition columns, outcome, value, reply
    (as the analysis reads them: :meth:`psychometrics.run.owner.Run.answers`)."""
    frame = run.answers().responses.copy()
    scale_of: dict[tuple[str, str], str] = {}
    for inventory in run.inventories:
        for scale in inventory.scales:
            for item in scale.items:
                scale_of.setdefault((inventory.id, item), scale.id)
    scales = [scale_of.get(key) for key in zip(frame["inventory"], frame["item_id"])]
    frame.insert(frame.columns.get_loc("item_id") + 1, "scale", scales)
    return frame.assign(unit=ANSWER_UNIT)


def served_rows(run, manifest: "QuestionnaireManifest") -> list[tuple[str, str]]:
    """Where the run was sent and what answered: the endpoints the manifest records, and the models and
    fingerprints the servers reported with their answers (an endpoint may change the model behind one
    name mid-run; this is where it shows). Empty for runs without either (local models, older stores)."""
    rows = []
    if manifest.endpoints:
        rows.append(("endpoints", ", ".join(f"{e.url} (from {e.first_used})" for e in manifest.endpoints)))
    with run.store() as store:
        columns = {row[1] for row in store.conn.execute("PRAGMA table_info(responses)")}
        if {"served_model", "system_fingerprint"} <= columns:
            counts = store.conn.execute(
                "SELECT served_model, system_fingerprint, COUNT(DISTINCT request_id) FROM responses "
                "WHERE served_model IS NOT NULL OR system_fingerprint IS NOT NULL "
                "GROUP BY served_model, system_fingerprint ORDER BY 3 DESC").fetchall()
            if counts:
                rows.append(("answered by", "; ".join(
                    f"{name or 'unnamed'}" + (f" [{fingerprint}]" if fingerprint else "") + f": {n:,} requests"
                    for name, fingerprint, n in counts[:10]) + ("; ..." if len(counts) > 10 else "")))
    return rows


def run_info_table(manifest: "QuestionnaireManifest", responses: pd.DataFrame) -> pd.DataFrame:
    """Model and design settings as key/value rows (the report's header)."""
    design = manifest.design.model_dump(mode="json")
    rows = [
        ("model", manifest.model),
        ("backend settings", json.dumps(manifest.backend_params, sort_keys=True)),
        ("inventories", ", ".join(entry.id for entry in manifest.inventories)),
        ("personas", manifest.personas.id if manifest.personas else "none"),
        *((f"design: {key}", json.dumps(value) if isinstance(value, (list, dict)) else value)
          for key, value in design.items()),
        ("requests planned", manifest.requests_planned),
        ("answers stored", len(responses)),
        ("run created", manifest.created_at),
        ("psytest", manifest.packages.get("psytest")),
        ("report created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
    ]
    frame = pd.DataFrame([(key, "" if value is None else str(value)) for key, value in rows], columns=["key", "value"])
    return frame.assign(unit=RUN_UNIT)


# ---------------------------------------------------------------------------------------------------
# summary.json


def _records(frame: Optional[pd.DataFrame], columns: list[str]) -> list[dict]:
    """Rows as JSON-ready dicts (NaN becomes null), only the columns that exist."""
    if frame is None or frame.empty:
        return []
    return json.loads(frame[[c for c in columns if c in frame.columns]].to_json(orient="records"))


def summarize(manifest: "QuestionnaireManifest", tables: dict[str, pd.DataFrame]) -> dict:
    """The headline numbers of a run, for machines (CI drift checks, comparisons); ``unit`` says what a
    respondent and a design cell are and which statistics are computed over which."""
    from psychometrics.analysis.units import UNIT
    from psychometrics.analysis.verdict import summary_fields
    from psychometrics.report.html import largest_effects

    inventories = {inv.id: inv for inv in _inventories(manifest)}
    summary_table = tables.get("score_summary")
    scales = pd.DataFrame()
    if summary_table is not None and not summary_table.empty:
        scales = summary_table[summary_table["kind"] == "scale"].copy()
        traits = {(i, s.id): s.trait for i, inv in inventories.items() for s in inv.scales}
        scales["trait"] = [traits.get(key) for key in zip(scales["inventory"], scales["scale"])]
    norms = tables.get("norms")
    if norms is not None and not norms.empty:
        norms = norms[norms["kind"] == "scale"]
    effects = tables.get("factor_effects")
    largest = []
    if effects is not None and not effects.empty and "mean_diff" in effects:
        paired = largest_effects(effects, 10)
        d_z = paired["effect_size_type"] == "d_z"
        paired = paired.assign(d_z=paired["effect_size"].where(d_z), d_z_ci_low=paired["effect_size_ci_low"].where(d_z),
                               d_z_ci_high=paired["effect_size_ci_high"].where(d_z))
        largest = _records(paired, ["inventory", "mode", "scale", "factor", "reference", "level", "n", "mean_diff",
                                    "ci_low", "ci_high", "d_z", "d_z_ci_low", "d_z_ci_high", "p_holm", "note"])
    styles = tables.get("response_styles")
    if styles is not None and not styles.empty:
        styles = styles[styles["factor"] == "all"]
    return {
        "model": manifest.model,
        "backend_params": manifest.backend_params,
        "created_at": manifest.created_at,
        "unit": UNIT,
        "inventories": [{"id": entry.id, "name": getattr(inventories.get(entry.id), "name", None),
                         "items": len(inventories[entry.id].items) if entry.id in inventories else None,
                         "content_hash": entry.content_hash} for entry in manifest.inventories],
        "personas": manifest.personas.model_dump() if manifest.personas else None,
        "design": manifest.design.model_dump(mode="json"),
        **summary_fields(tables.get("verdict", pd.DataFrame())),
        "scales": _records(scales, ["inventory", "mode", "scale", "trait", "mean", "sd", "n", "n_respondents",
                                    "n_cells", "sd_over_cells", "ci_low", "ci_high", "note"]),
        "norms": _records(norms, ["inventory", "mode", "scale", "group", "z", "t_score", "percentile", "effect",
                                  "effect_size", "ci_low", "ci_high"]),
        "reliability": reliability_headline(tables),
        "largest_method_effects": largest,
        "variance_shares": variance_headline(tables.get("variance_decomposition")),
        "option_order_flips": _records(tables.get("option_order_flips"),
                                       ["inventory", "mode", "flip_rate", "resample_flip_rate", "large_flip_rate"]),
        "outcome_rates": _records(styles, ["inventory", "mode", "n", "errors", "valid_rate", "refusal_rate",
                                           "out_of_range_rate", "multiple_rate", "unparseable_rate", "truncated_rate", "invalid_rate",
                                           "midpoint_rate", "extreme_rate"]),
    }


def reliability_headline(tables: dict[str, pd.DataFrame]) -> list[dict]:
    """Per inventory and mode, over the scales x design cells computed (each across the respondents of one
    cell): median and lowest alpha, median omega total, median test-retest ICC, the number of cells; or,
    where none was computed, the sentence that says what to add (``note``)."""
    reliability = tables.get("reliability")
    if reliability is None or reliability.empty:
        return []
    from psychometrics.analysis.units import CELL_FIELDS

    retest = tables.get("retest")
    rows = []
    for (inventory, mode), group in reliability.groupby(["inventory", "mode"], sort=False, dropna=False):
        alpha = pd.to_numeric(group["alpha"], errors="coerce").dropna() if "alpha" in group else pd.Series(dtype=float)
        computed = group[group["scale"].notna()] if "scale" in group else group.iloc[:0]
        cells = [c for c in CELL_FIELDS if c in computed.columns]
        row = {"inventory": inventory, "mode": mode,
               "scales": int(computed["scale"].nunique()) if len(computed) else 0,
               "design_cells": int(len(computed[cells].drop_duplicates())) if cells and len(computed) else 0,
               "alpha_median": float(alpha.median()) if len(alpha) else None,
               "alpha_min": float(alpha.min()) if len(alpha) else None,
               "alpha_min_scale": str(group.loc[alpha.idxmin(), "scale"]) if len(alpha) else None,
               "omega_total_median": _median(group.get("omega_total"))}
        if retest is not None and not retest.empty and "icc2_1" in retest:
            part = retest[(retest["inventory"] == inventory) & (retest["mode"] == mode)]
            row["retest_icc2_1_median"] = _median(part["icc2_1"])
        if not len(computed):
            notes = group["note"].dropna() if "note" in group else pd.Series(dtype=object)
            row["note"] = str(notes.iloc[0]) if len(notes) else None
        rows.append(row)
    return rows


def variance_headline(shares: Optional[pd.DataFrame]) -> list[dict]:
    """Per inventory, mode and source: the mean share of scale-score variance over scales and, in score
    points, the mean SD of the variance component (``component_sd``, balanced designs only)."""
    if shares is None or shares.empty:
        return []
    scale_rows = shares[shares["kind"] == "scale"] if "kind" in shares else shares
    columns = [c for c in ("share", "component_sd") if c in scale_rows]
    mean = scale_rows.groupby(["inventory", "mode", "source"], sort=False)[columns].mean().reset_index()
    return _records(mean.rename(columns={"share": "mean_share", "component_sd": "mean_component_sd"}),
                    ["inventory", "mode", "source", "mean_share", "mean_component_sd"])


def _median(values: Optional[pd.Series]) -> Optional[float]:
    if values is None:
        return None
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.median()) if len(values) else None
