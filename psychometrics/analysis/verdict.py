"""The verdict: per inventory, answer mode and scale, whether the model's score means anything.

A reader of a report wants one answer first: *can I read this score?* :func:`verdict_table` gives, for
each scale, the model's score with its interval over respondents, the human norm it can be held
against, how far the measurement design moves it, and one of four labels, decided by the rules in
:data:`LABEL_RULES` (first rule that applies wins):

``not measurable``
    Fewer than :data:`MIN_VALID_SHARE` of the scale's answers were valid, or no score could be formed;
    or, when the options were shown in more than one order, the share of items whose answer changed
    with the order alone (a *flip* as :func:`psychometrics.statistics.design_effects.option_order_flips`
    defines it: the semantic answer moves by more than 0 points in text mode, 0.5 in probability mode,
    over pairs of orders) exceeds the share that changed between samples under the same order (chance,
    at a temperature above 0; 0 with one sample) by at least :data:`MAX_FLIP_EXCESS`. Such a model
    answers the position, not the statement: its score is an artefact of how the options were laid out.
    Net of chance, because at a high temperature answers change between any two askings: a model whose
    answers change as often between samples as between orders is noisy, not position-driven.
``fragile``
    The design moves the score (the range of its means over design cells) by at least
    :data:`FRAGILE_SD` human SDs, or its 95% interval over respondents is at least that wide on either
    side. Half an SD is a medium effect (Cohen, 1988): it moves a person from the 50th to the 69th
    percentile, so a score that moves this much with the option order or wording cannot be placed
    among people. Without norms the yardstick is :data:`FRAGILE_RANGE_SHARE` of the response range
    (0.5 points on a 1-5 scale): human SDs of 1-5 personality scales are about 0.6-0.9 points, a
    quarter of the range at most, and half of that is an eighth.
``untested``
    Only one design cell has a score: how the design moves it is unknown, so it cannot be called
    interpretable (it is not known to be fragile either).
``interpretable``
    None of the above.

Which respondents the score is over (:mod:`psychometrics.analysis.units`: a respondent is persona x
sample): with trait-shaping personas (personas with ``targets``) the score is the untargeted personas'
(the model as itself; the shaped ones belong in a per-persona profile); personas without targets (a
sample of people) are pooled. Each respondent's score is averaged over the design cells first
(:func:`psychometrics.analysis.units.respondent_scores`); the interval is Student's t over those
respondent scores (:func:`psychometrics.statistics.norms.t_mean_ci`, R's ``t.test``). The design's
movement is the range of the cell means (each cell's mean over the same respondents).

References
----------
Cohen, J. (1988). Statistical power analysis for the behavioral sciences (2nd ed.). Erlbaum.
Gupta, A., Song, X., & Anumanchipalli, G. (2024). Self-assessment tests are unreliable measures of
LLM personality. *Proceedings of the 7th BlackboxNLP Workshop*, 301-314.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Iterable, Mapping, Optional

import pandas as pd

from psychometrics.analysis.units import CELL_FIELDS, respondent_scores

if TYPE_CHECKING:
    from psychometrics.design.personas import PersonaSet
    from psychometrics.inventories.model import Inventory

__all__ = ["COLUMNS", "PROFILE_COLUMNS", "persona_profile", "FRAGILE_RANGE_SHARE", "FRAGILE_SD", "LABELS", "LABEL_RULES", "MAX_FLIP_EXCESS",
           "MIN_VALID_SHARE", "summary_fields", "verdict_table"]

#: Below this share of valid answers a scale is not measurable.
MIN_VALID_SHARE = 0.5
#: At or above this share of option-order flips beyond the between-sample share a scale is not measurable.
MAX_FLIP_EXCESS = 0.5
#: Movement over design cells, or CI half-width, at or above this many human SDs makes a score fragile.
FRAGILE_SD = 0.5
#: ... without norms: this share of the response range (0.5 points on 1-5).
FRAGILE_RANGE_SHARE = 0.125

NOT_MEASURABLE, FRAGILE, UNTESTED, INTERPRETABLE = "not measurable", "fragile", "untested", "interpretable"
LABELS = (NOT_MEASURABLE, FRAGILE, UNTESTED, INTERPRETABLE)

#: The rules, in the order they are applied (the first that holds gives the label), as printed beside the
#: verdict table and carried in ``summary.json`` under ``verdict_rules``.
LABEL_RULES: list[tuple[str, str]] = [
    (NOT_MEASURABLE,
     f"fewer than {MIN_VALID_SHARE:.0%} of the scale's answers were valid (or no score could be formed), or, "
     f"when the options were shown in more than one order, the share of items whose answer changed with the order "
     f"alone exceeds the share that changed between samples under the same order (chance) by at least "
     f"{MAX_FLIP_EXCESS:.0%}: the answer depends on where the options are shown, not on the statement alone"),
    (FRAGILE,
     f"the design (option order, template, wording, item order) moves the score by at least {FRAGILE_SD:g} human "
     f"SD (the first norm group's SD; without norms {FRAGILE_RANGE_SHARE:.1%} of the response range, 0.5 points "
     f"on 1-5), or the 95% interval over respondents reaches that far on either side: half an SD moves a person "
     "from the 50th to the 69th percentile"),
    (UNTESTED,
     "only one design cell has a score, so how far the design moves it is unknown; vary the option order "
     "(--option-orders original,reversed) or the template"),
    (INTERPRETABLE, "none of the above: enough valid answers, no position-following, and the design and the "
                    "respondents move the score by less than the thresholds"),
]

#: What every verdict row is computed over.
UNIT = ("score: mean over respondents (persona x sample) of each respondent's mean over design cells; "
        "CI: Student t over respondents; movement: range of the cell means over design cells")

COLUMNS = ["inventory", "mode", "scale", "scale_name", "trait", "respondents", "n_respondents", "n_cells", "score",
           "ci_low", "ci_high", "ci_half_width", "scale_min", "scale_max", "norm_group", "norm_mean", "norm_sd", "z",
           "cell_min", "cell_max", "movement_points", "movement_share_sd", "movement_share_range",
           "fragile_threshold", "n_answers", "valid_share", "option_orders", "flip_rate", "resample_flip_rate",
           "flip_excess",
           "label", "reason", "unit"]


def verdict_table(scores: pd.DataFrame, responses: pd.DataFrame, inventories: list["Inventory"],
                  personas: "PersonaSet | Mapping[str, Mapping] | Iterable | None" = None) -> pd.DataFrame:
    """One row per inventory x answer mode x scale (kind ``scale``): the score and its label.

    Parameters
    ----------
    scores
        One row per respondent x design cell x scale (:meth:`psychometrics.run.owner.Run.scores`).
    responses
        Every answer (``Run.answers().responses``): for the valid share and the option-order flips.
    inventories
        The run's inventories (scale names, response range, norms).
    personas
        The run's persona set, a mapping persona id -> targets, or personas with ``id`` and
        ``targets``; personas with targets are trait-shaping and left out of the score when untargeted
        ones were asked.

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS`; ``label`` one of :data:`LABELS`, ``reason`` the sentence that gives it.
    """
    targets = _targets(personas)
    rows = []
    for inventory in inventories:
        inv_scores = _rows_of(scores, inventory.id)
        inv_scores = inv_scores[inv_scores["kind"] == "scale"] if "kind" in inv_scores else inv_scores.iloc[0:0]
        inv_answers = _rows_of(responses, inventory.id)
        modes = list(dict.fromkeys([*_levels(inv_answers, "mode"), *_levels(inv_scores, "mode")]))
        for mode in modes:
            mode_scores = _in_mode(inv_scores, mode)
            mode_answers = _in_mode(inv_answers, mode)
            chosen, who = _respondents(mode_scores, mode_answers, targets)
            for scale in inventory.scales:
                rows.append(_scale_row(inventory, scale, mode, chosen, who, mode_scores, mode_answers))
    return pd.DataFrame(rows, columns=COLUMNS)


def summary_fields(verdict: pd.DataFrame) -> dict:
    """``verdict`` (rows as dicts, NaN as null) and ``verdict_rules`` for ``summary.json``."""
    records = json.loads(verdict.to_json(orient="records")) if not verdict.empty else []
    return {"verdict": records,
            "verdict_rules": [{"label": label, "rule": rule} for label, rule in LABEL_RULES]}


PROFILE_COLUMNS = ["inventory", "mode", "scale", "scale_name", "trait", "persona", "targets", "role", "n_samples",
                   "score", "unit"]


def persona_profile(scores: pd.DataFrame, inventories: list["Inventory"],
                    personas: "PersonaSet | Mapping[str, Mapping] | Iterable | None" = None) -> pd.DataFrame:
    """Each persona's score per scale (kind ``scale``): its respondents' scores (each averaged over design cells)
    averaged over samples, for the per-persona profile; empty when the run has one persona or none.

    ``targets`` is the persona's trait targets as text (``extraversion=+2``); ``role`` says how the persona
    relates to the scale: ``untargeted`` (no targets), ``shaped high`` / ``shaped low`` (it targets this scale's
    trait, signed by the scale's ``trait_sign``), or ``shapes another trait``."""
    if scores is None or scores.empty or "persona" not in scores or scores["persona"].nunique() < 2:
        return pd.DataFrame(columns=PROFILE_COLUMNS)
    targets = _targets(personas)
    per_respondent = respondent_scores(scores[scores["kind"] == "scale"])
    means = (per_respondent.groupby(["inventory", "mode", "scale", "persona"], sort=False, dropna=False)["score"]
             .agg(score="mean", n_samples="count").reset_index())
    scales = {(inv.id, s.id): s for inv in inventories for s in inv.scales}
    rows = []
    for record in means.to_dict("records"):
        scale = scales.get((record["inventory"], record["scale"]))
        aims = targets.get(str(record["persona"]), {})
        level = aims.get(scale.trait) if scale is not None and scale.trait else None
        if not aims:
            role = "untargeted"
        elif level is None or level == 0:
            role = "shapes another trait"
        else:
            role = "shaped high" if level * (scale.trait_sign if scale is not None else 1) > 0 else "shaped low"
        rows.append({**record, "scale_name": scale.name if scale is not None else record["scale"],
                     "trait": scale.trait if scale is not None else None,
                     "targets": ", ".join(f"{t}={v:+d}" for t, v in aims.items()), "role": role,
                     "unit": "one persona: mean over its samples of each respondent's mean over design cells"})
    order = {key: index for index, key in enumerate(scales)}
    frame = pd.DataFrame(rows, columns=PROFILE_COLUMNS)
    frame["_order"] = [order.get(key, len(order)) for key in zip(frame["inventory"], frame["scale"])]
    return frame.sort_values(["_order", "mode"], kind="stable").drop(columns="_order").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------
# respondents


def _targets(personas) -> dict[str, dict]:
    """Persona id -> its targets (empty for an untargeted persona)."""
    if personas is None:
        return {}
    if isinstance(personas, Mapping):
        return {str(k): dict(v or {}) for k, v in personas.items()}
    entries = getattr(personas, "personas", personas)
    return {str(p.id): dict(p.targets or {}) for p in entries}


def _respondents(scores: pd.DataFrame, answers: pd.DataFrame, targets: dict[str, dict]) -> tuple[Optional[set], str]:
    """The personas whose respondents the verdict is over (None: all), and that choice in words."""
    asked = list(dict.fromkeys([*_levels(answers, "persona"), *_levels(scores, "persona")]))
    samples = len(set(_levels(answers, "sample")) | set(_levels(scores, "sample"))) or 1
    shaped = [p for p in asked if targets.get(p)]
    plain = [p for p in asked if p not in shaped]
    sample_words = f"{samples} sample{'s' if samples != 1 else ''}"
    if not shaped:
        if not asked or asked == ["none"]:
            return None, f"the model without a persona, {sample_words}"
        return None, f"{len(asked)} persona{'s' if len(asked) != 1 else ''} without trait targets, pooled, x {sample_words}"
    if plain:
        named = ", ".join(f"'{p}'" for p in plain[:3]) + (" ..." if len(plain) > 3 else "")
        return set(plain), (f"untargeted persona{'s' if len(plain) != 1 else ''} {named} x {sample_words}; the "
                            f"{len(shaped)} trait-shaping persona{'s' if len(shaped) != 1 else ''} are left out")
    return None, (f"all {len(shaped)} trait-shaping personas pooled x {sample_words} (no untargeted persona was "
                  "asked: the score mixes the traits the personas set)")


# ---------------------------------------------------------------------------------------------------
# one scale


def _scale_row(inventory, scale, mode, chosen: Optional[set], who: str, scores: pd.DataFrame,
               answers: pd.DataFrame) -> dict:
    rs = inventory.response_scale
    n_items = len(scale.items)
    low, high = (rs.min * n_items, rs.max * n_items) if scale.scoring == "sum" else (rs.min, rs.max)
    row: dict = {"inventory": inventory.id, "mode": mode, "scale": scale.id, "scale_name": scale.name,
                 "trait": scale.trait, "respondents": who, "scale_min": float(low), "scale_max": float(high),
                 "unit": UNIT}
    norm = next(((g, g.scales[scale.id]) for g in inventory.norms if scale.id in g.scales), None)
    if norm is not None:
        row.update(norm_group=norm[0].group, norm_mean=norm[1].mean, norm_sd=norm[1].sd)

    part = scores[scores["scale"] == scale.id] if "scale" in scores else scores.iloc[0:0]
    part = _of_personas(part, chosen)
    items = answers[answers["item_id"].isin(scale.items)] if "item_id" in answers else answers.iloc[0:0]
    items = _of_personas(items, chosen)

    # valid answers
    row["n_answers"] = len(items)
    if len(items):
        valid = (items["outcome"] == "valid") & items["value"].notna()
        row["valid_share"] = float(valid.mean())

    # score over respondents, interval
    per_respondent = respondent_scores(part, keys=()) if len(part) else pd.DataFrame(columns=["score"])
    values = pd.to_numeric(per_respondent["score"], errors="coerce").dropna().to_numpy(dtype=float)
    row["n_respondents"] = int(values.size)
    if values.size:
        from psychometrics.statistics.norms import t_mean_ci

        row["score"] = float(values.mean())
        ci_low, ci_high = t_mean_ci(values)
        if ci_low is not None and ci_high is not None:
            row.update(ci_low=ci_low, ci_high=ci_high, ci_half_width=(ci_high - ci_low) / 2)
        if norm is not None:
            row["z"] = (row["score"] - norm[1].mean) / norm[1].sd

    # movement over design cells
    cells = [c for c in CELL_FIELDS if c in part.columns]
    scored = part[part["score"].notna()] if len(part) else part
    if len(scored):
        means = scored.groupby(cells, dropna=False, sort=False)["score"].mean() if cells else scored["score"].agg(["mean"])
        row["n_cells"] = int(means.size)
        row.update(cell_min=float(means.min()), cell_max=float(means.max()))
        if means.size >= 2:
            row["movement_points"] = row["cell_max"] - row["cell_min"]
            row["movement_share_range"] = row["movement_points"] / (high - low) if high > low else math.nan
            if norm is not None:
                row["movement_share_sd"] = row["movement_points"] / norm[1].sd
    else:
        row["n_cells"] = 0
    row["fragile_threshold"] = FRAGILE_SD * norm[1].sd if norm is not None else FRAGILE_RANGE_SHARE * (high - low)

    # option-order flips over the scale's items
    orders = items["option_order"].nunique(dropna=False) if "option_order" in items and len(items) else 0
    row["option_orders"] = int(orders)
    if orders >= 2:
        from psychometrics.statistics.design_effects import option_order_flips

        flips = option_order_flips(items)
        if len(flips):
            first = flips.iloc[0]
            row["flip_rate"] = _number(first.get("pair_flip_rate"))
            row["resample_flip_rate"] = _number(first.get("resample_flip_rate"))
            chance = row["resample_flip_rate"]
            row["flip_excess"] = row["flip_rate"] - (0.0 if math.isnan(chance) else chance)

    row["label"], row["reason"] = _label(row, asked_cells=_cells_asked(items))
    return row


def _label(row: dict, asked_cells: int) -> tuple[str, str]:
    """The first rule of :data:`LABEL_RULES` that holds, and the sentence with the numbers it rests on."""
    def num(key: str) -> float:
        return _number(row.get(key))

    sd_word = f"human SD ({row['norm_group']})" if _has(num("norm_sd")) else "of the response range"
    n_resp = row["n_respondents"]
    no_interval = ("; no interval with one respondent (add --samples N at a --temperature above 0, or "
                   "--personas)") if n_resp == 1 else ""

    valid = num("valid_share")
    if not _has(valid) or valid < MIN_VALID_SHARE:
        shown = "no answers" if not _has(valid) else f"only {valid:.0%} of its {row['n_answers']} answers were valid"
        return NOT_MEASURABLE, f"{shown} (at least {MIN_VALID_SHARE:.0%} needed)"
    if not _has(num("score")):
        return NOT_MEASURABLE, (f"no score: {valid:.0%} of answers were valid, but no respondent answered every item "
                                "of the scale in any design cell")
    flips, chance, excess = num("flip_rate"), num("resample_flip_rate"), num("flip_excess")
    if _has(excess) and excess >= MAX_FLIP_EXCESS - 1e-12:
        between = (f" ({chance:.0%} between samples under the same order)" if _has(chance)
                   else " (one sample per cell: no chance baseline)")
        return NOT_MEASURABLE, (f"{flips:.0%} of the items changed answer with the option order alone{between}; "
                                f"limit {MAX_FLIP_EXCESS:.0%} above chance: the answer follows where the options are shown")

    threshold = num("fragile_threshold")
    moved = num("movement_points")
    if _has(moved) and moved >= threshold - 1e-12:
        return FRAGILE, (f"the design moves the score by {moved:.2f} points ({_share(row, moved)} {sd_word}; "
                         f"limit {threshold:.2f} points) over {row['n_cells']} design cells{no_interval}")
    half = num("ci_half_width")
    if _has(half) and half >= threshold - 1e-12:
        return FRAGILE, (f"the 95% interval over {n_resp} respondents reaches ±{half:.2f} points "
                         f"({_share(row, half)} {sd_word}; limit {threshold:.2f} points)")
    if row["n_cells"] < 2:
        cells = ("one design cell was asked" if asked_cells <= 1
                 else f"only one of the {asked_cells} design cells asked has a score")
        return UNTESTED, (f"{cells}: how far the option order or template moves the score is unknown; vary it "
                          f"(--option-orders original,reversed, --templates numbered,worded){no_interval}")
    interval = f", interval ±{half:.2f}" if _has(half) else ""
    return INTERPRETABLE, (f"{valid:.0%} valid; the design moves the score by {moved:.2f} points "
                           f"({_share(row, moved)} {sd_word}; limit {threshold:.2f}){interval}{no_interval}")


def _share(row: dict, points: float) -> str:
    if _has(_number(row.get("norm_sd"))):
        return f"{points / row['norm_sd']:.2f}"
    span = row["scale_max"] - row["scale_min"]
    return f"{points / span:.0%}" if span > 0 else "n/a"


def _cells_asked(answers: pd.DataFrame) -> int:
    cells = [c for c in CELL_FIELDS if c in answers.columns]
    if answers.empty:
        return 0
    return int(answers.groupby(cells, dropna=False).ngroups) if cells else 1


# ---------------------------------------------------------------------------------------------------
# small helpers


def _rows_of(frame: pd.DataFrame, inventory: str) -> pd.DataFrame:
    if frame is None or frame.empty or "inventory" not in frame:
        return pd.DataFrame(columns=list(frame.columns) if frame is not None else [])
    return frame[frame["inventory"] == inventory]


def _in_mode(frame: pd.DataFrame, mode) -> pd.DataFrame:
    return frame[frame["mode"] == mode] if "mode" in frame and len(frame) else frame


def _levels(frame: pd.DataFrame, column: str) -> list:
    if frame is None or frame.empty or column not in frame:
        return []
    return list(dict.fromkeys(frame[column].dropna().tolist()))


def _of_personas(frame: pd.DataFrame, chosen: Optional[set]) -> pd.DataFrame:
    if chosen is None or "persona" not in frame or frame.empty:
        return frame
    return frame[frame["persona"].isin(chosen)]


def _number(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _has(value: float) -> bool:
    return not math.isnan(value)

