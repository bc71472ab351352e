"""Response styles: the answers a model gives whatever the question, seen in its questionnaire answers.

Every function takes the answer frame psytest produces (``responses``,
:func:`psychometrics.run.frame.responses_frame`: one row per item answer with the condition
columns (:data:`psychometrics.conditions.CONDITION_FIELDS`), ``outcome``, ``position`` (displayed
position chosen, 0-based; in probability mode the modal position) and ``value`` (semantic response value
before reverse keying; in probability mode the expected value of the label distribution)) and the
inventories administered, and returns one tidy :class:`pandas.DataFrame` (one row per inventory x
answer mode x ...), ready for ``to_csv``:

=================================  ==============================================================
function                           what it answers
=================================  ==============================================================
:func:`position_bias`              is one displayed position chosen more than chance? (chi-square)
:func:`acquiescence`               does the respondent agree whatever the keying? (yea-saying)
:func:`response_style_rates`       midpoint, extreme, refusal and invalid rates per design factor
=================================  ==============================================================

The answer mode (``text`` / ``probs``) is never a factor: every result is stratified by it. How much
the design factors move the scores is in :mod:`psychometrics.statistics.design_effects`.

Degenerate cases (no valid answers, a scale with no reverse-keyed items, an even number of options)
give a row whose ``note`` says what happened; a statistic that cannot be computed is NaN only in such a
row, never silently. ``note`` is empty otherwise.

All statistics are checked against R (``tests/reference/sensitivity.R``, values in
``tests/reference/golden/sensitivity.json``): ``chisq.test`` and direct R computations of the
acquiescence and response-style shares.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import pandas as pd

from psychometrics.conditions import FACTORS, check_factor, expand_option_orders, order_scheme, ordered_levels
from psychometrics.statistics.frames import TOLERANCE, fill_notes, join_notes, present, valid_answers, varied

if TYPE_CHECKING:
    from psychometrics.inventories.model import Inventory

__all__ = ["REPLY_OUTCOMES", "acquiescence", "position_bias", "response_style_rates"]

#: Outcomes of a reply (:data:`psychometrics.engine.parse.OUTCOMES`); failed requests (outcome ``error``)
#: are counted apart.
REPLY_OUTCOMES: tuple[str, ...] = ("valid", "refusal", "out_of_range", "multiple", "unparseable", "truncated")

_GROUP = ["inventory", "mode"]


def _level_rows(column: pd.Series, levels: Sequence[object]) -> list[np.ndarray]:
    """Positions of the rows of ``column`` that are the same
    (:func:`psychometrics.conditions.same_level`) as each level, found by sorting once rather than
    comparing every row with every level (1,667 sample levels x a million rows would take hours)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)  # missing values: -1, never a level
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    by_text: dict[str, list[int]] = {}
    for code, value in enumerate(uniques):
        by_text.setdefault(str(value), []).append(code)
    position = {}
    for code, value in enumerate(uniques):
        try:
            position.setdefault(value, code)
        except TypeError:  # pragma: no cover - unhashable level values
            pass
    rows = []
    for level in levels:
        matched = set(by_text.get(str(level), ()))
        try:
            if level in position:
                matched.add(position[level])
        except TypeError:  # pragma: no cover
            pass
        parts = [order[bounds[code]:bounds[code + 1]] for code in sorted(matched)]
        rows.append(np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.intp))
    return rows


# ---------------------------------------------------------------------------------------------------
# position bias


_POSITION_COLUMNS = [
    "inventory", "mode", "scheme", "option_orders", "content_balanced", "position", "count", "rate",
    "expected_rate", "residual", "n", "chi_square", "df", "p_value", "first_rate", "last_rate", "note",
]


def _known_orders(values: list[int]) -> dict[str, tuple[int, ...]]:
    named = expand_option_orders(["original", "reversed", "rotations", "latin-square"], values, seed=0)
    known = dict(named)
    known.update({f"rotation{r}": tuple(values[r:] + values[:r]) for r in range(len(values))})
    return known


def _content_balanced(orders: list[str], values: list[int]) -> bool | None:
    """Whether the orders (equally weighted) show every response value at every position equally
    often, so that a preference for a *value* cannot look like a preference for a *position*.
    ``None`` when an order is not known by name (``random`` orders depend on the run seed)."""
    known = _known_orders(values)
    if any(o not in known for o in orders):
        return None
    k = len(values)
    table = np.zeros((k, k))
    for name in orders:
        for position, value in enumerate(known[name]):
            table[position, values.index(value)] += 1
    return bool(np.allclose(table, table[0, 0]))


def position_bias(responses: pd.DataFrame, inventories: Iterable[Inventory]) -> pd.DataFrame:
    """How often each displayed position is chosen, against the uniform :math:`1/K`.

    Per inventory x mode x option-order *scheme* (:func:`order_scheme`: ``original``, ``reversed``,
    ``rotation``, ``latin``, ``random``; and ``all`` pooling every order when there are several
    schemes), the valid answers' chosen positions :math:`0..K-1` are counted (in probability mode, the
    modal position) and tested with Pearson's goodness-of-fit test against the uniform distribution:
    :math:`X^2 = \\sum_p (O_p - E_p)^2 / E_p`, :math:`E_p = n/K`, ``df`` :math:`= K-1`. Each position's
    row also has its ``rate`` :math:`O_p/n`, ``expected_rate`` :math:`1/K` and Pearson ``residual``
    :math:`(O_p - E_p)/\\sqrt{E_p}`; ``first_rate`` and ``last_rate`` (repeated on every row of the
    group) are the rates of positions 0 and :math:`K-1`.

    Reading it: a respondent with a real trait prefers *values*, which under a single option order
    are fixed positions, so uniformity fails without any position bias. ``content_balanced`` is true
    when the pooled orders show every value at every position equally often (all rotations, a full
    Williams square): there a significant test is position bias. Under ``original`` and ``reversed``
    separately, position bias shows as a high first (or last) rate under *both* orders, because the
    same position holds opposite values.

    Parameters
    ----------
    responses
        :func:`psychometrics.run.frame.responses_frame` output.
    inventories
        The inventories administered (for the number of response options :math:`K`).

    Returns
    -------
    pandas.DataFrame
        One row per inventory x mode x scheme x ``position`` (0-based): ``scheme, option_orders`` (how
        many orders pooled), ``content_balanced, position, count, rate, expected_rate, residual, n,
        chi_square, df, p_value, first_rate, last_rate, note``.

    Matches R: ``chisq.test(counts)`` (statistic, parameter, p.value, residuals; ``p`` uniform).

    Differences from R
    ------------------
    * ``chisq.test`` warns "Chi-squared approximation may be incorrect" when an expected count is
      below 5; here the note says so. No Monte-Carlo p value is offered.

    References
    ----------
    Pearson, K. (1900). On the criterion that a given system of deviations from the probable ...
    *Philosophical Magazine*, 50(302), 157-175.
    Zheng, C., Zhou, H., Meng, F., Zhou, J., & Huang, M. (2024). Large language models are not robust
    multiple choice selectors. *ICLR 2024*.
    Dominguez-Olmedo, R., Hardt, M., & Mendler-Dünner, C. (2023). Questioning the survey responses of
    large language models. arXiv:2306.07951.
    """
    from scipy import stats

    by_id = {inventory.id: inventory for inventory in inventories}
    rows: list[dict] = []
    for (inventory_id, mode), part in responses.groupby(_GROUP, sort=False, dropna=False):
        inventory = by_id.get(inventory_id)
        if inventory is None:
            raise ValueError(f"responses include inventory {inventory_id!r}, which is not among the inventories given")
        values = inventory.response_scale.values
        k = len(values)
        part = part.assign(scheme=part["option_order"].map(order_scheme))
        schemes = ordered_levels(part["scheme"], "option_order")
        groups = [(s, part[part["scheme"] == s]) for s in schemes]
        if len(schemes) > 1:
            groups.append(("all", part))
        for scheme, group in groups:
            orders = ordered_levels(group["option_order"], "option_order")
            valid = group[(group["outcome"] == "valid") & group["position"].notna()]
            positions = valid["position"].astype(int).to_numpy()
            if positions.size and (positions.min() < 0 or positions.max() >= k):
                raise ValueError(f"{inventory_id}: a chosen position is outside 0..{k - 1}")
            counts = np.bincount(positions, minlength=k).astype(float)
            n = int(counts.sum())
            head = {"inventory": inventory_id, "mode": mode, "scheme": scheme, "option_orders": len(orders),
                    "content_balanced": _content_balanced(orders, values), "n": n, "df": k - 1}
            note = ""
            if n == 0:
                note = "no valid answers"
            else:
                expected = n / k
                chi_square = float(((counts - expected) ** 2 / expected).sum())
                head.update(chi_square=chi_square, p_value=float(stats.chi2.sf(chi_square, k - 1)),
                            first_rate=counts[0] / n, last_rate=counts[-1] / n)
                if expected < 5:
                    note = "expected count below 5: chi-square approximation may be poor"
            for position in range(k):
                row = {**head, "position": position, "count": int(counts[position]), "expected_rate": 1 / k, "note": note}
                if n:
                    row["rate"] = counts[position] / n
                    row["residual"] = (counts[position] - n / k) / math.sqrt(n / k)
                rows.append(row)
    frame = pd.DataFrame(rows, columns=_POSITION_COLUMNS)
    frame["note"] = fill_notes(frame["note"])
    return frame


# ---------------------------------------------------------------------------------------------------
# acquiescence


_ACQUIESCENCE_COLUMNS = [
    "inventory", "mode", "scale", "scales_used", "scales_excluded", "midpoint", "n_answers", "n_cells",
    "mean_raw", "mean_raw_minus_midpoint", "mean_positive_raw", "mean_reverse_raw", "balanced_acquiescence",
    "ci_low", "ci_high", "statistic", "df", "p_value", "n_pairs", "agree_both", "agree_both_rate",
    "disagree_both", "disagree_both_rate", "note",
]


def _acquiescence_summary(valid: pd.DataFrame, cells: list[str], midpoint: float, confidence: float) -> dict:
    """Acquiescence statistics over the valid answers of the scales in ``valid`` (columns: scale, reverse)."""
    from scipy import stats

    out: dict = {"n_answers": len(valid), "n_cells": int(valid.groupby(cells, dropna=False).ngroups)}
    if valid.empty:
        out["note"] = "no valid answers on scales with both keying directions"
        return out
    out["mean_raw"] = float(valid["value"].mean())
    out["mean_raw_minus_midpoint"] = out["mean_raw"] - midpoint
    out["mean_positive_raw"] = float(valid.loc[~valid["reverse"], "value"].mean())
    out["mean_reverse_raw"] = float(valid.loc[valid["reverse"], "value"].mean())
    # direction-balanced index per cell x scale, then averaged over scales within a cell
    by_direction = valid.groupby([*cells, "scale", "reverse"], dropna=False)["value"].mean().unstack("reverse")
    by_direction = by_direction.dropna(subset=[c for c in (False, True) if c in by_direction.columns])
    notes = []
    if {False, True} <= set(by_direction.columns) and len(by_direction):
        per_scale = (by_direction[False] + by_direction[True]) / 2 - midpoint
        per_cell = per_scale.groupby(level=list(range(len(cells))), dropna=False).mean().to_numpy(dtype=float)
        out["balanced_acquiescence"] = float(per_cell.mean())
        m = per_cell.size
        if m >= 2:
            sd = float(per_cell.std(ddof=1))
            if sd > TOLERANCE * max(1.0, abs(out["balanced_acquiescence"])):
                se = sd / math.sqrt(m)
                t = out["balanced_acquiescence"] / se
                crit = float(stats.t.ppf(0.5 + confidence / 2, m - 1))
                out.update(statistic=t, df=m - 1, p_value=float(2 * stats.t.sf(abs(t), m - 1)),
                           ci_low=out["balanced_acquiescence"] - crit * se,
                           ci_high=out["balanced_acquiescence"] + crit * se)
            else:
                notes.append("balanced index identical in every cell: no test")
        else:
            notes.append("one cell: no test across cells")
    else:
        notes.append("no cell answered both keying directions of a scale validly")
    # pairs (positively keyed, reverse-keyed answer) of one cell and scale, counted per group rather
    # than listed (30 x 30 items per scale and cell would make 15 rows per answer)
    positive = ~valid["reverse"].to_numpy(dtype=bool)
    above = valid["value"].to_numpy(dtype=float) > midpoint + TOLERANCE
    below = valid["value"].to_numpy(dtype=float) < midpoint - TOLERANCE
    flags = valid[[*cells, "scale"]].assign(
        pos=positive, rev=~positive, pos_above=positive & above, rev_above=~positive & above,
        pos_below=positive & below, rev_below=~positive & below)
    counts = flags.groupby([*cells, "scale"], dropna=False, sort=False).sum()
    n_pairs = int((counts["pos"] * counts["rev"]).sum())
    out["n_pairs"] = n_pairs
    if n_pairs:
        agree = int((counts["pos_above"] * counts["rev_above"]).sum())
        disagree = int((counts["pos_below"] * counts["rev_below"]).sum())
        out.update(agree_both=agree, agree_both_rate=agree / n_pairs,
                   disagree_both=disagree, disagree_both_rate=disagree / n_pairs)
    out["note"] = join_notes(*notes)
    return out


def acquiescence(
    responses: pd.DataFrame, inventories: Iterable[Inventory], *, per_scale: bool = False, confidence: float = 0.95
) -> pd.DataFrame:
    """Acquiescence (yea-saying): agreement regardless of what the item says.

    Only scales with items keyed in both directions are used (fully or partially balanced; a scale
    whose items all point one way confounds agreement with the trait and is listed in
    ``scales_excluded``). On the raw values :math:`x` (before reverse keying) of valid answers, with the
    scale midpoint :math:`m = (\\min + \\max)/2`:

    * ``mean_raw_minus_midpoint`` :math:`= \\bar x - m` over every answer to those scales (positive =
      yea-saying). With partially balanced scales this still carries some trait content (the
      majority direction weighs more);
    * ``balanced_acquiescence``: per cell and scale :math:`(\\bar x_{+} + \\bar x_{-})/2 - m`, the two
      keying directions weighted equally so that the trait cancels (it raises one mean and lowers the
      other), averaged over scales within a cell and then over cells; ``statistic``, ``df``,
      ``p_value``, ``ci_low``, ``ci_high``: one-sample t-test of the cell values against 0 (cells are
      design conditions of one model, so this asks whether yea-saying persists across conditions);
    * ``agree_both_rate``: over every (positively keyed item, reverse-keyed item) pair of the same scale
      answered in the same cell, the share where both answers are above the midpoint, i.e. agreeing
      with a statement and with its opposite (``disagree_both_rate``: both below, nay-saying).

    In probability mode :math:`x` is the expected value of the model's distribution over the options.

    Parameters
    ----------
    responses
        :func:`psychometrics.run.frame.responses_frame` output.
    inventories
        The inventories administered (keying, scale membership, response scale).
    per_scale
        Also report each scale separately (rows with ``scale`` = the scale id; the pooled row has
        ``scale = "all"``).
    confidence
        Level of the interval for the balanced index.

    Returns
    -------
    pandas.DataFrame
        One row per inventory x mode (x scale): ``scale, scales_used, scales_excluded`` (";"-separated
        ids), ``midpoint, n_answers, n_cells, mean_raw, mean_raw_minus_midpoint, mean_positive_raw,
        mean_reverse_raw, balanced_acquiescence, ci_low, ci_high, statistic, df, p_value, n_pairs,
        agree_both, agree_both_rate, disagree_both, disagree_both_rate, note``.

    Matches R: the same quantities computed directly in R (``aggregate``, ``merge``, ``t.test``).

    Differences from R
    ------------------
    None known; there is no packaged R function (``psych`` has none for acquiescence).

    References
    ----------
    Paulhus, D. L. (1991). Measurement and control of response bias. In J. P. Robinson, P. R. Shaver,
    & L. S. Wrightsman (Eds.), *Measures of personality and social psychological attitudes*
    (pp. 17-59). Academic Press.
    Winkler, J. D., Kanouse, D. E., & Ware, J. E. (1982). Controlling for acquiescence response set in
    scale development. *Journal of Applied Psychology*, 67(5), 555-561.
    Soto, C. J., John, O. P., Gosling, S. D., & Potter, J. (2008). The developmental psychometrics of
    Big Five self-reports. *Journal of Personality and Social Psychology*, 94(4), 718-737.
    """
    by_id = {inventory.id: inventory for inventory in inventories}
    cells = present(responses, FACTORS)
    rows: list[dict] = []
    for (inventory_id, mode), part in responses.groupby(_GROUP, sort=False, dropna=False):
        inventory = by_id.get(inventory_id)
        if inventory is None:
            raise ValueError(f"responses include inventory {inventory_id!r}, which is not among the inventories given")
        rs = inventory.response_scale
        midpoint = (rs.min + rs.max) / 2
        reverse = {item.id: item.reverse_keyed for item in inventory.items}
        used, excluded = [], []
        for scale in inventory.scales:
            keys = {reverse[i] for i in scale.items}
            (used if keys == {False, True} else excluded).append(scale.id)
        head = {"inventory": inventory_id, "mode": mode, "scales_used": ";".join(used),
                "scales_excluded": ";".join(excluded), "midpoint": midpoint}
        if not used:
            rows.append({**head, "scale": "all", "n_answers": 0, "n_cells": 0,
                         "note": "no scale has both keying directions: acquiescence not separable from the trait"})
            continue
        valid = valid_answers(part[[*cells, "item_id", "outcome", "value"]])  # only the columns needed
        valid["scale"] = valid["item_id"].map(inventory.scale_of_item)
        valid = valid[valid["scale"].isin(used)]
        valid["reverse"] = valid["item_id"].map(reverse).astype(bool)
        targets = [("all", valid)]
        if per_scale:
            targets += [(s, valid[valid["scale"] == s]) for s in used]
        for name, subset in targets:
            row = {**head, "scale": name}
            row.update(_acquiescence_summary(subset, cells, midpoint, confidence))
            rows.append(row)
        if per_scale:
            rows += [{**head, "scale": s, "n_answers": 0, "note": "scale has items keyed in one direction only"}
                     for s in excluded]
    frame = pd.DataFrame(rows, columns=_ACQUIESCENCE_COLUMNS)
    frame["note"] = fill_notes(frame["note"])
    return frame


# ---------------------------------------------------------------------------------------------------
# response-style rates


_STYLE_COLUMNS = [
    "inventory", "mode", "factor", "level", "n", "n_valid", "errors", "midpoint_rate", "extreme_rate",
    "valid_rate", "refusal_rate", "out_of_range_rate", "multiple_rate", "unparseable_rate", "truncated_rate",
    "invalid_rate", "note",
]


def response_style_rates(
    responses: pd.DataFrame, inventories: Iterable[Inventory], factors: Sequence[str] | None = None
) -> pd.DataFrame:
    """Midpoint, extreme, refusal and invalid response rates, overall and per level of each factor.

    Per inventory x mode, first over all answers (``factor = level = "all"``), then per level of each
    factor in ``factors`` (default: every condition column but ``mode`` with more than one level):

    * ``n``: replies (rows whose request got a reply; failed requests, outcome ``error``, are counted
      in ``errors`` and left out of every rate);
    * ``valid_rate``, ``refusal_rate``, ``out_of_range_rate``, ``multiple_rate``, ``unparseable_rate``,
      ``truncated_rate`` (cut off at ``max_tokens``): each reply outcome's share of ``n``;
      ``invalid_rate`` :math:`= 1 -` ``valid_rate``;
    * ``midpoint_rate``: share of valid answers at the middle response value (odd number of options
      only; with an even number there is no midpoint and the note says so);
    * ``extreme_rate``: share of valid answers at the lowest or highest value.

    In probability mode the value is the expected value of the distribution; the midpoint and
    extreme rates use the nearest response option to it.

    Parameters
    ----------
    responses
        :func:`psychometrics.run.frame.responses_frame` output.
    inventories
        The inventories administered (response scale).
    factors
        Condition columns to break the rates down by.

    Returns
    -------
    pandas.DataFrame
        One row per inventory x mode x factor x level: ``n, n_valid, errors, midpoint_rate,
        extreme_rate, valid_rate, refusal_rate, out_of_range_rate, multiple_rate, unparseable_rate,
        truncated_rate, invalid_rate, note``.

    Matches R: shares computed directly in R (``tapply``/``mean``).

    Differences from R
    ------------------
    None known.

    References
    ----------
    Baumgartner, H., & Steenkamp, J.-B. E. M. (2001). Response styles in marketing research: a
    cross-national investigation. *Journal of Marketing Research*, 38(2), 143-156.
    """
    by_id = {inventory.id: inventory for inventory in inventories}
    if factors is not None:
        for factor in factors:
            check_factor(factor)
    rows: list[dict] = []
    for (inventory_id, mode), part in responses.groupby(_GROUP, sort=False, dropna=False):
        inventory = by_id.get(inventory_id)
        if inventory is None:
            raise ValueError(f"responses include inventory {inventory_id!r}, which is not among the inventories given")
        rs = inventory.response_scale
        has_midpoint = (rs.max - rs.min) % 2 == 0
        midpoint = (rs.min + rs.max) / 2
        chosen = present(part, factors) if factors is not None else [f for f in FACTORS if varied(part, f)]
        targets = [("all", "all", part)]
        for factor in chosen:
            levels = ordered_levels(part[factor], factor)
            for level, rows_of_level in zip(levels, _level_rows(part[factor], levels)):
                targets.append((factor, level, part.iloc[rows_of_level]))
        for factor, level, subset in targets:
            replies = subset[subset["outcome"] != "error"]
            n = len(replies)
            row = {"inventory": inventory_id, "mode": mode, "factor": factor, "level": level, "n": n,
                   "errors": int(len(subset) - n)}
            notes = []
            if n == 0:
                notes.append("no replies")
            else:
                for outcome in REPLY_OUTCOMES:
                    row[f"{outcome}_rate"] = float((replies["outcome"] == outcome).mean())
                row["invalid_rate"] = 1.0 - row["valid_rate"]
            valid = valid_answers(replies)
            row["n_valid"] = len(valid)
            if len(valid):
                nearest = np.floor(valid["value"].to_numpy(dtype=float) + 0.5)
                row["extreme_rate"] = float(((nearest == rs.min) | (nearest == rs.max)).mean())
                if has_midpoint:
                    row["midpoint_rate"] = float((nearest == midpoint).mean())
                else:
                    notes.append("even number of response options: no midpoint")
            elif n:
                notes.append("no valid answers")
            row["note"] = join_notes(*notes)
            rows.append(row)
    frame = pd.DataFrame(rows, columns=_STYLE_COLUMNS)
    frame["note"] = fill_notes(frame["note"])
    return frame
