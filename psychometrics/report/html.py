"""The report's HTML: which tables it shows, how numbers are formatted, and rendering the template.

The template (``templates/report.html.j2``) is rendered by jinja2 with autoescaping on for every
value, so model replies and any other text from a run are shown as text, never as markup. Nothing is
marked safe: the figures are base64 PNG text in ``data:`` URIs, plain ASCII that escaping leaves as it
is. A Content-Security-Policy in the page also forbids scripts and every request but data: images.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from psychometrics.conditions import CONDITION_FIELDS

TEMPLATES = Path(__file__).parent / "templates"
MAX_ROWS = 60
REPLY_CHARS = 400


@dataclass
class TableView:
    """A table as text cells, with the CSV it came from and a CSS class per column."""

    title: str
    source: str
    columns: list[str]
    rows: list[list[str]]
    note: Optional[str] = None
    classes: list[str] = field(default_factory=list)  # per column: "num", "text", "note" or "reply"


@dataclass
class Section:
    id: str
    title: str
    intro: str
    figures: list[dict] = field(default_factory=list)
    tables: list[TableView] = field(default_factory=list)
    #: a sentence and tables shown before the intro (the validity section leads with its conclusions)
    lead: str = ""
    lead_tables: list[TableView] = field(default_factory=list)


def format_cell(value: object) -> str:
    """A cell as text: floats to three decimals (three significant digits when very small or large)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x.is_integer() and abs(x) < 1e6:
            return str(int(x))
        if abs(x) >= 1e4 or abs(x) < 1e-3:
            return f"{x:.3g}"
        return f"{x:.3f}"
    return str(value)


def table_view(title: str, source: str, frame: Optional[pd.DataFrame], columns: Optional[list[str]] = None,
               max_rows: int = MAX_ROWS, note: Optional[str] = None) -> Optional[TableView]:
    """The first ``max_rows`` rows of ``frame`` (only ``columns`` that exist), or None when it is empty."""
    if frame is None or frame.empty:
        return None
    shown = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    rows = [[format_cell(v) for v in record] for record in frame[shown].head(max_rows).itertuples(index=False)]
    if len(frame) > max_rows:
        note = (note + "; " if note else "") + f"only the first rows are shown (all are in {source})"
    return TableView(title, source, shown, rows, note, [_css_class(frame[c]) for c in shown])


def _css_class(column: pd.Series) -> str:
    if column.name in ("note", "raw_reply", "error", "reason"):
        return "reply" if column.name == "raw_reply" else "note"
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    return "num" if numeric else "text"


# ---------------------------------------------------------------------------------------------------
# what each section shows: (table, title, columns or None for all, row filter/ordering or None)

Select = Optional[Callable[[pd.DataFrame], pd.DataFrame]]


def largest_effects(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """The ``rows`` paired effects of method factors that move a scale score most, in points (``mean_diff``):
    d_z is undefined where the differences do not vary (one pair, or every pair the same), the points are not."""
    from psychometrics.report.figures import METHOD_FACTORS

    paired = frame[frame["factor"].isin(METHOD_FACTORS) & frame["mean_diff"].notna()]
    if "kind" in paired:
        paired = paired[paired["kind"] == "scale"]
    order = paired["mean_diff"].abs().sort_values(ascending=False, kind="stable").index
    return paired.reindex(order).head(rows)


def _largest_effects(frame: pd.DataFrame) -> pd.DataFrame:
    return largest_effects(frame, 25)


SECTIONS: list[tuple[str, str, str, list[str], list[tuple[str, str, Optional[list[str]], Select]]]] = [
    ("answers", "Answers", "How often the model gave a usable answer, and which values it chose.",
     ["response_distribution"],
     [("response_styles", "Outcome and response-style rates (all answers)",
       ["inventory", "mode", "n", "errors", "valid_rate", "refusal_rate", "out_of_range_rate", "multiple_rate",
        "unparseable_rate", "truncated_rate", "invalid_rate", "midpoint_rate", "extreme_rate", "note"],
       lambda t: t[t["factor"] == "all"])]),
    ("scores", "Scores", "Scale scores over respondents (persona x sample, each averaged over its design cells), "
     "and where they fall among people.",
     [],
     [("score_summary", "Score summary (95% t interval over respondents)",
       ["inventory", "mode", "kind", "scale", "mean", "sd", "n_respondents", "n_cells", "sd_over_cells", "ci_low",
        "ci_high", "note"], None),
      ("norms", "Against human norms",
       ["inventory", "mode", "scale", "group", "norm_mean", "norm_sd", "norm_n", "model_mean", "z", "t_score",
        "percentile", "effect", "effect_size", "ci_low", "ci_high", "note"], None)]),
    ("reliability", "Reliability", "Internal consistency per scale, and agreement across repeated samples: "
     "computed across the respondents (persona x sample) of each design cell, never across design cells.",
     [],
     [("reliability", "Internal consistency",
       ["inventory", "mode", "option_order", "template", "wording", "item_order", "scale", "n_items",
        "n_respondents", "alpha", "alpha_ci_low", "alpha_ci_high", "std_alpha", "lambda6", "omega_total",
        "omega_hierarchical", "split_half_mean", "note"], None),
      ("retest", "Test-retest across samples (ICC(2,1), personas as targets)",
       ["inventory", "mode", "option_order", "template", "wording", "item_order", "scale", "n_targets",
        "n_samples", "icc2_1", "ci_low", "ci_high", "note"], None)]),
    ("structure", "Factor structure", "Whether the answers have the instrument's structure, and agree across "
     "instruments.", ["mtmm"],
     [("efa_fit", "Exploratory factor analysis", None, None),
      ("cfa_fit", "Confirmatory factor analysis",
       ["inventory", "mode", "option_order", "template", "wording", "item_order", "n_respondents", "chisq", "df",
        "pvalue", "cfi", "tli", "rmsea", "rmsea_ci_lower", "rmsea_ci_upper", "srmr", "converged", "note"], None),
      ("mtmm_summary", "Campbell-Fiske criteria", None, None)]),
    ("sensitivity", "Sensitivity to the design", "How much the scores depend on how the questions were asked.",
     ["variance_shares", "factor_effects", "item_heatmap"],
     [("variance_decomposition", "Variance decomposition",
       ["inventory", "mode", "scale", "source", "df", "share", "statistic", "p_value", "component_share",
        "component_sd", "note"],
       None),
      ("factor_effects", "Largest paired effects of method factors (ranked by the difference in points)",
       ["inventory", "mode", "scale", "factor", "reference", "level", "n", "mean_diff", "ci_low", "ci_high",
        "p_holm", "effect_size", "effect_size_ci_low", "effect_size_ci_high"], _largest_effects),
      ("option_order_flips", "Answer flips when only the option order changes",
       ["inventory", "mode", "option_orders", "units", "flip_rate", "large_flip_rate", "resample_flip_rate",
        "mean_abs_diff", "note"], None),
      ("position_bias", "Position bias (chi-square against the expected shares)",
       ["inventory", "mode", "scheme", "n", "chi_square", "df", "p_value", "first_rate", "last_rate", "note"],
       lambda t: t.drop_duplicates(["inventory", "mode", "scheme"])),
      ("acquiescence", "Acquiescence",
       ["inventory", "mode", "scales_used", "mean_raw_minus_midpoint", "balanced_acquiescence", "ci_low", "ci_high",
        "p_value", "agree_both_rate", "disagree_both_rate", "note"], None),
      ("response_styles", "Response styles by design level",
       ["inventory", "mode", "factor", "level", "n", "valid_rate", "midpoint_rate", "extreme_rate", "refusal_rate",
        "invalid_rate"], lambda t: t[t["factor"] != "all"])]),
]


def build_sections(tables: dict[str, pd.DataFrame], figures: dict[str, dict]) -> list[Section]:
    """Sections with their figures (those drawn) and table views (those not empty)."""
    sections = []
    for section_id, title, intro, figure_keys, specs in SECTIONS:
        section = Section(section_id, title, intro, [figures[k] for k in figure_keys if k in figures])
        for name, table_title, columns, select in specs:
            frame = tables.get(name)
            if frame is not None and not frame.empty and select is not None:
                frame = select(frame)
            view = table_view(table_title, f"{name}.csv", frame, columns)
            if view is not None:
                section.tables.append(view)
        if section.figures or section.tables:
            sections.append(section)
    return sections


def reply_sample(responses: pd.DataFrame, invalid: int = 30, valid: int = 10, seed: int = 0) -> Optional[TableView]:
    """Invalid replies (up to ``invalid``) and a seeded sample of valid ones, as text (escaped when rendered)."""
    if responses is None or responses.empty:
        return None
    bad = responses[responses["outcome"] != "valid"].head(invalid)
    good = responses[responses["outcome"] == "valid"]
    good = good.sample(n=min(valid, len(good)), random_state=seed) if len(good) else good
    sample = pd.concat([bad, good]).copy()
    sample["raw_reply"] = sample["raw_reply"].map(_clip)
    varied = [c for c in CONDITION_FIELDS if c in responses and responses[c].nunique(dropna=False) > 1]
    columns = ["inventory", "item_id", *varied, "outcome", "value", "raw_reply"]
    if sample["error"].notna().any():
        columns.append("error")
    note = ("invalid replies first (the earliest, if there are many), then valid ones drawn at random; "
            "long replies are cut here (full text in responses.csv)")
    return table_view("Model replies (a sample)", "responses.csv", sample, columns, max_rows=invalid + valid, note=note)


def _clip(text: object) -> object:
    if isinstance(text, str) and len(text) > REPLY_CHARS:
        return text[:REPLY_CHARS] + "…"
    return text


def figure_entry(key: str, title: str, caption: str, png: Optional[bytes], problem: Optional[str] = None) -> dict:
    """A figure for the template: its PNG as base64 text (ASCII only), or the reason it is missing."""
    data = base64.b64encode(png).decode("ascii") if png else None
    return {"key": key, "title": title, "caption": caption, "png_base64": data, "problem": problem}


#: What a page without a verdict (the validity page) leaves out.
PAGE_DEFAULTS: dict[str, object] = {"what_was_run": "", "verdict": None, "evidence": []}


def render_html(context: dict) -> str:
    """Render the report template with autoescaping on for everything (``PAGE_DEFAULTS`` for what is not given)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(**{**PAGE_DEFAULTS, **context})


# ---------------------------------------------------------------------------------------------------
# the verdict at the top


LABEL_CLASSES = {"interpretable": "ok", "fragile": "fragile", "untested": "untested", "not measurable": "bad"}


def _num(value: object, digits: int = 2) -> Optional[str]:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else f"{x:.{digits}f}"


def _percent(value: object) -> str:
    shown = _num(value, 6)
    return f"{float(shown):.0%}" if shown is not None else "–"


MODE_WORDS = {"text": "text answers", "probs": "option probabilities"}


def verdict_view(verdict: Optional[pd.DataFrame], model: str) -> Optional[dict]:
    """The verdict table for the template, grouped by inventory and answer mode (the group's heading names the
    norm group): per scale the score with its interval, the norm's mean and SD with z, the design's movement in
    points and as a share of the human SD (or of the range without norms), the valid and flip shares, and the
    label with its reason. A cell is a list of lines, each kept whole. Numbers are rounded to two decimals;
    all of them are in verdict.csv."""
    if verdict is None or verdict.empty:
        return None
    from psychometrics.analysis.verdict import LABEL_RULES

    groups: dict[tuple, dict] = {}
    for r in verdict.to_dict("records"):
        key = (r["inventory"], r["mode"])
        if key not in groups:
            norm_group = r["norm_group"] if isinstance(r.get("norm_group"), str) else None
            groups[key] = {"title": f"{r['inventory']}, {MODE_WORDS.get(str(r['mode']), str(r['mode']))}",
                           "norms": f"human norms: {norm_group}" if norm_group else "no human norms", "rows": []}
        groups[key]["rows"].append(_verdict_row(r))
    rows = [row for group in groups.values() for row in group["rows"]]
    return {"model": model, "norms": bool(verdict["norm_mean"].notna().any()), "groups": list(groups.values()),
            "rules": [{"label": label, "rule": rule, "css": LABEL_CLASSES[label]} for label, rule in LABEL_RULES],
            "respondents": "; ".join(dict.fromkeys(verdict["respondents"].astype(str))),
            "counts": {label: sum(1 for row in rows if row["label"] == label) for label, _ in LABEL_RULES}}


def _verdict_row(r: dict) -> dict:
    score = _num(r.get("score"))
    low, high = _num(r.get("ci_low")), _num(r.get("ci_high"))
    if score is None:
        score_lines = ["no score"]
    elif low is not None:
        score_lines = [score, f"[{low}, {high}]"]
    else:
        score_lines = [score, f"no CI ({int(r['n_respondents'])} respondent)"]
    norm_mean, norm_sd, z = _num(r.get("norm_mean")), _num(r.get("norm_sd")), _num(r.get("z"))
    moved = _num(r.get("movement_points"))
    if moved is None:
        moved_lines = ["not varied" if (r.get("n_cells") or 0) < 2 else "–"]
    else:
        share = (f"{_num(r.get('movement_share_sd'))} SD" if norm_sd is not None
                 else f"{_percent(r.get('movement_share_range'))} of range")
        moved_lines = [f"{moved} ({share})", f"cells {_num(r.get('cell_min'))}–{_num(r.get('cell_max'))}"]
    return {"scale": str(r["scale_name"]), "scale_id": f"{r['scale']}, {_num(r['scale_min'], 0)}–{_num(r['scale_max'], 0)}",
            "score": score_lines, "norm": [f"{norm_mean} ± {norm_sd}"] if norm_mean is not None else ["none"],
            "z": [z] if z is not None else [], "moved": moved_lines,
            "valid": [_percent(r.get("valid_share"))], "flips": [_percent(r.get("flip_rate"))],
            "label": str(r["label"]), "css": LABEL_CLASSES.get(str(r["label"]), "untested"), "reason": str(r["reason"])}
