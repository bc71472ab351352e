"""The study report's figures: the models side by side, legible for one model or twenty.

Each function takes the study report's tables (:mod:`psychometrics.analysis.across_models`) and returns a
plotnine plot, or None when its table is empty. Models are rows (a y axis grows by a fixed height per
model, so twenty models are as legible as three), scales are panels or columns, and score axes span the
scale's whole possible range with the human norm band (mean +- 1 SD) drawn where an inventory has norms.
Model names are drawn as plain text: :func:`plot_labels` shortens long names (keeping them distinct) and
escapes what matplotlib would read as markup (``$`` starts math text).
"""

from __future__ import annotations

import math
import re
from typing import Optional

import pandas as pd

from psychometrics.report.figures import figure_theme

Tables = dict[str, pd.DataFrame]

#: Longest model name drawn in a figure (the full name is in the CSVs and the page's tables).
LABEL_CHARS = 36
#: Inches per model row, and the most panels side by side.
ROW_INCHES = 0.22
PANEL_COLUMNS = 4
WIDTH = 10.0
LABEL_COLOURS = {"interpretable": "#1a9850", "untested": "#8c8c8c", "fragile": "#f28e2b",
                 "not measurable": "#d73027", "unlabelled": "#4e79a7"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plot_labels(models: list[str]) -> dict[str, str]:
    """Model label -> the text drawn for it: control characters shown as ``?``, ``$`` escaped (matplotlib
    math text), longer than :data:`LABEL_CHARS` cut with an ellipsis; cut names that coincide get ``#k``."""
    shown: dict[str, str] = {}
    used: set[str] = set()
    for model in dict.fromkeys(models):
        text = _CONTROL.sub("?", str(model))
        if len(text) > LABEL_CHARS:
            text = text[:LABEL_CHARS - 1] + "…"
        candidate, k = text, 2
        while candidate in used:
            candidate, k = f"{text} #{k}", k + 1
        used.add(candidate)
        shown[model] = candidate.replace("$", r"\$")
    return shown


def _models_axis(frame: pd.DataFrame, order: list[str]) -> pd.Categorical:
    """The model column as drawn, first model at the top."""
    labels = plot_labels(order)
    return pd.Categorical(frame["model"].map(labels), categories=[labels[m] for m in order][::-1])


def _panels(frame: pd.DataFrame) -> pd.Series:
    """``inventory: scale`` (with the mode when the study has two)."""
    panel = frame["inventory"].astype(str) + ": " + frame["scale"].astype(str)
    if frame["mode"].nunique() > 1:
        panel += " (" + frame["mode"].astype(str) + ")"
    return panel.str.replace("$", r"\$", regex=False)


def _ordered(values: pd.Series) -> pd.Categorical:
    return pd.Categorical(values, categories=list(dict.fromkeys(values)))


def _height(models: int, panel_rows: int = 1, base: float = 1.6) -> float:
    return float(min(40.0, base + panel_rows * (0.45 + ROW_INCHES * models)))


def profiles(tables: Tables):
    """Every model's score per scale (95% CI over respondents), on the scale's full range, over the human
    norm band; the colour is the verdict's label."""
    from plotnine import (aes, facet_wrap, geom_blank, geom_point, geom_rect, geom_segment, geom_vline, ggplot, labs,
                          scale_color_manual)

    verdict = tables.get("verdict")
    if verdict is None or verdict.empty or verdict["score"].notna().sum() == 0:
        return None
    order = list(dict.fromkeys(verdict["model"]))
    data = verdict.copy()
    data["panel"] = _ordered(_panels(data))
    data["y"] = _models_axis(data, order)
    # an interval drawn past the scale's end would claim scores nobody can have: clipped at the range
    data["ci_low"] = data["ci_low"].fillna(data["score"]).clip(lower=data["scale_min"])
    data["ci_high"] = data["ci_high"].fillna(data["score"]).clip(upper=data["scale_max"])
    data["label"] = data["label"].fillna("unlabelled")
    panels = data["panel"].cat.categories
    ranges = data.drop_duplicates("panel")[["panel", "scale_min", "scale_max", "norm_mean", "norm_sd"]]
    bounds = pd.concat([ranges.assign(x=ranges["scale_min"]), ranges.assign(x=ranges["scale_max"])])
    bounds = bounds[bounds["x"].notna()]
    bounds["y"] = pd.Categorical([data["y"].cat.categories[0]] * len(bounds), categories=data["y"].cat.categories)
    plot = ggplot(data)
    norms = ranges[ranges["norm_mean"].notna() & ranges["norm_sd"].notna()].copy()
    if not norms.empty:
        norms["low"], norms["high"] = norms["norm_mean"] - norms["norm_sd"], norms["norm_mean"] + norms["norm_sd"]
        plot += geom_rect(aes(xmin="low", xmax="high"), ymin=-math.inf, ymax=math.inf, data=norms,
                          fill="#c6dbef", alpha=0.6, inherit_aes=False)
        plot += geom_vline(aes(xintercept="norm_mean"), data=norms, color="#6baed6", linetype="dashed", size=0.4)
    labels = [label for label in LABEL_COLOURS if label in set(data["label"])]
    columns = min(len(panels), PANEL_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    return (plot
            + geom_blank(aes("x", "y"), data=bounds)
            + geom_segment(aes(x="ci_low", xend="ci_high", y="y", yend="y", color="label"), size=0.7)
            + geom_point(aes("score", "y", color="label"), size=1.8)
            + facet_wrap("panel", scales="free_x", ncol=columns)
            + scale_color_manual(values=[LABEL_COLOURS[label] for label in labels], breaks=labels, limits=labels)
            + labs(x="score (axis: the scale's full range; band: human norm mean +- 1 SD)", y="", color="verdict")
            + figure_theme(WIDTH, _height(len(order), rows)))


def _heatmap(frame: pd.DataFrame, value: str, title: str, digits: int, low: str, high: str,
             limits: Optional[tuple[float, float]] = None, text: Optional[str] = None):
    """Models (rows) x scales (columns), filled by ``value`` and labelled with ``text`` (default ``value``)."""
    from plotnine import aes, geom_text, geom_tile, ggplot, labs, scale_fill_gradient, theme, element_text

    data = frame.copy()
    order = list(dict.fromkeys(data["model"]))
    data["y"] = _models_axis(data, order)
    data["x"] = _ordered(_panels(data))
    data["text"] = data[text or value].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    columns = data["x"].nunique()
    width = min(WIDTH + 4, max(6.0, 3.0 + 0.55 * columns))
    return (ggplot(data, aes("x", "y", fill=value)) + geom_tile(color="white")
            + geom_text(aes(label="text"), size=6.5)
            + scale_fill_gradient(low=low, high=high, limits=limits, na_value="#f0f0f0")
            + labs(x="", y="", fill=title)
            + figure_theme(width, _height(len(order), 1, 2.2))
            + theme(axis_text_x=element_text(rotation=60, ha="right")))


def fragility_map(tables: Tables):
    """How far the design moves each model's score: the range of its cell means, in score points."""
    table = tables.get("fragility")
    if table is None or table.empty or table["movement_points"].notna().sum() == 0:
        return None
    return _heatmap(table, "movement_points", "movement\n(points)", 2, "#ffffff", "#d7301f")


def reliability_map(tables: Tables):
    """Median within-cell alpha per model x scale (grey: not computed)."""
    table = tables.get("reliability")
    if table is None or table.empty or table["alpha_median"].notna().sum() == 0:
        return None
    data = table.assign(alpha_fill=table["alpha_median"].clip(lower=0.0))  # the colour clipped, the number as is
    return _heatmap(data, "alpha_fill", "median alpha\n(colour: negative as 0)", 2, "#fff7ec", "#2b8cbe", (0.0, 1.0),
                    text="alpha_median")


def model_variance_bars(tables: Tables):
    """Share of each scale's score variance that is the model, each design factor and the residual."""
    from plotnine import aes, coord_flip, geom_col, ggplot, labs, position_stack, scale_fill_brewer

    table = tables.get("model_variance")
    if table is None or table.empty:
        return None
    data = table[table["share"].notna()].copy()
    if data.empty:
        return None
    sources = ["model", *[s for s in dict.fromkeys(data["source"]) if s not in ("model", "residual")], "residual"]
    data["source"] = pd.Categorical(data["source"], categories=[s for s in sources if s in set(data["source"])])
    panels = _panels(data)
    data["panel"] = pd.Categorical(panels, categories=list(dict.fromkeys(panels))[::-1])
    return (ggplot(data, aes("panel", "share", fill="source")) + geom_col(position=position_stack(reverse=True))
            + coord_flip() + scale_fill_brewer(type="qual", palette="Set2")
            + labs(x="", y="share of score variance (sequential sums of squares)", fill="source")
            + figure_theme(WIDTH, min(30.0, 1.8 + 0.28 * data["panel"].nunique())))


#: (key, title, caption, function) of every figure, in page order, by section.
FIGURES = {
    "profiles": ("profiles", "Profiles of all models",
                 "Each model's score on each scale with its 95% interval over respondents (persona x sample); the "
                 "axis spans the scale's possible range; the band is the human norm (mean +- 1 SD) where the "
                 "inventory has norms; the colour is the verdict.", profiles),
    "fragility": ("fragility", "How far the design moves each model's score",
                  "Range of the model's cell means (option order x template x wording x item order), in score "
                  "points; in fragility.csv also in human SDs, with the option-order flip rate and the method "
                  "factors' share of the model's score variance.", fragility_map),
    "reliability": ("reliability", "Within-cell reliability per model",
                    "Median over design cells of Cronbach's alpha across respondents within a cell; grey: not "
                    "computed (too few respondents, or items without variance; reliability.csv says why).",
                    reliability_map),
    "model_variance": ("model_variance", "Model vs design: shares of the score variance",
                       "All models' scores stacked, model entered first, then the design factors; the residual "
                       "holds the interactions (a design factor moving models differently) and sampling noise.",
                       model_variance_bars),
}
