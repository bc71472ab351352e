"""Helpers for the tidy frames the design statistics read and return.

:mod:`psychometrics.statistics.design_effects` and :mod:`psychometrics.statistics.response_styles` read
psytest's answer frame (:func:`psychometrics.run.frame.responses_frame`: one row per item
answer with its condition columns, ``outcome`` and ``value``) or its scale scores (one row per design
cell x scale), and return one tidy table per statistic whose ``note`` column says why a statistic is
missing (empty otherwise). What both need of those frames is here: the condition columns a frame has
and which of them vary, the valid answers, the note column, and the tolerance below which two values
(response values, scale scores) are the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TOLERANCE", "fill_notes", "join_notes", "present", "valid_answers", "varied"]

#: Values (response values, scale scores) closer than this are equal.
TOLERANCE = 1e-9


def present(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The ``columns`` that ``frame`` has, in the order given."""
    return [c for c in columns if c in frame.columns]


def varied(frame: pd.DataFrame, factor: str) -> bool:
    """Whether ``frame`` has the column ``factor`` with more than one (non-missing) level."""
    return factor in frame.columns and frame[factor].nunique(dropna=True) > 1


def valid_answers(responses: pd.DataFrame) -> pd.DataFrame:
    """The valid answers with a value (outcome ``valid``), ``value`` as float; a copy."""
    valid = responses[(responses["outcome"] == "valid") & responses["value"].notna()].copy()
    valid["value"] = valid["value"].astype(float)
    return valid


def fill_notes(notes: pd.Series) -> pd.Series:
    """A note column with an empty string where there is no note (never NaN)."""
    return notes.astype(object).where(notes.notna(), "")


def join_notes(*notes: str | None) -> str:
    """Notes joined with "; ", empty ones left out."""
    return "; ".join(n for n in notes if n)
