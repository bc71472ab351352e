"""A run store's answers as one pandas frame: the input of every table and statistic.

:func:`responses_frame` reads the store's columns straight from SQLite, expands each answer's design
condition into the condition columns (:data:`psychometrics.conditions.CONDITION_FIELDS`) and refuses a
store that holds answers to inventories its run does not list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from psychometrics.conditions import CONDITION_FIELDS

if TYPE_CHECKING:
    import pandas as pd

    from psychometrics.run.store import RunStore

__all__ = ["responses_frame"]

_FRAME_COLUMNS = ("request_id", "inventory", "item_id", "item_index", *CONDITION_FIELDS, "outcome", "parse_method",
                  "position", "value", "expected_value", "entropy", "option_mass", "raw_reply", "latency_s", "error")
_STORED = tuple(c for c in _FRAME_COLUMNS if c not in CONDITION_FIELDS)  # read with "condition" (JSON) last
_SHARED = ("inventory", "item_id", "outcome", "parse_method", "raw_reply", "error")  # often repeated strings


def _stored_columns(store: "RunStore", names: tuple[str, ...], batch: int = 10_000):
    """The raw values of ``names`` (JSON fields as text), row by row in storage order."""
    from psychometrics.run.store import COLUMNS

    assert all(name in COLUMNS for name in names)
    cursor = store.conn.execute(f"SELECT {', '.join(names)} FROM responses ORDER BY rowid")
    while chunk := cursor.fetchmany(batch):
        yield from chunk


def responses_frame(store: "RunStore", inventories: Iterable[str] | None = None,
                    temperature: float | None = None) -> "pd.DataFrame":
    """Every stored row, with the design condition expanded into columns.

    Read straight from the store's columns, without an object per row: each distinct condition is
    parsed once, and repeated strings (item ids, outcomes, short replies such as "3") are one shared
    object, so a million responses take a few hundred bytes each. The store's columns are checked first
    (:meth:`~psychometrics.run.store.RunStore.check_contents`), and with ``inventories`` (the ids the run's
    manifest lists) answers to any other inventory are a one-line error naming the store. The
    ``temperature`` column is there only when the answers have more than one temperature. ``temperature``
    fills the temperature of answers stored before it was part of their condition (the run's temperature
    then: :attr:`psychometrics.run.manifest.QuestionnaireManifest.first_temperature`).
    """
    import json

    import pandas as pd

    from psychometrics.errors import PsytestError

    store.check_contents()
    values: dict[str, list] = {name: [] for name in _FRAME_COLUMNS}
    plain = [(i, values[name].append) for i, name in enumerate(_STORED) if name not in _SHARED]
    shared_columns = [(i, values[name].append) for i, name in enumerate(_STORED) if name in _SHARED]
    condition_appenders = [values[name].append for name in CONDITION_FIELDS]
    shared: dict[str, str] = {}
    conditions: dict[str, tuple] = {}
    for record in _stored_columns(store, (*_STORED, "condition")):
        condition = conditions.get(record[-1])
        if condition is None:
            parsed = json.loads(record[-1])
            if parsed.get("temperature") is None:
                parsed["temperature"] = temperature
            condition = conditions[record[-1]] = tuple(parsed.get(c) for c in CONDITION_FIELDS)
        for append, value in zip(condition_appenders, condition):
            append(value)
        for index, append in plain:
            append(record[index])
        for index, append in shared_columns:
            value = record[index]
            append(value if value is None else shared.setdefault(value, value))
    if inventories is not None:
        unknown = sorted(set(values["inventory"]) - set(inventories))
        if unknown:
            raise PsytestError(f"{store.path}: answers to inventory '{unknown[0]}', which the run's manifest does not "
                               "list; the store holds another study's answers or was changed: restore it, or run "
                               "again into a new --out")
    frame = pd.DataFrame(values, columns=list(_FRAME_COLUMNS))
    if frame["temperature"].nunique(dropna=True) <= 1:  # one temperature: not a factor of this run's tables
        frame = frame.drop(columns="temperature")
    return frame
