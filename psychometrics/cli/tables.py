"""Tables that fit the terminal: numbers are never cut, text wraps, rows are bounded, notes are footnotes.

rich shrinks a table that is wider than the terminal by cutting every column to ``0.7…``; a number cut
that way is a wrong number. :func:`print_fitted` lays a table out for the console's width instead:

* a ``num`` or ``key`` column (numbers, identifiers such as inventory and scale) is never cut or
  wrapped: its width is that of its widest cell;
* a ``text`` column wraps (long words fold onto the next line, nothing is elided);
* a ``note`` column is taken out of the table: each distinct note is printed once below it, and the
  rows point to it (``[1]``), so a note shared by forty rows is printed once;
* while the table is still too wide, optional columns are left out, least important first, and a line
  below the table names them and where they are (the CSV, ``--json``);
* at most ``max_rows`` rows are shown; a line says how many more there are and where.

The layout depends only on the console's width (``COLUMNS`` when output is not a terminal).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from psychometrics.cli.terminal import cell, console

MAX_ROWS = 40


@dataclass(frozen=True)
class Column:
    """One column: ``key`` in the records, ``header`` shown, ``kind`` (``num``, ``key``, ``text`` or
    ``note``), ``drop``: the order in which optional columns are left out when the table is too wide
    (1 first; 0 = never), ``fmt``: record -> shown text (default: the value, numbers to 3 decimals)."""

    key: str
    header: str = ""
    kind: str = "num"
    drop: int = 0
    fmt: Callable[[dict], str] | None = None

    def text(self, record: dict) -> str:
        if self.fmt is not None:
            return self.fmt(record)
        return number(record.get(self.key))


def number(value: Any, digits: int = 3, signed: bool = False) -> str:
    """A value as shown in a table: floats to ``digits`` decimals, missing as ``-``, infinities spelled."""
    if value is None or value is _NA():
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "+inf" if value > 0 else "-inf"
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return str(value)


def _NA():
    try:
        import pandas as pd

        return pd.NA
    except ImportError:  # pragma: no cover - pandas is a dependency
        return object()


def interval(low_key: str, high_key: str, digits: int = 3) -> Callable[[dict], str]:
    """A formatter that shows two columns as one interval ``low..high``."""
    return lambda r: f"{number(r.get(low_key), digits)}..{number(r.get(high_key), digits)}"


def records_of(frame) -> list[dict]:
    """A data frame's rows as dicts (missing values as None)."""
    return [{k: (None if _missing(v) else v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _missing(value) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, (list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False


def _build(title: str, shown: Sequence[Column], rows: list[list[str]]):
    from rich import box
    from rich.table import Table

    table = Table(title=title or None, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left",
                  padding=(0, 1), collapse_padding=True)
    for index, column in enumerate(shown):
        header = column.header or column.key
        widest = max([len(header)] + [len(row[index]) for row in rows])
        if column.kind == "text":
            table.add_column(header, overflow="fold", min_width=min(widest, max(len(header), 12)))
        else:  # numbers and identifiers: whole, on one line
            table.add_column(header, no_wrap=True, min_width=widest, overflow="ignore",
                             justify="right" if column.kind == "num" else "left")
    for row in rows:
        table.add_row(*(cell(value) for value in row))
    return table


def fitted(title: str, records: list[dict], columns: Sequence[Column], *, width: int | None = None,
           max_rows: int = MAX_ROWS, where: str = "") -> tuple[Any, list[str]]:
    """The table for ``records`` laid out for ``width`` (default: the console's), and the lines to print
    under it (left-out columns, left-out rows, the numbered notes). ``where`` names the full table
    (a CSV path, ``--json``) in those lines."""
    from rich.measure import Measurement

    out = console()
    width = width or out.width
    notes: list[str] = []
    note_columns = [c for c in columns if c.kind == "note"]
    kept = [c for c in columns if c.kind != "note"]
    marks: list[str] = []
    for record in records[:max_rows]:
        refs: list[int] = []
        for column in note_columns:
            for part in _note_parts(record.get(column.key)):
                if part not in notes:
                    notes.append(part)
                if notes.index(part) + 1 not in refs:
                    refs.append(notes.index(part) + 1)
        marks.append(_ranges(sorted(refs)))
    if any(marks):
        kept.append(Column("_note", "notes", "key"))
    shown_records = [{**record, "_note": mark} for record, mark in zip(records[:max_rows], marks)]
    dropped: list[Column] = []
    while True:
        rows = [[column.text(record) if column.key != "_note" else record["_note"] for column in kept]
                for record in shown_records]
        table = _build(title, kept, rows)
        needed = Measurement.get(out, out.options.update_width(10_000), table).minimum
        optional = [c for c in kept if c.drop > 0]
        if needed <= width or not optional:
            break
        victim = min(optional, key=lambda c: c.drop)
        kept.remove(victim)
        dropped.append(victim)
    lines = []
    source = f" ({where})" if where else ""
    if dropped:
        lines.append("left out at this width: " + ", ".join(c.header or c.key for c in dropped) + source)
    if len(records) > max_rows:
        lines.append(f"... {len(records) - max_rows} more rows{source}")
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return table, lines


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 4, 7]`` as ``1-4,7``: the note numbers of a row, short."""
    parts: list[str] = []
    for n in numbers:
        if parts and _last(parts[-1]) == n - 1:
            first = parts[-1].split("-")[0]
            parts[-1] = f"{first}-{n}"
        else:
            parts.append(str(n))
    return ",".join(parts)


def _last(part: str) -> int:
    return int(part.split("-")[-1])


def _note_parts(value) -> list[str]:
    """The distinct notes in a note cell. psytest joins several notes with '; ' (a '; ' inside
    parentheses belongs to one note)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return []
    parts: list[str] = []
    depth, start, text = 0, 0, str(value)
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth <= 0 and text.startswith("; ", index):
            parts.append(text[start:index])
            start, depth = index + 2, 0
    parts.append(text[start:])
    unique: list[str] = []
    for part in (p.strip() for p in parts):
        if part and part not in unique:
            unique.append(part)
    return unique


def print_fitted(title: str, records: list[dict], columns: Sequence[Column], *, max_rows: int = MAX_ROWS,
                 where: str = "") -> None:
    """Print :func:`fitted`'s table and the lines under it."""
    out = console()
    table, lines = fitted(title, records, columns, max_rows=max_rows, where=where)
    out.print(table)
    for line in lines:
        out.print(line)


def print_wrapped(text: str, indent: str = "") -> None:
    """A long line of prose wrapped at the console's width (words whole; nothing elided). Piped output
    without ``COLUMNS`` is not wrapped: a script that greps it finds each message on one line."""
    import os
    import textwrap

    from psychometrics.cli.terminal import printable

    out = console()
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        for paragraph in str(text).split("\n"):
            out.print(printable(paragraph), soft_wrap=True)
        return
    width = max(20, out.width)
    for paragraph in str(text).split("\n"):
        wrapped = textwrap.wrap(printable(paragraph), width=width, subsequent_indent=indent, break_long_words=True,
                                break_on_hyphens=False) or [""]
        for line in wrapped:
            out.print(line, soft_wrap=True)
