"""Scores from elsewhere for ``psytest validity --scores SCORES.csv --pairs PAIRS.yaml``.

Published or hand-collected data enter the same analysis as psytest's own runs. ``SCORES.csv`` has one
row per observation: ``model`` and ``respondent`` (required), an optional ``sample``, optional
``target_<trait>`` columns (the persona's target level on a trait, constant within a respondent; ``<trait>``
is the name of the self-report column it targets, which is how the manipulation check and the analyses
given the target levels find it), then one
numeric column per measure (an empty cell or ``NA`` is missing). ``PAIRS.yaml`` is a list of
``{selfreport: COLUMN, behavior: COLUMN, sign: 1|-1}``: which self-report measure is expected to go with
which behaviour measure, and in which direction.

The rows become the frames of :mod:`psychometrics.validity.statistics`: the respondent is
``model x respondent`` (the ``persona`` of a run), each self-report column a trait measured by one scale
(inventory ``scores``), each behaviour column a task with one variant, and every row of a respondent one
sample; scores are averaged within the respondent, as run data are. The declared pairs replace the tasks'
own traits (:func:`~psychometrics.validity.statistics.validity_tables` with ``declared``); where a table
needs one trait per behaviour column (the manipulation check, behaviour as a method in the MTMM matrix), a
column's trait is that of its first pair. A column named in no pair is not analysed (a note says so): only
the pairs tell self-report from behaviour. Scores carry no items or variants, so no reliability is
estimated and no correlation corrected.

Every problem with either file is one :class:`~psychometrics.errors.PsytestError` naming the file, the
column or pairs entry, and the row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from psychometrics.errors import PsytestError

REQUIRED = ("model", "respondent")
TARGET_PREFIX = "target_"
INVENTORY = "scores"
VARIANT = "v01"
MIN_RESPONDENTS = 3
MAX_PAIRS = 10_000


@dataclass
class ScoresInput:
    """The frames of :func:`~psychometrics.validity.statistics.validity_tables` made from the two files."""

    selfreport: pd.DataFrame
    behavior: pd.DataFrame
    targets: pd.DataFrame | None
    declared: dict[tuple[str, str], int]
    notes: list[tuple[str, str]]


# ------------------------------------------------------------------------------------------ SCORES.csv


def _number(path: Path, line: int, column: str, cell: str) -> float:
    text = cell.strip()
    if text == "" or text.upper() == "NA":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise PsytestError(f"{path}: row {line}, column {column}: {cell!r} is not a number; give a number, or leave "
                           "the cell empty (or NA) for a missing value") from None
    if not math.isfinite(value):
        raise PsytestError(f"{path}: row {line}, column {column}: {cell!r} is not a finite number; leave the cell "
                           "empty (or NA) for a missing value")
    return value


def read_scores(path: Path) -> pd.DataFrame:
    """``SCORES.csv`` as a frame indexed by each row's line in the file: ``model``, ``respondent``, ``sample``
    (text; the line number when the file has no sample column) and every other column as floats."""
    from psychometrics.inventories.item_data import _read_csv

    path = Path(path)
    if path.is_dir():
        raise PsytestError(f"--scores {path}: a directory; give the CSV file of scores")
    header, rows = _read_csv(path)
    if not header or not any(name.strip() for name in header):
        raise PsytestError(f"--scores {path}: empty file; give a header row (model, respondent, then one column "
                           "per measure) and one row per observation")
    header = [name.strip() for name in header]
    for position, name in enumerate(header, 1):
        if not name:
            raise PsytestError(f"--scores {path}: header column {position} has no name; name every column")
        if name in header[:position - 1]:
            raise PsytestError(f"--scores {path}: column '{name}' appears twice in the header; give each column once")
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise PsytestError(f"--scores {path}: no column {', '.join(repr(m) for m in missing)}; the header needs "
                           "model and respondent, then one column per measure")
    numbered = [(line, row) for line, row in enumerate(rows, 2) if any(cell.strip() for cell in row)]
    if not numbered:
        raise PsytestError(f"--scores {path}: no data rows below the header; give one row per observation")
    measures = [name for name in header if name not in (*REQUIRED, "sample")]
    for name in measures:
        if name.startswith(TARGET_PREFIX) and not name[len(TARGET_PREFIX):]:
            raise PsytestError(f"--scores {path}: column '{name}' names no trait; call it target_<trait>")
    records, lines = [], []
    for line, row in numbered:
        if len(row) != len(header) and any(cell.strip() for cell in row[len(header):]) or len(row) < len(header):
            raise PsytestError(f"--scores {path}: row {line} has {len(row)} cells but the header has {len(header)}; "
                               "give every row one cell per column (quote cells that contain commas)")
        cells = dict(zip(header, row))
        record: dict[str, object] = {}
        lines.append(line)
        for name in (*REQUIRED, "sample"):
            if name not in cells:
                continue
            value = cells[name].strip()
            if not value:
                raise PsytestError(f"--scores {path}: row {line}, column {name}: empty; give every row its {name}")
            record[name] = value
        record.setdefault("sample", str(line))
        for name in measures:
            record[name] = _number(path, line, name, cells[name])
        records.append(record)
    frame = pd.DataFrame(records, columns=[*REQUIRED, "sample", *measures], index=pd.Index(lines, name="line"))
    repeated = frame.duplicated(["model", "respondent", "sample"], keep=False)
    if repeated.any():
        first, second = frame.index[repeated][:2]
        raise PsytestError(f"--scores {path}: rows {first} and {second} are the same model, respondent and sample; "
                           "give each observation once (number repeated draws in a sample column)")
    return frame


# ------------------------------------------------------------------------------------------ PAIRS.yaml


def read_pairs(path: Path, scores: pd.DataFrame, scores_path: Path) -> list[dict]:
    """``PAIRS.yaml``: the declared pairs, each ``{selfreport, behavior, sign}``, checked against the scores'
    measure columns. A column is self-report or behaviour, never both; a pair is declared once."""
    from psychometrics.yaml_io import load_yaml_file

    path = Path(path)
    if path.is_dir():
        raise PsytestError(f"--pairs {path}: a directory; give the YAML file of pairs")
    data = load_yaml_file(path)
    if data is None:
        raise PsytestError(f"--pairs {path}: empty file; give a list of {{selfreport: COLUMN, behavior: COLUMN, "
                           "sign: 1 or -1}}")
    if not isinstance(data, list) or not data:
        raise PsytestError(f"--pairs {path}: expected a non-empty list of {{selfreport: COLUMN, behavior: COLUMN, "
                           "sign: 1 or -1}}")
    if len(data) > MAX_PAIRS:
        raise PsytestError(f"--pairs {path}: more than {MAX_PAIRS:,} pairs; declare the pairs you expect")
    measures = [c for c in scores.columns if c not in (*REQUIRED, "sample")
                and not c.startswith(TARGET_PREFIX)]
    role: dict[str, tuple[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    pairs = []
    for number, entry in enumerate(data, 1):
        where = f"--pairs {path}: entry {number}"
        if not isinstance(entry, dict):
            raise PsytestError(f"{where}: expected {{selfreport: COLUMN, behavior: COLUMN, sign: 1 or -1}}")
        unknown = [str(k) for k in entry if k not in ("selfreport", "behavior", "sign")]
        if unknown:
            raise PsytestError(f"{where}: unknown key '{unknown[0]}'; the keys are selfreport, behavior and sign")
        absent = [k for k in ("selfreport", "behavior", "sign") if k not in entry]
        if absent:
            raise PsytestError(f"{where}: no '{absent[0]}'; give selfreport, behavior and sign")
        sign = entry["sign"]
        if isinstance(sign, bool) or sign not in (1, -1) or not isinstance(sign, int):
            raise PsytestError(f"{where}: sign {sign!r}; give 1 (behaviour rises with the self-report) or -1")
        columns = {}
        for key in ("selfreport", "behavior"):
            name = entry[key]
            if not isinstance(name, str) or not name.strip():
                raise PsytestError(f"{where}: {key} {name!r}; give the name of a column of {scores_path}")
            name = name.strip()
            if name in REQUIRED or name == "sample" or name.startswith(TARGET_PREFIX):
                raise PsytestError(f"{where}: {key} '{name}' is not a measure column of {scores_path}; name one of "
                                   f"{', '.join(measures) or '(none)'}")
            if name not in measures:
                raise PsytestError(f"{where}: {key} '{name}' is not a column of {scores_path}; name one of "
                                   f"{', '.join(measures) or '(none)'}")
            kind = "self-report" if key == "selfreport" else "behaviour"
            earlier = role.get(name)
            if earlier is not None and earlier[0] != kind:
                raise PsytestError(f"{where}: column '{name}' is {kind} here but {earlier[0]} in entry {earlier[1]}; a "
                                   "column is either self-report or behaviour")
            role.setdefault(name, (kind, number))
            columns[key] = name
        pair_key = (columns["selfreport"], columns["behavior"])
        if pair_key in seen:
            raise PsytestError(f"{where}: the pair {pair_key[0]} / {pair_key[1]} is already entry {seen[pair_key]}; "
                               "declare each pair once")
        seen[pair_key] = number
        pairs.append({"selfreport": pair_key[0], "behavior": pair_key[1], "sign": int(sign)})
    return pairs


# ------------------------------------------------------------------------------------------ the frames


def _targets(scores: pd.DataFrame, path: Path) -> pd.DataFrame | None:
    """``persona, trait, level`` rows from the target columns (a respondent's level must not vary)."""
    columns = [c for c in scores.columns if c.startswith(TARGET_PREFIX)]
    if not columns:
        return None
    rows = []
    for column in columns:
        trait = column[len(TARGET_PREFIX):]
        for respondent, part in scores.groupby("respondent", sort=True):
            values = part[column].dropna()
            if values.empty:
                raise PsytestError(f"--scores {path}: row {int(part.index[0])}, column {column}: respondent "
                                   f"'{respondent}' has no target level; give it on every row (0 for no target)")
            if values.nunique() > 1:
                lines = part.index[(part[column].notna() & (part[column] != values.iloc[0])).to_numpy()]
                raise PsytestError(f"--scores {path}: row {int(lines[0])}, column {column}: respondent "
                                   f"'{respondent}' has more than one target level; a respondent's target is one "
                                   "level (give respondents of different models distinct ids if their targets differ)")
            rows.append((respondent, trait, float(values.iloc[0])))
    return pd.DataFrame(rows, columns=["persona", "trait", "level"])


def scores_input(scores_path: Path, pairs_path: Path) -> ScoresInput:
    """Read and check both files; return the self-report, behaviour and target frames and the declared pairs."""
    scores = read_scores(Path(scores_path))
    pairs = read_pairs(Path(pairs_path), scores, Path(scores_path))
    selfs = list(dict.fromkeys(p["selfreport"] for p in pairs))
    behaviours = list(dict.fromkeys(p["behavior"] for p in pairs))
    notes = []
    unused = [c for c in scores.columns if c not in (*REQUIRED, "sample", *selfs, *behaviours)
              and not c.startswith(TARGET_PREFIX)]
    if unused:
        notes.append(("validity_pairs", f"column(s) in no pair, not analysed: {', '.join(unused)}"))
    for column in [*selfs, *behaviours]:
        if scores[column].notna().sum() == 0:
            raise PsytestError(f"--scores {scores_path}: column {column} has no value in any row; give its scores "
                               "or take it out of the pairs")
    first_trait: dict[str, tuple[str, int]] = {}
    for pair in pairs:
        first_trait.setdefault(pair["behavior"], (pair["selfreport"], pair["sign"]))
    respondent = scores["respondent"]
    sample = scores["sample"]
    self_rows = [pd.DataFrame({"model": scores["model"], "persona": respondent, "inventory": INVENTORY,
                               "scale": column, "trait": column, "trait_sign": 1, "score": scores[column],
                               "cell": sample}).dropna(subset=["score"]) for column in selfs]
    behavior_rows = [pd.DataFrame({"model": scores["model"], "persona": respondent, "sample": sample,
                                   "task": column, "variant": VARIANT, "trait": first_trait[column][0],
                                   "direction": first_trait[column][1],
                                   "outcome": scores[column].notna().map({True: "valid", False: "missing"}),
                                   "score": scores[column]}) for column in behaviours]
    selfreport = pd.concat(self_rows, ignore_index=True)
    behavior = pd.concat(behavior_rows, ignore_index=True)
    with_self = set(zip(selfreport["model"], selfreport["persona"]))
    with_behavior = set(zip(behavior.loc[behavior["score"].notna(), "model"],
                            behavior.loc[behavior["score"].notna(), "persona"]))
    both = with_self & with_behavior
    if len(both) < MIN_RESPONDENTS:
        raise PsytestError(f"--scores {scores_path}: {len(both)} respondent(s) (model x respondent) have both a "
                           f"self-report and a behaviour score; need at least {MIN_RESPONDENTS}")
    declared = {(p["selfreport"], p["behavior"]): p["sign"] for p in pairs}
    return ScoresInput(selfreport, behavior, _targets(scores, Path(scores_path)), declared, notes)
