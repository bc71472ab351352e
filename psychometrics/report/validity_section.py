"""The report section "Self-report vs behaviour": figures and tables from :mod:`psychometrics.validity.statistics`.

Used by ``psytest validity`` (a page of its own) and by ``psytest report RUN --behavior BRUN`` (one more
section of the run's report). Every number shown is in a CSV written beside the page.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from psychometrics.report.html import Section, figure_entry, table_view

INTRO = (
    "Does what the model says about itself predict what it does? Each respondent is one model playing one "
    "persona; its self-report (questionnaire scale scores) is correlated across respondents with its "
    "behaviour on each task (mean over variants and samples; unreadable replies are missing, not zero). "
    "Only respondents with both measures enter, and every respondent's behaviour averages the same variants. "
    "A declared pair (the task's own trait) is confirmed when r has the declared sign and its "
    "Benjamini-Hochberg adjusted p is below .05; the dissociation index is the share of declared pairs "
    "not confirmed. Not confirmed can mean too few respondents: beside it stand the share of declared pairs "
    "with the declared sign (.5 by chance), their mean r in the declared direction and their mean power to "
    "detect r = .3. Intervals are 95% BCa bootstrap CIs over respondents (Fisher's z interval beside them in "
    "the CSV), none where the bootstrap shows r resting on a few respondents. Corrected r divides by the "
    "square root of both reliabilities, computed on the same respondents, and only when both reach the floor "
    "of .5; its interval is Fisher's interval of r divided by the same factor (Hunter & Schmidt), never clipped. "
    "A persona prompt moves the self-report and the behaviour at once, so r across personas can be the "
    "persona's doing: each declared pair is also tested beyond the persona's target levels on every trait (and "
    "beyond the model, pooled): the partial r and the R^2 the self-report adds (F test; BH over the declared "
    "pairs). A pair whose trait's self-report the persona did not move is not interpretable, and no pair is "
    "said not to predict unless an equivalence test (TOST) shows |r| below the smallest effect of interest. "
    "The persona-effect ratio d_behaviour / d_self-report says how far the persona moves what the model does "
    "compared with what it says."
)
#: The intro of a page computed from a scores file (``psytest validity --scores``).
SCORES_INTRO = (
    "Does what the model says about itself predict what it does? Each respondent is one model x respondent of "
    "the scores file, its rows (samples) averaged; for every declared pair of the pairs file, the self-report "
    "column is correlated across respondents with the behaviour column. Only respondents with both enter; "
    "scores from a file carry no item data or task variants, so no correction for unreliability is made. "
    "A declared pair is confirmed when r has the declared sign and its Benjamini-Hochberg adjusted p is below "
    ".05; the dissociation index is the share of declared pairs not confirmed. Not confirmed can mean too few "
    "respondents: beside it stand the share of declared pairs with the declared sign (.5 by chance), their mean "
    "r in the declared direction and their mean power to detect r = .3. Intervals are 95% BCa bootstrap CIs over "
    "respondents (Fisher's z interval beside them in the CSV), none where the bootstrap shows r resting on a few "
    "respondents. With several models the pooled rows are within-model (both scores centred within model); the "
    "between-model association (model means) is the 'between' coefficient of the mixed model."
)


POOLED_FIRST = "pooled"


def lead(tables: dict[str, pd.DataFrame]) -> Optional[str]:
    """The headline sentence: how many declared pairs got each conclusion, over the pooled respondents when
    there are several models (else the one model); the per-model counts are in :func:`conclusion_counts`."""
    from psychometrics.validity.incremental import CONCLUSIONS

    incremental = tables.get("validity_incremental")
    if incremental is None or incremental.empty:
        return None
    scopes = list(dict.fromkeys(incremental["scope"]))
    scope = POOLED_FIRST if POOLED_FIRST in scopes else scopes[0]
    part = incremental[incremental["scope"] == scope]
    counts = part["conclusion"].value_counts()
    said = ", ".join(f"{int(counts[label])} {label}" for label in CONCLUSIONS if counts.get(label, 0))
    where = "pooled over the models (within-model)" if scope == POOLED_FIRST else scope
    more = f"; each of the {len(scopes) - 1} models alone in the next table" if len(scopes) > 1 else ""
    return f"{where}: of {len(part)} declared pairs, {said}{more}."


def conclusion_counts(tables: dict[str, pd.DataFrame]):
    """Per scope (pooled first), how many declared pairs got each conclusion: one column per conclusion
    that occurs."""
    from psychometrics.validity.incremental import CONCLUSIONS

    incremental = tables.get("validity_incremental")
    if incremental is None or incremental.empty or incremental["scope"].nunique() < 2:
        return None
    wide = pd.crosstab(incremental["scope"], incremental["conclusion"])
    wide = wide[[c for c in CONCLUSIONS if c in wide.columns]]
    wide.insert(0, "declared", wide.sum(axis=1))
    frame = _pooled_first(wide.reset_index())
    return table_view("Conclusions per scope (counts of declared pairs)", "validity_incremental.csv", frame)


def conclusions_view(tables: dict[str, pd.DataFrame], equivalence_bound: float = 0.2):
    """The per-pair conclusions first (pooled rows first), with the rules that give them under the table;
    columns without a value in any row (partial r without persona targets) are left out."""
    from psychometrics.validity.incremental import conclusion_rules

    frame = tables.get("validity_incremental")
    if frame is not None and not frame.empty:
        frame = _pooled_first(frame.sort_values(["trait", "task"], kind="stable"))
        frame = frame[[c for c in frame.columns if frame[c].notna().any()]]
    rules = "; ".join(f"{i}. {label}: {rule}" for i, (label, rule) in enumerate(conclusion_rules(equivalence_bound), 1))
    return table_view("Conclusions: declared pairs, beyond the persona's target levels", "validity_incremental.csv",
                      frame, ["trait", "task", "conclusion", "reason", "scope", "n", "r", "partial_r", "delta_r2",
                              "p_bh_incremental", "p_equivalence", "note"],
                      note=f"rules, the first that holds gives the conclusion: {rules}")


#: Forest colours of the conclusions (psychometrics.validity.incremental.CONCLUSIONS).
CONCLUSION_COLOURS = {"predicts beyond persona": "#1b7837", "predicts (persona not controlled)": "#7fbf7b",
                      "explained by persona": "#e08214", "does not predict (equivalent)": "#2166ac",
                      "inconclusive": "#999999", "reversed": "#b2182b", "not interpretable": "#762a83",
                      "not testable": "#cccccc"}


def declared_forest(tables: dict[str, pd.DataFrame]):
    """r with its 95% CI for every declared trait-task pair (the point alone where no CI is reported), signed
    so that the expected direction is to the right, coloured by the pair's conclusion (by whether r was
    confirmed where there is none). One row per
    scope (the pooled respondents first, then each model), one panel per pair: twenty models stay legible."""
    from plotnine import aes, facet_wrap, geom_point, geom_segment, geom_vline, ggplot, labs, scale_color_manual

    from psychometrics.report.study_figures import ROW_INCHES, plot_labels

    pairs = tables.get("validity_pairs")
    if pairs is None or pairs.empty:
        return None
    data = pairs[pairs["declared"] & pairs["r"].notna()].copy()
    if data.empty:
        return None
    sign = data["expected_sign"].astype(float)
    data["r_expected"] = data["r"] * sign
    low, high = data["ci_low"] * sign, data["ci_high"] * sign
    data["lo"], data["hi"] = np.minimum(low, high).fillna(data["r_expected"]), np.maximum(low, high).fillna(data["r_expected"])
    data["label"] = (data["trait"] + ":\n" + data["task"]).str.replace("$", r"\$", regex=False)
    data["label"] = pd.Categorical(data["label"], categories=list(dict.fromkeys(data["label"])))
    from psychometrics.validity.statistics import POOLED

    scopes = list(dict.fromkeys(data["scope"].astype(str)))
    scopes = [s for s in scopes if s == POOLED] + [s for s in scopes if s != POOLED]  # pooled on top
    shown = plot_labels(scopes)
    data["scope_label"] = pd.Categorical(data["scope"].astype(str).map(shown),
                                         categories=[shown[s] for s in scopes][::-1])
    data["status"] = np.where(data["confirmed"], "confirmed", "not confirmed")
    incremental = tables.get("validity_incremental")
    colours = {"confirmed": "#1b7837", "not confirmed": "#b2182b"}
    if incremental is not None and not incremental.empty:  # what the pair means, not whether r alone is significant
        conclusion = incremental.set_index(["scope", "trait", "task"])["conclusion"]
        keys = list(zip(data["scope"], data["trait"], data["task"]))
        data["status"] = [conclusion.get(key, "not testable") for key in keys]
        colours = CONCLUSION_COLOURS
    panels = data["label"].nunique()
    columns = min(panels, 3)
    height = 1.6 + np.ceil(panels / columns) * (0.45 + ROW_INCHES * len(scopes))
    from psychometrics.report.figures import FIGURE_WIDTH, figure_theme

    return (ggplot(data, aes(y="scope_label", color="status"))
            + geom_vline(xintercept=0, linetype="dashed", color="#888888")
            + geom_segment(aes(x="lo", xend="hi", yend="scope_label"), size=0.7)
            + geom_point(aes(x="r_expected"), size=2)
            + facet_wrap("label", ncol=columns)
            + scale_color_manual(values=colours)
            + labs(x="r in the declared direction (95% CI)", y="", color="")
            + figure_theme(FIGURE_WIDTH, float(min(40.0, height))))


def manipulation_plot(tables: dict[str, pd.DataFrame]):
    """Persona target level against achieved self-report and behaviour (z within trait and measure)."""
    from plotnine import aes, element_text, facet_wrap, geom_point, ggplot, labs, theme

    check = tables.get("manipulation_check")
    if check is None or check.empty or "r" not in check:
        return None
    data = check[check["r"].notna()].copy()
    if data.empty:
        return None
    data["measure_label"] = np.where(data["kind"] == "self-report", "self-report", "task: " + data["measure"])
    traits = data["trait"].nunique()
    from psychometrics.report.figures import FIGURE_WIDTH, figure_height, figure_theme

    return (ggplot(data, aes("measure_label", "r", color="kind"))
            + geom_point(size=3)
            + facet_wrap("trait", scales="free_x", ncol=min(traits, 4))
            + labs(x="", y="r with the persona's target level", color="")
            + figure_theme(FIGURE_WIDTH, figure_height(np.ceil(traits / 4), 2.6, 1.6))
            + theme(axis_text_x=element_text(rotation=60, ha="right")))


FIGURES = [
    ("validity_forest", "Declared associations", "r between self-report and behaviour for each declared pair (with "
     "runs: each task and its own trait), in the declared direction, with 95% CIs where they can be trusted "
     "(validity_pairs.csv), coloured by the pair's conclusion beyond the persona (validity_incremental.csv).",
     declared_forest),
    ("manipulation_check", "Manipulation check", "Correlation of the persona's target level with the achieved "
     "self-report and behaviour, over the trait's own personas and the baseline (manipulation_check.csv; "
     "means per level in manipulation_levels.csv).", manipulation_plot),
]


def mtmm_square(table: pd.DataFrame) -> pd.DataFrame:
    """The long MTMM table as a square matrix of r (lower triangle; rows and columns ``method: trait``)."""
    if table is None or table.empty:
        return pd.DataFrame()
    a = table["method_a"].astype(str) + ": " + table["trait_a"].astype(str)
    b = table["method_b"].astype(str) + ": " + table["trait_b"].astype(str)
    names = list(dict.fromkeys([*a, *b]))
    square = pd.DataFrame(np.nan, index=names, columns=names)
    for row_name, column_name, r in zip(b, a, table["r"]):
        square.loc[row_name, column_name] = r
    for name in names:
        square.loc[name, name] = 1.0
    mask = np.tril(np.ones((len(names), len(names)), bool))
    square = square.where(mask)
    square = square.loc[:, square.notna().any()]
    return square.rename_axis("measure").reset_index()

def _pooled_first(frame: pd.DataFrame) -> pd.DataFrame:
    """The pooled rows first (the headline; the page shows only a table's first rows), then each model's."""
    from psychometrics.validity.statistics import POOLED

    if "scope" not in frame:
        return frame
    return frame.iloc[np.argsort((frame["scope"] != POOLED).to_numpy(), kind="stable")]


def _without_empty_reliabilities(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs without the reliability columns when none has a value (scores from a file have none)."""
    empty = [c for c in ("rel_self", "rel_behavior", "r_corrected") if c in pairs and pairs[c].isna().all()]
    return pairs.drop(columns=empty) if len(empty) == 3 else pairs


TABLES = [
    ("persona_effect", "Persona-effect ratio: how far the persona's target moves behaviour vs self-report "
     "(d_behaviour / d_self-report, 95% bootstrap CI)", None, None),
    ("dissociation", "Declared associations confirmed (dissociation index = 1 - share), with sign, mean r and power",
     ["scope", "trait", "declared", "tested", "confirmed", "share_confirmed", "dissociation", "share_expected_sign",
      "mean_signed_r", "mean_power_r30", "confirmed_incremental", "dissociation_incremental"],
     lambda t: _pooled_first(t)),
    ("validity_pairs", "Self-report vs behaviour: declared pairs",
     ["scope", "trait", "task", "expected_sign", "n", "r", "ci_low", "ci_high", "p", "p_bh_declared", "confirmed",
      "power_r30", "rel_self", "rel_behavior", "r_corrected", "r_corrected_low", "r_corrected_high", "note"],
     lambda t: _without_empty_reliabilities(_pooled_first(t[t["declared"]]))),
    ("validity_mixed", "Within- and between-model association (random intercept per model, REML)", None, None),
    ("manipulation_check", "Manipulation check: r and slope on the target level (own personas and baseline)",
     None, None),
    ("manipulation_levels", "Manipulation check: achieved scores per target level", None, None),
    ("behavior_reliability", "Reliability of behaviour scores (alpha across variants with Feldt's 95% CI; "
     "split-half beside it)", ["scope", "task", "trait", "n_alpha", "k_alpha", "reliability", "reliability_low",
                               "reliability_high", "r_half", "spearman_brown", "missing_rate", "note"], None),
    ("behavior_missingness", "Missing behaviour scores: do they differ across respondents and track anything?",
     ["scope", "task", "n", "missing_rate", "missing_min", "missing_max", "chi2_p", "r_self", "p_self", "r_score",
      "p_score", "flag", "note"], None),
    ("selfreport_reliability", "Reliability of self-report scores (Cronbach's alpha; composite: Mosier)",
     ["scope", "trait", "inventory", "scale", "reliability", "n", "k", "note"], None),
    ("validity_mtmm", "MTMM matrix with behaviour as a method (r within model, pairwise complete)", None, mtmm_square),
    ("validity_mtmm_summary", "MTMM with behaviour as a method: Campbell-Fiske criteria", None, None),
    ("notes", "Notes: what was left out or could not be computed", None, None),
]


def validity_section(tables: dict[str, pd.DataFrame], dpi: int = 96, intro: str = INTRO,
                     equivalence_bound: float = 0.2) -> Optional[Section]:
    """The section (figures drawn, non-empty tables), or None when there is nothing to show; ``intro``: its
    opening paragraph (:data:`SCORES_INTRO` for scores from a file). It leads with the count of each
    conclusion and the conclusions table (rules beneath it)."""
    from psychometrics.report import figures as figs

    section = Section("validity", "Self-report vs behaviour", intro, lead=lead(tables) or "")
    for view in (conclusion_counts(tables), conclusions_view(tables, equivalence_bound)):
        if view is not None:
            section.lead_tables.append(view)
    for key, title, caption, function in FIGURES:
        try:
            plot = function(tables)
            if plot is not None:
                section.figures.append(figure_entry(key, title, caption, figs.png_bytes(plot, dpi=dpi)))
        except Exception as exc:  # one broken figure must not cost the report; the page says why
            section.figures.append(figure_entry(key, title, caption, None, f"{type(exc).__name__}: {exc}"))
    for name, title, columns, select in TABLES:
        frame = tables.get(name)
        if frame is not None and not frame.empty and select is not None:
            frame = select(frame)
        view = table_view(title, f"{name}.csv", frame, columns)
        if view is not None:
            section.tables.append(view)
    return section if section.figures or section.tables or section.lead_tables else None
