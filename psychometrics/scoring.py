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


def scale_scores(
    frame: "pd.DataFrame",
    inventories: Iterable[Inventory],
    by: tuple[str, ...] = CONDITION_COLUMNS,
    listwise: bool = False,
) -> "pd.DataFrame":
    """Long table: one row per respondent x scale (and facet) with its score and coverage."""
    import pandas as pd

    out = []
    for inventory in inventories:
        part = frame[frame["inventory"] == inventory.id].copy()
        if part.empty:
            continue
        part["keyed"] = keyed_values(part, inventory)
        groups = [
            ("scale", scale.id, scale.items, scale.scoring) for scale in inventory.scales
        ] + [("facet", facet.id, facet.items, facet.scoring) for facet in inventory.facets]
        by_cols = list(by)
        for kind, group_id, items, scoring in groups:
            members = part[part["item_id"].isin(items)]
            if members.empty:
                continue
            stats = members.groupby(by_cols, dropna=False)["keyed"].agg(["mean", "count"]).reset_index()
            needed = len(items) if listwise else math.ceil(len(items) / 2)
            score = stats["mean"].where(stats["count"] >= needed)
            if scoring == "sum":
                score = score * len(items)
            stats = stats.assign(
                inventory=inventory.id, kind=kind, scale=group_id, score=score,
                items_answered=stats["count"].astype(int), items_total=len(items),
            )
            out.append(stats[["inventory", *by_cols, "kind", "scale", "score", "items_answered", "items_total"]])
    if not out:
        return pd.DataFrame(columns=["inventory", *by, "kind", "scale", "score", "items_answered", "items_total"])
    return pd.concat(out, ignore_index=True)


def scale_summary(scores: "pd.DataFrame") -> "pd.DataFrame":
    """Per inventory x mode x scale: mean and SD of the score over respondents, and how many scored."""
    scales = scores[scores["kind"] == "scale"]
    summary = (
        scales.groupby(["inventory", "mode", "scale"], sort=False)["score"]
        .agg(mean="mean", sd="std", scored="count", respondents="size")
        .reset_index()
    )
    return summary
