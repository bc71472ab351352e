"""Scale and facet scores from an answer frame (:func:`psychometrics.run.frame.responses_frame`).

Scores are computed per respondent (persona x sample) and design cell (option order x template x wording x
item order), per answer mode: every such combination answered every item once, so each is one complete
questionnaire. Which statistics are computed over which of the two is defined in
:mod:`psychometrics.analysis.units`.

Scoring follows the inventory: reverse-keyed responses become ``min + max - response``; a scale's
score is the mean of its keyed items (``mean`` rule) or that mean times the number of items (``sum``
rule, i.e. the sum prorated over missing items). A scale score is reported only when at least half of
its items have a valid answer; otherwise it is missing and ``items_answered`` says why. Under the
``drop`` policy for invalid replies (listwise deletion) a scale needs every item answered.
In probability mode an item's value is the expected value of the model's distribution over options.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable

from psychometrics.conditions import CONDITION_FIELDS as CONDITION_COLUMNS
from psychometrics.conditions import condition_columns

if TYPE_CHECKING:
    import pandas as pd

    from psychometrics.inventories.model import Inventory


def keyed_values(frame: "pd.DataFrame", inventory: Inventory) -> "pd.Series":
    """Item values with reverse keying applied (NaN where the answer was not valid, or where the stored
    value lies outside the response scale: 99 on a 1-5 scale is missing, never reversed into -93)."""
    import pandas as pd

    rs = inventory.response_scale
    reversed_items = {item.id for item in inventory.items if item.reverse_keyed}
    numeric = pd.to_numeric(frame["value"], errors="coerce")
    values = numeric.where((frame["outcome"] == "valid") & numeric.between(rs.min, rs.max))
    flip = frame["item_id"].isin(reversed_items)
    return values.where(~flip, rs.min + rs.max - values)


def impossible_values(frame: "pd.DataFrame", inventories: Iterable[Inventory]) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """(``frame`` with valid answers whose stored value lies outside the response scale set missing,
    a table of how many per inventory, mode and item).

    psytest stores a value of the scale for every valid answer (the value behind the chosen position,
    or an expected value between the lowest and highest); another value means the store was written or
    edited by something else. Such a row becomes outcome ``out_of_range`` with no value in every table,
    and ``value_checks`` (columns ``inventory, mode, item_id, check, n, example, note``) says so."""
    import pandas as pd

    columns = ["inventory", "mode", "item_id", "check", "n", "example", "note"]
    numeric = pd.to_numeric(frame["value"], errors="coerce")
    bad = pd.Series(False, index=frame.index)
    for inventory in inventories:
        rs = inventory.response_scale
        mine = (frame["inventory"] == inventory.id) & (frame["outcome"] == "valid") & numeric.notna()
        bad |= mine & ~numeric.between(rs.min, rs.max)
    if not bad.any():
        return frame, pd.DataFrame(columns=columns)
    rows = []
    ranges = {inv.id: inv.response_scale for inv in inventories}
    for (inventory, mode, item), part in frame[bad].groupby(["inventory", "mode", "item_id"], sort=False):
        rs = ranges[inventory]
        rows.append({"inventory": inventory, "mode": mode, "item_id": item, "check": "value outside the scale",
                     "n": int(len(part)), "example": float(pd.to_numeric(part["value"]).iloc[0]),
                     "note": f"stored values outside {rs.min}..{rs.max} set missing (not written by psytest)"})
    frame = frame.copy()
    frame.loc[bad, "outcome"] = "out_of_range"
    frame.loc[bad, ["value", "expected_value"]] = float("nan")
    return frame, pd.DataFrame(rows, columns=columns)


def item_matrix(frame: "pd.DataFrame", inventory: Inventory, by: Iterable[str] = CONDITION_COLUMNS) -> "pd.DataFrame":
    """Respondents x items of keyed values (NaN where no valid answer), one row per group of ``by``.

    With the default grouping a row is one respondent in one design cell; coarser groupings average each
    item's keyed values over the other factors first.
    """
    if tuple(by) == CONDITION_COLUMNS:
        by = condition_columns(frame.columns)  # temperature only when the run varies it
    part = frame[frame["inventory"] == inventory.id].copy()
    part["keyed"] = keyed_values(part, inventory)
    wide = part.groupby([*by, "item_id"])["keyed"].mean().unstack("item_id")
    return wide.reindex(columns=[item.id for item in inventory.items])


def scores_from_matrix(matrix: "pd.DataFrame", inventory: Inventory, listwise: bool = False) -> "pd.DataFrame":
    """Scale and facet scores of a keyed respondents x items matrix, as a long table.

    Columns: ``inventory``, the matrix's index levels (``respondent`` when unnamed), ``kind``, ``scale``,
    ``score``, ``items_answered``, ``items_total``. The scoring rules are the module's (see above).
    """
    import pandas as pd

    index_names = [name or "respondent" for name in matrix.index.names]
    groups = [("scale", s.id, s.items, s.scoring) for s in inventory.scales]
    groups += [("facet", f.id, f.items, f.scoring) for f in inventory.facets]
    parts = []
    for kind, group_id, items, scoring in groups:
        block = matrix[items]
        answered = block.notna().sum(axis=1)
        needed = len(items) if listwise else math.ceil(len(items) / 2)
        score = block.mean(axis=1).where(answered >= needed)
        if scoring == "sum":
            score = score * len(items)
        parts.append(pd.DataFrame({"kind": kind, "scale": group_id, "score": score,
                                   "items_answered": answered.astype(int), "items_total": len(items)}))
    long = pd.concat(parts).rename_axis(index_names).reset_index()
    long.insert(0, "inventory", inventory.id)
    return long[["inventory", *index_names, "kind", "scale", "score", "items_answered", "items_total"]]


def scale_scores(
    frame: "pd.DataFrame",
    inventories: Iterable[Inventory],
    by: tuple[str, ...] = CONDITION_COLUMNS,
    listwise: bool = False,
) -> "pd.DataFrame":
    """Long table: one row per respondent (group of ``by``) x scale and facet, with score and coverage."""
    import pandas as pd

    parts = [
        scores_from_matrix(item_matrix(frame, inventory, by), inventory, listwise)
        for inventory in inventories
        if (frame["inventory"] == inventory.id).any()
    ]
    if not parts:
        if tuple(by) == CONDITION_COLUMNS:
            by = condition_columns(frame.columns)
        return pd.DataFrame(columns=["inventory", *by, "kind", "scale", "score", "items_answered", "items_total"])
    return pd.concat(parts, ignore_index=True)
