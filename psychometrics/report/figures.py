"""The report's figures: one function per figure, each taking the tables and returning a plotnine plot.

Every function takes the dict of tables (the analysis tables plus ``responses``, the long table of
answers with a ``scale`` column) and returns a ``ggplot``, or ``None`` when the data it needs are
missing or empty. Figures read only columns of the CSVs written beside the report, so everything
drawn can be recomputed from them. plotnine is imported inside each function: importing this module
costs nothing.
"""

from __future__ import annotations

import io
import warnings
from typing import Callable, Optional

import numpy as np
import pandas as pd

Tables = dict[str, pd.DataFrame]

# Factors that change how a question is asked (persona changes who answers, so it is not one of them).
METHOD_FACTORS = ("option_order", "template", "wording", "item_order", "sample")
FIGURE_WIDTH = 9.0
_MAX_HEIGHT = 30.0


def _table(tables: Tables, name: str) -> Optional[pd.DataFrame]:
    table = tables.get(name)
    return None if table is None or table.empty else table


def _panel(frame: pd.DataFrame) -> pd.Series:
    """Facet label: the inventory, plus the answer mode when the run has more than one."""
    if "mode" in frame and frame["mode"].nunique() > 1:
        return frame["inventory"].astype(str) + " (" + frame["mode"].astype(str) + ")"
    return frame["inventory"].astype(str)


def _ordered(values: pd.Series, reverse: bool = False) -> pd.Categorical:
    """A categorical in order of first appearance (plotnine would otherwise sort alphabetically)."""
    levels = list(dict.fromkeys(values.astype(str)))
    return pd.Categorical(values.astype(str), categories=levels[::-1] if reverse else levels)


def figure_height(rows: float, per_row: float, base: float) -> float:
    """Inches for a figure of ``rows`` rows (facets or bars): ``base`` + ``per_row`` each, capped."""
    return float(min(_MAX_HEIGHT, base + per_row * rows))


def figure_theme(width: float, height: float):
    """The look every report figure shares (the validity section too), at ``width`` x ``height`` inches."""
    from plotnine import element_text, theme, theme_bw

    return theme_bw(base_size=10) + theme(figure_size=(width, height), legend_position="bottom",
                                          strip_text=element_text(size=9))


def trait_profile(tables: Tables):
    """Scale means per inventory with bootstrap 95% CIs over design cells, beside the human norm means."""
    from plotnine import aes, facet_wrap, geom_point, geom_pointrange, ggplot, labs, scale_color_manual

    summary = _table(tables, "score_summary")
    if summary is None or "kind" not in summary:
        return None
    data = summary[(summary["kind"] == "scale") & summary["mean"].notna()].copy()
    if data.empty:
        return None
    data["panel"] = _panel(data)
    data["ci_low"] = data["ci_low"].fillna(data["mean"])
    data["ci_high"] = data["ci_high"].fillna(data["mean"])
    data["what"] = "model: mean and 95% bootstrap CI"
    data["scale"] = _ordered(data["scale"])
    plot = (ggplot(data, aes("scale", "mean", color="what"))
            + geom_pointrange(aes(ymin="ci_low", ymax="ci_high"), size=0.6))
    norms = _table(tables, "norms")
    if norms is not None:
        marks = norms[(norms["kind"] == "scale")].drop_duplicates(["inventory", "mode", "scale", "group"]).copy()
        marks = marks[marks["scale"].isin(data["scale"].astype(str))]
        if not marks.empty:
            marks["panel"] = _panel(marks)
            marks["what"] = "human norm mean (each norm group)"
            marks["scale"] = pd.Categorical(marks["scale"], categories=data["scale"].cat.categories)
            plot += geom_point(aes("scale", "norm_mean", color="what"), data=marks, shape="D", size=2.5,
                               fill="none", alpha=0.8)
    panels = data["panel"].nunique()
    return (plot + facet_wrap("panel", scales="free", ncol=min(panels, 2))
            + scale_color_manual(values=["#d95f02", "#1b4f72"], breaks=["human norm mean (each norm group)",
                                                                        "model: mean and 95% bootstrap CI"])
            + labs(x="scale", y="scale score", color="")
            + figure_theme(FIGURE_WIDTH, figure_height(np.ceil(panels / 2), 3.0, 1.2)))


def variance_shares(tables: Tables):
    """Share of each scale's score variance due to each design factor (ANOVA sums of squares)."""
    from plotnine import aes, coord_flip, facet_wrap, geom_col, ggplot, labs, scale_fill_brewer

    shares = _table(tables, "variance_decomposition")
    if shares is None or "kind" not in shares:
        return None
    data = shares[(shares["kind"] == "scale") & shares["share"].notna()].copy()
    if data.empty:
        return None
    data["panel"] = _panel(data)
    sources = [s for s in dict.fromkeys(data["source"]) if s != "residual"] + ["residual"]
    data["source"] = pd.Categorical(data["source"], categories=[s for s in sources if s in set(data["source"])])
    data["scale"] = _ordered(data["scale"], reverse=True)
    panels = data["panel"].nunique()
    rows = data.groupby("panel")["scale"].nunique().max()
    return (ggplot(data, aes("scale", "share", fill="source")) + geom_col(position="stack")
            + coord_flip() + facet_wrap("panel", scales="free", ncol=min(panels, 2))
            + scale_fill_brewer(type="qual", palette="Set2")
            + labs(x="scale", y="share of score variance", fill="source")
            + figure_theme(FIGURE_WIDTH, figure_height(np.ceil(panels / 2) * rows, 0.3, 1.8)))


def factor_effects(tables: Tables):
    """Standardized paired differences (d_z, 95% CI) of scale scores between levels of each method factor."""
    from plotnine import aes, facet_grid, geom_errorbarh, geom_point, geom_vline, ggplot, labs

    effects = _table(tables, "factor_effects")
    if effects is None or "effect_size_type" not in effects:
        return None
    data = effects[(effects["effect_size_type"] == "d_z") & effects["factor"].isin(METHOD_FACTORS)
                   & effects["effect_size"].notna()].copy()
    if data.empty:
        return None
    data["panel"] = _panel(data)
    data["contrast"] = (data["factor"].astype(str) + ":\n" + data["level"].astype(str) + " vs "
                        + data["reference"].astype(str))
    data["contrast"] = _ordered(data["contrast"])
    data["scale"] = _ordered(data["scale"], reverse=True)
    data["ci_low"] = data["effect_size_ci_low"].fillna(data["effect_size"])
    data["ci_high"] = data["effect_size_ci_high"].fillna(data["effect_size"])
    rows = data["contrast"].nunique() * data.groupby("panel")["scale"].nunique().max()
    return (ggplot(data, aes("effect_size", "scale")) + geom_vline(xintercept=0, linetype="dashed", color="grey")
            + geom_errorbarh(aes(xmin="ci_low", xmax="ci_high"), height=0.3, color="#1b4f72")
            + geom_point(color="#1b4f72", size=2)
            + facet_grid("contrast ~ panel", scales="free_y")
            + labs(x="d_z (level minus reference), 95% CI", y="scale")
            + figure_theme(FIGURE_WIDTH, figure_height(rows, 0.28, 1.5)))


def position_bias(tables: Tables):
    """How often each displayed position was chosen, against the rate expected without position bias."""
    from plotnine import aes, facet_grid, geom_col, geom_errorbar, ggplot, labs

    bias = _table(tables, "position_bias")
    if bias is None or "rate" not in bias:
        return None
    data = bias[bias["rate"].notna()].copy()
    if data.empty:
        return None
    data["panel"] = _panel(data)
    data["displayed position"] = _ordered((data["position"].astype(int) + 1).astype(str))
    data["scheme"] = _ordered(data["scheme"])
    panels = data["panel"].nunique()
    return (ggplot(data, aes("displayed position", "rate")) + geom_col(fill="#7fa7c9")
            + geom_errorbar(aes(ymin="expected_rate", ymax="expected_rate"), color="#d95f02", size=1, width=0.8)
            + facet_grid("panel ~ scheme")
            + labs(x="displayed position (1 = first shown)", y="share of valid answers",
                   caption="orange: rate expected without position bias")
            + figure_theme(FIGURE_WIDTH, figure_height(panels, 2.2, 1.2)))


def response_distribution(tables: Tables):
    """Counts of valid answers at each response value, per scale (probability mode: expected value, rounded)."""
    from plotnine import aes, facet_wrap, geom_col, ggplot, labs

    responses = _table(tables, "responses")
    if responses is None or "scale" not in responses:
        return None
    valid = responses[(responses["outcome"] == "valid") & responses["value"].notna()
                      & responses["scale"].notna()].copy()
    if valid.empty:
        return None
    valid["value"] = valid["value"].astype(float).round().astype(int)
    valid["panel"] = _panel(valid) + ": " + valid["scale"].astype(str)
    counts = valid.groupby(["panel", "mode", "value"], sort=False).size().reset_index(name="count")
    counts["panel"] = pd.Categorical(counts["panel"], categories=_panel_order(tables, counts["panel"]))
    counts["value"] = counts["value"].astype(str)
    panels = counts["panel"].nunique()
    ncol = min(panels, 5)
    plot = ggplot(counts, aes("value", "count"))
    plot += geom_col(aes(fill="mode"), position="dodge") if counts["mode"].nunique() > 1 else geom_col(fill="#7fa7c9")
    return (plot + facet_wrap("panel", ncol=ncol, scales="free_y")
            + labs(x="response value (semantic, before reverse keying)", y="answers")
            + figure_theme(FIGURE_WIDTH, figure_height(np.ceil(panels / ncol), 1.7, 1.0)))


def _panel_order(tables: Tables, panels: pd.Series) -> list[str]:
    """"inventory: scale" panels in the order of the score summary (the inventory's own scale order)."""
    order = []
    summary = _table(tables, "score_summary")
    if summary is not None and "kind" in summary:
        scales = summary[summary["kind"] == "scale"]
        order = list(dict.fromkeys(_panel(scales) + ": " + scales["scale"].astype(str)))
    present = set(panels)
    return [p for p in order if p in present] + [p for p in dict.fromkeys(panels) if p not in set(order)]


def item_heatmap(tables: Tables):
    """Mean response value of every item at each level of each varied method factor (persona if none)."""
    from plotnine import (aes, element_text, facet_grid, geom_tile, ggplot, labs, scale_fill_cmap,
                          scale_y_discrete, theme)

    responses = _table(tables, "responses")
    if responses is None:
        return None
    valid = responses[(responses["outcome"] == "valid") & responses["value"].notna()]
    if valid.empty:
        return None
    factors = [f for f in (*METHOD_FACTORS, "mode") if f in valid and valid[f].nunique() > 1]
    if not factors and "persona" in valid and valid["persona"].nunique() > 1:
        factors = ["persona"]
    if not factors:
        return None
    parts = []
    for factor in factors:
        means = valid.groupby(["inventory", "item_id", factor], sort=False)["value"].mean().reset_index()
        parts.append(means.rename(columns={factor: "level"}).assign(factor=factor))
    data = pd.concat(parts, ignore_index=True)
    data["level"] = _ordered(data["level"])
    data["item"] = _ordered(data["inventory"].astype(str) + ":" + data["item_id"].astype(str), reverse=True)
    items = data.groupby("inventory")["item_id"].nunique().sum()
    label_size = 7 if items <= 80 else 5 if items <= 200 else 3
    return (ggplot(data, aes("level", "item", fill="value")) + geom_tile()
            + facet_grid("inventory ~ factor", scales="free", space="free")
            + scale_fill_cmap("viridis")
            + scale_y_discrete(labels=lambda labels: [str(label).split(":", 1)[1] for label in labels])
            + labs(x="level", y="item", fill="mean value")
            + figure_theme(FIGURE_WIDTH, figure_height(items, 0.12, 1.8))
            + theme(axis_text_y=element_text(size=label_size), axis_text_x=element_text(rotation=30, ha="right")))


def mtmm_heatmap(tables: Tables):
    """Correlations of trait scores across instruments (multitrait-multimethod matrix)."""
    from plotnine import aes, element_text, geom_text, geom_tile, ggplot, labs, scale_fill_gradient2, theme

    mtmm = _table(tables, "mtmm")
    if mtmm is None or "r" not in mtmm:
        return None
    a = mtmm["method_a"].astype(str) + ": " + mtmm["trait_a"].astype(str)
    b = mtmm["method_b"].astype(str) + ": " + mtmm["trait_b"].astype(str)
    data = pd.concat([pd.DataFrame({"x": a, "y": b, "r": mtmm["r"]}), pd.DataFrame({"x": b, "y": a, "r": mtmm["r"]})],
                     ignore_index=True).dropna(subset=["r"])
    if data.empty:
        return None
    labels = sorted(set(data["x"]))
    data["x"] = pd.Categorical(data["x"], categories=labels)
    data["y"] = pd.Categorical(data["y"], categories=labels[::-1])
    data["label"] = data["r"].map(lambda r: f"{r:.2f}")
    size = 4.0 + 0.45 * len(labels)
    return (ggplot(data, aes("x", "y", fill="r")) + geom_tile(color="white")
            + geom_text(aes(label="label"), size=6 if len(labels) <= 12 else 4)
            + scale_fill_gradient2(low="#2166ac", mid="white", high="#b2182b", midpoint=0, limits=(-1, 1))
            + labs(x="", y="", fill="r")
            + figure_theme(min(size + 1.5, 14.0), min(size, 14.0))
            + theme(axis_text_x=element_text(rotation=45, ha="right")))


FigureFunction = Callable[[Tables], object]

# (key, title, caption, function), in report order.
FIGURES: list[tuple[str, str, str, FigureFunction]] = [
    ("trait_profile", "Trait profile", "Scale means over design cells with 95% bootstrap CIs, and human norm "
     "means (score_summary.csv, norms.csv).", trait_profile),
    ("response_distribution", "Response distribution", "Valid answers at each response value per scale "
     "(responses.csv).", response_distribution),
    ("variance_shares", "Sensitivity: variance shares", "Share of scale-score variance due to each design "
     "factor (variance_decomposition.csv).", variance_shares),
    ("factor_effects", "Sensitivity: paired effects", "d_z of scale scores between levels of each method factor, "
     "95% CI (factor_effects.csv).", factor_effects),
    ("position_bias", "Position bias", "Share of answers at each displayed position against the expected share "
     "(position_bias.csv).", position_bias),
    ("item_heatmap", "Item means by design level", "Mean response value of each item at each level of the varied "
     "method factors (responses.csv).", item_heatmap),
    ("mtmm", "Multitrait-multimethod matrix", "Correlations of trait scores within and across instruments "
     "(mtmm.csv).", mtmm_heatmap),
]


def png_bytes(plot, dpi: int = 96) -> bytes:
    """Render a plot to PNG bytes (headless; size from the plot's theme)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plotnine's notes about dropped missing values
        plot.save(buffer, format="png", dpi=dpi, verbose=False)
    return buffer.getvalue()
