"""Reproducing a validity directory written from runs (``psytest validity --selfreport ... --behavior ...``).

``psytest reproduce DIR`` on such a directory opens the runs its provenance record names (by their paths
relative to ``DIR``, so a committed study is checked wherever it is checked out), recomputes every validity
table with the recorded bootstrap, seed and equivalence bound into a temporary directory, and compares each
stored CSV with its recomputation cell by cell (:func:`psychometrics.analysis.reproduce.compare_csv`). The
set is checked as a derived set too (:func:`psychometrics.run.outputs.check_provenance`): a run whose
manifest or store changed since shows as ``stale``. Nothing is written into ``DIR`` or the runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from psychometrics.errors import PsytestError


def _runs(directory: Path) -> list[dict] | None:
    from psychometrics.run.outputs import read_provenance

    if not (Path(directory) / "provenance.json").is_file():
        return None
    record = read_provenance(Path(directory)) or {}
    runs = (record.get("inputs") or {}).get("runs") if isinstance(record.get("inputs"), dict) else None
    if record.get("kind") != "validity" or not isinstance(runs, list) or not runs:
        return None
    return runs if all(isinstance(r, dict) for r in runs) else None


def is_runs_validity(directory: Path) -> bool:
    """Whether ``directory`` holds a validity set written from questionnaire and behaviour runs."""
    return _runs(directory) is not None


def reproduce_runs_validity(directory: Path, *, max_mismatches: int = 1000):
    """Recompute and compare the directory's tables (module docstring); a :class:`ReproduceResult`."""
    from psychometrics.run.outputs import read_provenance
    from psychometrics.validity.tables import compute_validity, runs_inputs

    directory = Path(directory)
    runs = _runs(directory) or []
    record = read_provenance(directory) or {}
    options = record.get("options") or {}
    paths: dict[str, list[Path]] = {"selfreport": [], "behavior": []}
    for entry in runs:
        relative, role = entry.get("relative"), entry.get("role")
        if not isinstance(relative, str) or role not in paths:
            raise PsytestError(f"{directory}/provenance.json: run {entry.get('run')!r} has no recorded role and "
                               "relative path (written by an older psytest); write the set again with psytest validity")
        path = (directory / relative).resolve()
        if not path.is_dir():
            raise PsytestError(f"{directory}: its {role} run {relative} (relative to it) is missing; restore it")
        paths[role].append(path)
    n_boot, seed = int(options.get("bootstrap", 2000)), int(options.get("seed", 0))
    bound = float(options.get("equivalence_bound", 0.2))
    current = runs_inputs(paths["selfreport"], paths["behavior"], directory, given=[r.get("run") for r in runs])
    tables = compute_validity(paths["selfreport"], paths["behavior"], n_boot=n_boot, seed=seed, equivalence_bound=bound)
    return compare_validity_set(directory, {"runs": current}, tables, max_mismatches,
                                f"recomputed from {len(paths['selfreport'])} self-report and {len(paths['behavior'])} "
                                f"behaviour run(s) (bootstrap {n_boot}, seed {seed}, equivalence bound {bound})")


def compare_validity_set(directory: Path, current_inputs: dict, tables: dict, max_mismatches: int, source: str):
    """A :class:`ReproduceResult` for the validity set in ``directory`` against ``tables`` recomputed from
    its inputs: the set checked as a derived set (changed or stale inputs, files changed since written)
    and every stored CSV compared cell by cell; ``source`` says what the tables were recomputed from.
    Shared by the sets made from runs and from a scores file."""
    from psychometrics.analysis.reproduce import MISMATCH_COLUMNS, ReproduceResult, _mismatch_frame
    from psychometrics.analysis.reproduce_study import _compare_directory, _write
    from psychometrics.run.outputs import check_provenance

    problems, notes = check_provenance(directory, current_inputs, "validity")
    found = [{c: p.get(c) for c in MISMATCH_COLUMNS} for p in problems]
    notes += [p["note"] for p in problems if p.get("note")]
    with tempfile.TemporaryDirectory(prefix="psytest-reproduce-validity-") as tmp:
        work = Path(tmp) / "validity"
        _write(tables, work)
        checked, rows, count, unverified = _compare_directory(directory, work, "validity", max_mismatches)
    found += rows
    notes.append(source)
    return ReproduceResult(directory, checked, _mismatch_frame(found[:max_mismatches]), count + len(problems),
                           unverified, None, notes)
