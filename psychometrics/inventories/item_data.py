"""Item-level data that did not come from a run: a CSV of respondents x items, with a scoring key.

``psytest analyze DATA.csv --keys KEYS.yaml`` puts human samples (or any other data) through the same
analyses as a run. The keys file names the response range and the scales, a leading ``-`` marking a
reverse-keyed item::

    response_range: [1, 6]
    scoring: mean                 # or sum (default mean)
    scales:
      A: [-A1, A2, A3, A4, A5]
      C: [C1, C2, C3, -C4, -C5]
    traits:                       # optional: shared trait names, for MTMM with other instruments
      A: agreeableness

With ``--inventory NAME`` instead, the CSV's columns are that inventory's item ids.
``--reference-loadings FILE`` (:func:`read_reference_loadings`) is a CSV of items x factors that EFA
loadings are compared with (Tucker congruence).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from psychometrics import limits
from psychometrics.errors import PsytestError
from psychometrics.inventories.model import Inventory, inventory_from_data
from psychometrics.yaml_io import load_yaml_file

_KEYS_FIELDS = {"response_range", "scoring", "scales", "traits", "name"}


def inventory_from_keys(path: Path) -> Inventory:
    """Build an :class:`Inventory` (items named by their column) from a keys file."""
    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise PsytestError(f"{path}: a keys file must be a mapping with response_range and scales")
    unknown = sorted(set(data) - _KEYS_FIELDS)
    if unknown:
        raise PsytestError(f"{path}: unknown field '{unknown[0]}'; allowed fields: {', '.join(sorted(_KEYS_FIELDS))}")
    bounds = data.get("response_range")
    if (not isinstance(bounds, list) or len(bounds) != 2 or not all(isinstance(b, int) and not isinstance(b, bool)
                                                                     for b in bounds)):
        raise PsytestError(f"{path}: response_range must be two whole numbers, e.g. [1, 5]")
    low, high = bounds
    if high - low >= limits.RESPONSE_OPTIONS or max(abs(low), abs(high)) > limits.RESPONSE_VALUE:
        raise PsytestError(f"{path}: response_range [{low}, {high}] is wider than the {limits.RESPONSE_OPTIONS} "
                           f"response options (values within +-{limits.RESPONSE_VALUE:,}) allowed; give the range "
                           "the data use")
    scales = data.get("scales")
    if not isinstance(scales, dict) or not scales:
        raise PsytestError(f"{path}: scales must map each scale to its items, e.g. A: [-A1, A2, A3]")
    traits = data.get("traits") or {}
    if not isinstance(traits, dict):
        raise PsytestError(f"{path}: traits must map scale names to trait names")
    unknown_scale = next((name for name in traits if name not in scales), None)
    if unknown_scale is not None:
        raise PsytestError(f"{path}: traits names scale '{unknown_scale}', which is not among the scales")
    items: dict[str, bool] = {}
    scale_entries = []
    for scale, members in scales.items():
        if not isinstance(members, list) or not members:
            raise PsytestError(f"{path}: scale '{scale}' must list its items, e.g. [-A1, A2]")
        ids = []
        for member in members:
            text = str(member).strip()
            reverse = text.startswith("-")
            item = text.lstrip("-+").strip()
            if item in items and items[item] != reverse:
                raise PsytestError(f"{path}: item '{item}' is keyed both ways; key each item once")
            items[item] = reverse
            ids.append(item)
        entry: dict[str, Any] = {"id": str(scale), "name": str(scale), "scoring": data.get("scoring", "mean"),
                                 "items": ids}
        if scale in traits:
            entry["trait"] = str(traits[scale])
        scale_entries.append(entry)
    slug = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-") or "keys"
    raw = {
        "id": slug,
        "name": data.get("name", path.stem),
        "version": "keys",
        "citation": f"scoring key {path.name}",
        "licence": "as the data's owner specifies",
        "instructions": "(item data analysed from a file)",
        "response_scale": {"min": low, "max": high, "labels": {v: str(v) for v in range(low, high + 1)}},
        "items": [{"id": item, "text": item, "reverse_keyed": reverse} for item, reverse in items.items()],
        "scales": scale_entries,
    }
    return inventory_from_data(raw, str(path))


def load_item_data(path: Path, inventory: Inventory) -> pd.DataFrame:
    """Read respondents x items; every item of the inventory must be a column with values in range.

    Empty cells are missing values (NaN). Extra columns are ignored. Sizes are bounded
    (:mod:`psychometrics.limits`: bytes, rows, rows x items, characters in a cell).
    """
    header, rows = _read_csv(path)
    if not header:
        raise PsytestError(f"{path}: empty file; expected a header row of item ids")
    header = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for position, name in enumerate(header, 1):
        if name in seen and name:
            raise PsytestError(f"{path}: column '{name}' appears twice (columns {seen[name]} and {position}); "
                               "each item needs exactly one column")
        seen.setdefault(name, position)
    missing = [item.id for item in inventory.items if item.id not in header]
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise PsytestError(f"{path}: no column for item(s) {shown}; columns must be the item ids")
    # blank lines are not respondents; record numbers stay those of the file
    numbered = [(number, row) for number, row in enumerate(rows, 2) if any(cell.strip() for cell in row)]
    for number, row in numbered:
        if any(cell.strip() for cell in row[len(header):]):  # a stray comma shifts later cells into wrong columns
            raise PsytestError(f"{path}: row {number} has {len(row)} cells but the header has {len(header)}; "
                               "quote cells that contain commas, or fix the row")
    index = {name: i for i, name in enumerate(header)}
    if len(rows) * len(inventory.items) > limits.ITEM_DATA_CELLS:
        raise PsytestError(f"{path}: {len(rows):,} rows x {len(inventory.items):,} items is more than the "
                           f"{limits.ITEM_DATA_CELLS:,} cells one analysis takes; analyse a sample or fewer items")
    low, high = inventory.response_scale.min, inventory.response_scale.max
    matrix = np.full((len(numbered), len(inventory.items)), np.nan)
    for r, (number, row) in enumerate(numbered):
        for c, item in enumerate(inventory.items):
            cell = row[index[item.id]].strip() if index[item.id] < len(row) else ""
            if cell == "" or cell.upper() == "NA":
                continue
            try:
                value = float(cell)
            except ValueError:
                raise PsytestError(
                    f"{path}: row {number}, column {item.id}: {cell!r} is not a number"
                ) from None
            if math.isnan(value) or not low <= value <= high:
                raise PsytestError(
                    f"{path}: row {number}, column {item.id}: value {cell} is outside the response range {low}..{high}"
                )
            matrix[r, c] = value
    if not numbered:
        raise PsytestError(f"{path}: no data rows below the header")
    return pd.DataFrame(matrix, columns=[item.id for item in inventory.items])


def _read_csv(path: Path) -> tuple[list[str] | None, list[list[str]]]:
    """(header, rows) of a CSV file, within the size limits; every problem one PsytestError."""
    try:
        if path.is_file() and path.stat().st_size > limits.ITEM_DATA_BYTES:
            raise PsytestError(f"{path}: larger than the {limits.ITEM_DATA_BYTES:,} bytes a data file may have; "
                               "analyse a sample of it")
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(_bounded_lines(handle, path))
            try:
                header = next(reader, None)
                rows: list[list[str]] = []
                for row in reader:
                    if len(rows) == limits.ITEM_DATA_ROWS:
                        raise PsytestError(f"{path}: more than {limits.ITEM_DATA_ROWS:,} rows; analyse a sample")
                    rows.append(row)
            except csv.Error as exc:
                if "field larger than field limit" in str(exc):
                    problem = f"a cell longer than the {csv.field_size_limit():,} characters allowed"
                else:
                    problem = f"not readable as CSV ({exc})"
                raise PsytestError(f"{path}: line {reader.line_num}: {problem}; item data are numbers, one "
                                   "respondent a row") from None
    except FileNotFoundError:
        raise PsytestError(f"{path}: no such file; check the path") from None
    except UnicodeDecodeError:
        raise PsytestError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    return header, rows


def _bounded_lines(handle, path: Path):
    """The lines of ``handle``, none read past :data:`psychometrics.limits.CSV_LINE_CHARS` characters."""
    while line := handle.readline(limits.CSV_LINE_CHARS + 1):
        if len(line) > limits.CSV_LINE_CHARS:
            raise PsytestError(f"{path}: a line longer than {limits.CSV_LINE_CHARS:,} characters; item data are "
                               "numbers, one respondent a line")
        yield line


def keyed(matrix: pd.DataFrame, inventory: Inventory) -> pd.DataFrame:
    """Reverse-keyed items turned around: ``min + max - x``."""
    rs = inventory.response_scale
    out = matrix.copy()
    for item in inventory.items:
        if item.reverse_keyed and item.id in out:
            out[item.id] = rs.min + rs.max - out[item.id]
    return out


def read_reference_loadings(path: Path | None) -> pd.DataFrame | None:
    """A reference loading matrix (``--reference-loadings``): first column the item ids, one numeric column
    per factor; each item and factor once (pandas would rename a repeated column and keep both rows of a
    repeated item)."""
    if path is None:
        return None
    path = Path(path)
    try:
        limits.check_regular_file(path, limits.JSON_BYTES, "CSV of loadings")
    except OSError as exc:
        raise PsytestError(f"--reference-loadings {path}: cannot read ({exc})") from None
    try:
        frame = pd.read_csv(path, index_col=0)
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = [name.strip() for name in next(csv.reader(handle), [])]
    except (OSError, ValueError, csv.Error) as exc:
        raise PsytestError(f"--reference-loadings {path}: cannot read ({exc})") from None
    repeated = next((n for i, n in enumerate(header) if n and n in header[:i]), None)
    if repeated is None and frame.index.has_duplicates:
        repeated = str(frame.index[frame.index.duplicated()][0])
    if repeated is not None:
        raise PsytestError(f"--reference-loadings {path}: '{repeated}' appears twice; give each item one row and "
                           "each factor one column")
    if frame.empty or not all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes):
        raise PsytestError(f"--reference-loadings {path}: expected item ids then numeric loadings, one column per factor")
    return frame
