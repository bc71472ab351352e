"""Scale and facet scores from stored responses.

A respondent is one cell of the design (by default model x option order x template x persona x
wording x item order x sample x answer mode): every cell answered every item once, so each cell is one
complete questionnaire.

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

from psychometrics.design import CONDITION_FIELDS as CONDITION_COLUMNS
from psychometrics.inventory import Inventory

if TYPE_CHECKING:
    import pandas as pd

    from psychometrics.store import RunStore



def responses_frame(store: "RunStore") -> "pd.DataFrame":
    """Every stored row, with the design condition expanded into columns."""
    import pandas as pd

    records = []
    for row in store.rows():
        record = {
            "request_id": row.request_id,
            "inventory": row.inventory,
            "item_id": row.item_id,
            "item_index": row.item_index,
            **{column: row.condition.get(column) for column in CONDITION_COLUMNS},
            "outcome": row.outcome,
            "parse_method": row.parse_method,
            "position": row.position,
            "value": row.value,
            "expected_value": row.expected_value,
            "entropy": row.entropy,
            "option_mass": row.option_mass,
            "raw_reply": row.raw_reply,
            "latency_s": row.latency_s,
            "error": row.error,
        }
        records.append(record)
    columns = ["request_id", "inventory", "item_id", "item_index", *CONDITION_COLUMNS, "outcome", "parse_method", "position",
               "value", "expected_value", "entropy", "option_mass", "raw_reply", "latency_s", "error"]
    return pd.DataFrame.from_records(records, columns=columns)


def keyed_values(frame: "pd.DataFrame", inventory: Inventory) -> "pd.Series":
    """Item values with reverse keying applied (NaN where the answer was not valid)."""
    rs = inventory.response_scale
    reversed_items = {item.id for item in inventory.items if item.reverse_keyed}
    values = frame["value"].where(frame["outcome"] == "valid")
    flip = frame["item_id"].isin(reversed_items)
    return values.where(~flip, rs.min + rs.max - values)


def item_matrix(frame: "pd.DataFrame", inventory: Inventory, by: Iterable[str] = CONDITION_COLUMNS) -> "pd.DataFrame":
    """Respondents x items of keyed values (NaN where no valid answer), one row per group of ``by``.

    With the default grouping a row is one design cell; coarser groupings average each item's keyed
    values over the other factors first.
    """
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
        return pd.DataFrame(columns=["inventory", *by, "kind", "scale", "score", "items_answered", "items_total"])
    return pd.concat(parts, ignore_index=True)
