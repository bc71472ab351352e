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
METHOD_FACTORS = ("option_order", "template", "wording", "item_order", "temperature", "sample")
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


LABEL_COLOURS = {"interpretable": "#1a7f37", "fragile": "#c26a00", "untested": "#6e7781",
                 "not measurable": "#b42318"}


def scale_names(tables: Tables) -> dict[tuple[str, str], str]:
    """(inventory, scale id) -> the scale's name, from the verdict table (scale ids are letters)."""
    verdict = _table(tables, "verdict")
    if verdict is None or "scale_name" not in verdict:
        return {}
    return {(str(i), str(s)): str(n) for i, s, n in zip(verdict["inventory"], verdict["scale"], verdict["scale_name"])}


def _named(frame: pd.DataFrame, tables: Tables, width: int = 14) -> pd.Series:
    """The scale column as names (wrapped to ``width`` characters per line) where the verdict knows them."""
    import textwrap

    names = scale_names(tables)
    wrapped: dict[tuple[str, str], str] = {}  # per scale, not per row: a run's table has a row per answer
    for key in zip(frame["inventory"].astype(str), frame["scale"].astype(str)):
        if key not in wrapped:
            wrapped[key] = textwrap.fill(names.get(key, key[1]), width, break_long_words=False)
    return pd.Series([wrapped[key] for key in zip(frame["inventory"].astype(str), frame["scale"].astype(str))],
                     index=frame.index)


def _response_range(data: pd.DataFrame) -> pd.DataFrame:
    """Two invisible points per panel at the scale's minimum and maximum: the y axis spans the full range."""
    low = data[["panel", "scale_label", "scale_min"]].rename(columns={"scale_min": "y"})
    high = data[["panel", "scale_label", "scale_max"]].rename(columns={"scale_max": "y"})
    return pd.concat([low, high], ignore_index=True)


def _facets(data: pd.DataFrame):
    """facet_wrap by panel, one panel a row (scale names need the width); y shared when every panel has one range."""
    from plotnine import facet_wrap

    panels = data["panel"].nunique()
    same = data[["scale_min", "scale_max"]].drop_duplicates().shape[0] == 1
    return facet_wrap("panel", scales="free_x" if same else "free", ncol=1), panels


def trait_profile(tables: Tables):
    """The verdict's scores per scale on the full response range: point coloured by the label, 95% interval
    over respondents, the range of the design-cell means (grey bar) and the human norm mean +- 1 SD (band)."""
    from plotnine import (aes, geom_blank, geom_crossbar, geom_errorbar, geom_linerange, geom_point, ggplot, labs,
                          scale_color_manual, scale_y_continuous)

    verdict = _table(tables, "verdict")
    if verdict is None or "score" not in verdict:
        return None
    data = verdict[verdict["score"].notna()].copy()
    if data.empty:
        return None
    data["panel"] = _panel(data)
    data["scale_label"] = _ordered(_named(data, tables))
    data["label"] = pd.Categorical(data["label"], categories=list(LABEL_COLOURS))
    facets, panels = _facets(data)
    plot = ggplot(data, aes("scale_label", "score"))
    plot += geom_blank(aes("scale_label", "y"), data=_response_range(data), inherit_aes=False)
    normed = data[data["norm_mean"].notna() & data["norm_sd"].notna()].copy()
    if not normed.empty:
        normed["band_low"] = normed["norm_mean"] - normed["norm_sd"]
        normed["band_high"] = normed["norm_mean"] + normed["norm_sd"]
        plot += geom_crossbar(aes("scale_label", "norm_mean", ymin="band_low", ymax="band_high"), data=normed,
                              inherit_aes=False, fill="#d8e6f3", color="#8fb3d9", width=0.7, size=0.4)
    moved = data[data["cell_min"].notna() & data["cell_max"].notna()]
    if not moved.empty:
        plot += geom_linerange(aes(ymin="cell_min", ymax="cell_max"), data=moved, size=7, color="#8c959f",
                               alpha=0.75)
    ci = data[data["ci_low"].notna() & data["ci_high"].notna()].copy()
    if not ci.empty:  # drawn within the response range (a t interval of few respondents can reach beyond it)
        ci["ci_low"] = ci["ci_low"].clip(lower=ci["scale_min"])
        ci["ci_high"] = ci["ci_high"].clip(upper=ci["scale_max"])
        plot += geom_errorbar(aes(ymin="ci_low", ymax="ci_high"), data=ci, width=0.25, size=0.7, color="#1c2733")
    return (plot + geom_point(aes(color="label"), size=3.5)
            + facets
            + scale_color_manual(values=LABEL_COLOURS, drop=False)
            + scale_y_continuous(expand=(0.02, 0))
            + labs(x="", y="score (full response range)", color="verdict")
            + figure_theme(FIGURE_WIDTH, figure_height(panels, 2.8, 1.0)))


def trait_profile_caption(tables: Tables) -> str:
    """What the profile shows, true of this run's data (norms, intervals and design cells only when there)."""
    verdict = _table(tables, "verdict")
    if verdict is None:
        return ""
    parts = ["Dots: the verdict's score per scale (verdict.csv), coloured by its label; the y axis spans the "
             "scale's full response range."]
    respondents = int(verdict["n_respondents"].max()) if verdict["n_respondents"].notna().any() else 0
    if verdict["ci_low"].notna().any():
        parts.append(f"Black bars: 95% t interval over respondents (persona x sample; up to {respondents}), cut at "
                     "the ends of the range.")
    else:
        parts.append(f"No interval: {respondents} respondent (persona x sample); add samples or personas for one.")
    if (verdict["n_cells"].fillna(0) >= 2).any():
        parts.append("Grey bar: lowest to highest mean over the design cells (how far the design moves the score).")
    else:
        parts.append("One design cell: how far the design moves the score is not measured.")
    if verdict["norm_mean"].notna().any():
        groups = ", ".join(dict.fromkeys(verdict["norm_group"].dropna().astype(str)))
        parts.append(f"Blue band: human norm mean \u00b1 1 SD ({groups}).")
    else:
        parts.append("No human norms exist for these scales, so no band is drawn.")
    return " ".join(parts)


PERSONA_ROLES = {"untargeted": "#1c2733", "shaped high": "#c0392b", "shaped low": "#2166ac",
                 "shapes another trait": "#b9bfc6"}


def persona_profile(tables: Tables):
    """Each persona's score per scale on the full response range, coloured by how the persona relates to the
    scale (untargeted, shaped toward high or low on this trait, or shaping another trait)."""
    from plotnine import aes, geom_blank, geom_jitter, ggplot, labs, scale_color_manual, scale_y_continuous

    profile = _table(tables, "persona_profile")
    verdict = _table(tables, "verdict")
    if profile is None or verdict is None or "score" not in profile:
        return None
    data = profile[profile["score"].notna()].copy()
    if data.empty:
        return None
    ranges = verdict[["inventory", "mode", "scale", "scale_min", "scale_max"]].drop_duplicates(["inventory", "mode",
                                                                                                  "scale"])
    data = data.merge(ranges, on=["inventory", "mode", "scale"], how="left")
    data["scale_min"] = data["scale_min"].fillna(data["score"].min())
    data["scale_max"] = data["scale_max"].fillna(data["score"].max())
    data["panel"] = _panel(data)
    data["scale_label"] = _ordered(_named(data, tables))
    data["role"] = pd.Categorical(data["role"], categories=list(PERSONA_ROLES))
    data = data.sort_values("role", ascending=False)  # untargeted drawn last, on top
    facets, panels = _facets(data)
    return (ggplot(data, aes("scale_label", "score", color="role"))
            + geom_blank(aes("scale_label", "y"), data=_response_range(data), inherit_aes=False)
            + geom_jitter(width=0.18, height=0, size=2.2, alpha=0.85, random_state=0)
            + facets
            + scale_color_manual(values=PERSONA_ROLES, drop=True)
            + scale_y_continuous(expand=(0.02, 0))
            + labs(x="", y="score (full response range)", color="persona")
            + figure_theme(FIGURE_WIDTH, figure_height(panels, 2.8, 1.0)))


def persona_profile_caption(tables: Tables) -> str:
    profile = _table(tables, "persona_profile")
    if profile is None:
        return ""
    personas = profile["persona"].nunique()
    shaped = (profile["role"] != "untargeted").any()
    what = ("red/blue: personas that set this scale's trait high/low, light grey: personas that set another "
            "trait, black: untargeted" if shaped else "every persona is untargeted (no trait set)")
    return (f"One dot per persona and scale ({personas} personas; persona_profile.csv): the persona's score, "
            f"averaged over its samples and the design cells; {what}. Points are spread sideways to stay visible.")


def option_order_flips(tables: Tables):
    """Per scale, the share of items whose answer changed with the option order alone, against the share that
    changed between samples under the same order, with the verdict's limit."""
    from plotnine import aes, coord_flip, geom_col, geom_point, ggplot, labs, scale_y_continuous

    verdict = _table(tables, "verdict")
    if verdict is None or "flip_rate" not in verdict:
        return None
    data = verdict[verdict["flip_rate"].notna()].copy()
    if data.empty:
        return None
    from plotnine import facet_wrap, scale_fill_manual

    from psychometrics.analysis.verdict import MAX_FLIP_EXCESS

    data["panel"] = _panel(data)
    data["scale_label"] = _ordered(_named(data, tables, width=30), reverse=True)
    data["position_driven"] = data["flip_excess"] >= MAX_FLIP_EXCESS - 1e-12
    data["chance"] = data["resample_flip_rate"].fillna(0.0)
    data["limit"] = data["chance"] + MAX_FLIP_EXCESS
    panels = data["panel"].nunique()
    rows = data.groupby("panel")["scale_label"].nunique().max()
    plot = ggplot(data, aes("scale_label", "flip_rate")) + geom_col(aes(fill="position_driven"), width=0.7)
    if data["resample_flip_rate"].notna().any():
        plot += geom_point(aes("scale_label", "chance"), data=data, shape="|", size=9, color="#1c2733")
    plot += geom_point(aes("scale_label", "limit"), data=data[data["limit"] <= 1], shape="|", size=9,
                       color="#b42318")

    return (plot + coord_flip() + facet_wrap("panel", scales="free_y", ncol=min(panels, 2))
            + scale_fill_manual(values={True: "#b42318", False: "#7fa7c9"}, guide=None)
            + scale_y_continuous(limits=(0, 1), labels=lambda v: [f"{x:.0%}" for x in v])
            + labs(x="", y="items whose answer changed when only the option order changed")
            + figure_theme(FIGURE_WIDTH, figure_height(np.ceil(panels / 2) * rows, 0.35, 1.4)))


def option_order_flips_caption(tables: Tables) -> str:
    from psychometrics.analysis.verdict import MAX_FLIP_EXCESS

    verdict = _table(tables, "verdict")
    chance = verdict is not None and "resample_flip_rate" in verdict and verdict["resample_flip_rate"].notna().any()
    return ("Bars: share of items whose answer changed when only the order of the options changed (verdict.csv, "
            "flip_rate; text answers: any change, option probabilities: a change of the expected value by more "
            "than 0.5)." + (" Black tick: the share that changed between samples under the same order (chance)."
                            if chance else " One sample per cell: no chance baseline (taken as 0).")
            + f" Red tick: chance + {MAX_FLIP_EXCESS:.0%}, the limit; a bar that reaches it (red) makes the "
            "verdict 'not measurable'.")


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
    data["scale"] = _ordered(_named(data, tables, width=30), reverse=True)
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
    data["scale"] = _ordered(_named(data, tables, width=30), reverse=True)
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
    # counted per scale first, then named: the names are built for a few hundred rows, not one per answer
    counts = valid.groupby(["inventory", "scale", "mode", "value"], sort=False).size().reset_index(name="count")
    counts["panel"] = _distribution_panel(counts, tables)
    counts = counts.groupby(["panel", "mode", "value"], sort=False)["count"].sum().reset_index()
    counts["panel"] = pd.Categorical(counts["panel"], categories=_panel_order(tables, counts["panel"]))
    counts["value"] = counts["value"].astype(str)
    panels = counts["panel"].nunique()
    ncol = min(panels, 5)
    plot = ggplot(counts, aes("value", "count"))
    plot += geom_col(aes(fill="mode"), position="dodge") if counts["mode"].nunique() > 1 else geom_col(fill="#7fa7c9")
    return (plot + facet_wrap("panel", ncol=ncol, scales="free_y")
            + labs(x="response value (semantic, before reverse keying)", y="answers")
            + figure_theme(FIGURE_WIDTH, figure_height(np.ceil(panels / ncol), 1.7, 1.0)))


def _distribution_panel(frame: pd.DataFrame, tables: Tables) -> pd.Series:
    """A facet strip per scale: its name (wrapped to fit a fifth of the figure), under the inventory and mode
    only when the run has more than one of them."""
    named = _named(frame, tables, width=18)
    responses = _table(tables, "responses")
    several = responses is not None and (responses["inventory"].nunique() > 1 or responses["mode"].nunique() > 1)
    return (_panel(frame) + "\n" + named) if several else named


def _panel_order(tables: Tables, panels: pd.Series) -> list[str]:
    """"inventory: scale" panels in the order of the score summary (the inventory's own scale order)."""
    order = []
    summary = _table(tables, "score_summary")
    if summary is not None and "kind" in summary:
        scales = summary[summary["kind"] == "scale"]
        order = list(dict.fromkeys(_distribution_panel(scales, tables)))
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

# (key, title, caption, function): the caption is text or a function of the tables (true of the run's data).
FIGURES: list[tuple[str, str, "str | Callable[[Tables], str]", FigureFunction]] = [
    ("trait_profile", "Profile: score per scale on the full response range", trait_profile_caption, trait_profile),
    ("persona_profile", "Profile per persona", persona_profile_caption, persona_profile),
    ("option_order_flips", "Answers that flip with the option order", option_order_flips_caption,
     option_order_flips),
    ("position_bias", "Position bias", "Share of valid answers at each displayed position (bars) against the "
     "share expected without position bias (orange), per option-order scheme (position_bias.csv).", position_bias),
    ("response_distribution", "Response distribution", "Valid answers at each response value per scale "
     "(responses.csv).", response_distribution),
    ("variance_shares", "Sensitivity: variance shares", "Share of scale-score variance due to each design "
     "factor (variance_decomposition.csv).", variance_shares),
    ("factor_effects", "Sensitivity: paired effects", "d_z of scale scores between levels of each method factor, "
     "95% CI (factor_effects.csv).", factor_effects),
    ("item_heatmap", "Item means by design level", "Mean response value of each item at each level of the varied "
     "method factors (responses.csv).", item_heatmap),
    ("mtmm", "Multitrait-multimethod matrix", "Correlations of trait scores within and across instruments "
     "(mtmm.csv).", mtmm_heatmap),
]

#: Figures shown at the top, after the verdict (the evidence); the rest go with their sections.
EVIDENCE = ("trait_profile", "persona_profile", "option_order_flips", "position_bias")


def png_bytes(plot, dpi: int = 96) -> bytes:
    """Render a plot to PNG bytes (headless; size from the plot's theme)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plotnine's notes about dropped missing values
        plot.save(buffer, format="png", dpi=dpi, verbose=False)
    return buffer.getvalue()
