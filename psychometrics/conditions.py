"""The design cell of an answer: its factors, their levels and their order, without dependencies.

Every answer psytest stores belongs to one *condition* (a cell of the factorial design): an option
order, an instruction template, a persona, a wording, an item order, a sampling temperature, a sample
index and an answer mode.
The planner (:mod:`psychometrics.design.plan`) creates conditions; the store keeps them; the frames,
the statistics and the reports group by them. This module is what they share, and it imports nothing
heavy (no pydantic, yaml, pandas at import time), so statistics on answer frames never pull in the
planner, the prompts or the model backends.

* :data:`CONDITION_FIELDS`: the condition columns, in a fixed order; :class:`Condition`: one cell.
* :data:`FACTORS`: the columns that can be analysed as design factors (all but the answer mode, which
  stratifies every result instead), :data:`DEFAULT_LEVELS` their default levels, and
  :func:`ordered_levels`: the levels of a factor in a stable order (default first, then natural order).
* Option orders: :func:`expand_option_orders` names the display orders of a response scale under each
  scheme (``original``, ``reversed``, ``rotations``, ``latin-square``, ``random:N``), and
  :func:`order_scheme` maps an order's name back to its scheme.

Option-order schemes, for K response options:

``original``        1..K as the inventory lists them
``reversed``        K..1
``rotations``       the K cyclic rotations of the original order
``latin-square``    a Williams balanced Latin square: every option appears once in every position and
                    (for even K; odd K adds the mirrored rows) follows every other option equally often
``random:N``        N seeded random permutations

Reference: Williams, E. J. (1949). Experimental designs balanced for the estimation of residual effects
of treatments. Australian Journal of Scientific Research, 2(3), 149-168.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from psychometrics.models.base import AnswerMode

__all__ = [
    "CONDITION_FIELDS",
    "DEFAULT_LEVELS",
    "FACTORS",
    "Condition",
    "check_factor",
    "condition_columns",
    "expand_option_orders",
    "is_missing",
    "order_scheme",
    "ordered_levels",
    "same_level",
    "williams_square",
]


@dataclass(frozen=True)
class Condition:
    """The design cell of a request (everything but the items). One cell answers every item once,
    so a cell is one complete questionnaire: the unit the scores and reliabilities are computed on."""

    option_order: str
    template: str
    persona: str  # persona id, or "none"
    wording: str  # "original" or "paraphrase1", "paraphrase2", ...
    item_order: str  # "none" (one item per request) or "shuffle1", "shuffle2", ...
    sample: int
    mode: AnswerMode
    temperature: float | None = None  # the sampling temperature; None in conditions stored before it was a factor

    def seed_parts(self) -> dict:
        """The cell as the per-request seed is derived from it: every field but the temperature. The seed
        does not depend on the temperature, so the temperatures of a design are compared on common random
        numbers, and a run's request ids and seeds stay what they were when temperatures are added to it."""
        return {
            "option_order": self.option_order,
            "template": self.template,
            "persona": self.persona,
            "wording": self.wording,
            "item_order": self.item_order,
            "sample": self.sample,
            "mode": self.mode,
        }

    def as_dict(self) -> dict:
        """The cell as stored with each answer (the temperature included when known)."""
        cell = self.seed_parts()
        if self.temperature is not None:
            cell["temperature"] = self.temperature
        return cell


CONDITION_FIELDS = ("option_order", "template", "persona", "wording", "item_order", "temperature", "sample", "mode")

#: Condition columns that can be analysed as design factors (the answer mode stratifies instead).
FACTORS: tuple[str, ...] = tuple(field for field in CONDITION_FIELDS if field != "mode")

#: The design's default level of each factor: the level the others are compared against by default.
DEFAULT_LEVELS: dict[str, object] = {
    "option_order": "original",
    "template": "numbered",
    "persona": "none",
    "wording": "original",
    "item_order": "none",
    "sample": 0,
}


def condition_columns(columns: Iterable[str], fields: Iterable[str] = CONDITION_FIELDS) -> tuple[str, ...]:
    """The condition fields (``fields``, in their order) that a frame with ``columns`` has. A run's answers
    have a ``temperature`` column only when they vary in temperature
    (:func:`psychometrics.run.frame.responses_frame`), so its tables are what they were before temperature
    was a factor; groupings by every condition field take the ones present."""
    present = set(columns)
    return tuple(field for field in fields if field in present)


def check_factor(factor: str) -> None:
    """Refuse anything but a design factor (:data:`FACTORS`) with a one-line :class:`ValueError`."""
    if factor == "mode":
        raise ValueError("the answer mode is not a design factor here: every result is reported per mode")
    if factor not in FACTORS:
        raise ValueError(f"unknown design factor {factor!r}; use one of {', '.join(FACTORS)}")


# ---------------------------------------------------------------------------------------------------
# levels


def is_missing(value: object) -> bool:
    """Whether a level value is missing (None, NaN, NaT, pandas' NA): missing values are never levels."""
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def same_level(a: object, b: object) -> bool:
    """Whether two level values name the same level: equal, or equal as text (a level read back from a
    CSV as ``"1"`` is the sample ``1``). Missing values name no level."""
    if a is None or b is None:
        return False
    try:
        return a == b or str(a) == str(b)
    except Exception:  # pragma: no cover - exotic types
        return False


def _natural_key(value: object) -> tuple:
    import numpy as np

    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (0, float(value), "")
    parts = re.split(r"(\d+)", str(value))
    return (1, 0.0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts))


def ordered_levels(values: Iterable[object], factor: str) -> list:
    """The distinct levels of ``factor`` in a stable order: the design's default level first
    (:data:`DEFAULT_LEVELS`), then natural order (``paraphrase2`` before ``paraphrase10``).
    Missing values are not levels."""
    import pandas as pd

    levels = [v for v in pd.unique(pd.Series(list(values), dtype=object)) if not is_missing(v)]
    default = DEFAULT_LEVELS.get(factor)
    return sorted(levels, key=lambda v: (not same_level(v, default), _natural_key(v)))


# ---------------------------------------------------------------------------------------------------
# option orders


def williams_square(k: int) -> list[tuple[int, ...]]:
    """Rows of a Williams balanced Latin square on ``0..k-1`` (2k rows when k is odd)."""
    first, low, high = [0], 1, k - 1
    while len(first) < k:
        first.append(low)
        low += 1
        if len(first) < k:
            first.append(high)
            high -= 1
    rows = [tuple((value + shift) % k for value in first) for shift in range(k)]
    if k % 2 == 1:
        rows += [tuple(reversed(row)) for row in rows]
    return rows


def expand_option_orders(schemes: list[str], values: list[int], seed: int) -> list[tuple[str, tuple[int, ...]]]:
    """Named display orders of ``values`` for the given schemes, duplicates removed (first name kept)."""
    k = len(values)
    named: list[tuple[str, tuple[int, ...]]] = []
    for scheme in schemes:
        if scheme == "original":
            named.append(("original", tuple(values)))
        elif scheme == "reversed":
            named.append(("reversed", tuple(reversed(values))))
        elif scheme == "rotations":
            named += [(f"rotation{r}", tuple(values[r:] + values[:r])) for r in range(k)]
        elif scheme == "latin-square":
            named += [(f"latin{i + 1}", tuple(values[j] for j in row)) for i, row in enumerate(williams_square(k))]
        else:
            count = int(scheme.split(":")[1])
            rng = random.Random(f"option-orders:{seed}:{k}")
            for i in range(count):
                shuffled = list(values)
                rng.shuffle(shuffled)
                named.append((f"random{i + 1}", tuple(shuffled)))
    unique: dict[tuple[int, ...], str] = {}
    for name, order in named:
        unique.setdefault(order, name)
    return [(name, order) for order, name in unique.items()]


def order_scheme(option_order: str) -> str:
    """The scheme an option order belongs to: ``latin3`` -> ``latin``, ``rotation2`` -> ``rotation``,
    ``random1`` -> ``random``; ``original`` and ``reversed`` are their own schemes."""
    return re.sub(r"\d+$", "", str(option_order))
