"""Reproducing a study's derived files: are ``STUDY/report``, ``STUDY/comparison`` and ``STUDY/validity``
what the study's runs give?

``reproduce_study(STUDY)`` recomputes the study report's tables
(:func:`psychometrics.report.study_report.study_report_tables`), the comparison of the complete
questionnaire runs (:func:`psychometrics.analysis.compare.compare_runs`, study order) and, when the study
had tasks, the validity tables, into a temporary directory, and compares every stored CSV with its
recomputation cell by cell under the run reproduction's tolerance model
(:func:`psychometrics.analysis.reproduce.compare_csv`). Each directory is also checked as a derived set
(:func:`psychometrics.run.outputs.check_provenance`): a write cut short, a file changed after the set was
written, a file left from another write, or (the report) a set made from an earlier state of a run's store
is a mismatch too. The runs themselves are checked by ``psytest reproduce STUDY/runs/<model>``.

Nothing is written into the study directory; the runs' stores are opened read-only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from psychometrics.analysis.reproduce import MISMATCH_COLUMNS, ReproduceResult, _mismatch_frame, compare_csv
from psychometrics.errors import PsytestError

#: Stored CSVs nothing recomputes (the validity set's ``run_info.csv`` holds when it was written).
UNVERIFIED = {"validity": {"run_info.csv"}}


def _write(tables: dict[str, pd.DataFrame], into: Path) -> None:
    from psychometrics.analysis.tables import spreadsheet_safe

    into.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        if table is not None and not table.empty:
            (into / f"{name}.csv").write_text(spreadsheet_safe(table).to_csv(index=False), encoding="utf-8")


def _compare_directory(stored: Path, recomputed: Path, label: str, limit: int) -> tuple[list[str], list[dict], int,
                                                                                         list[str]]:
    """(files checked, mismatches kept, mismatch count, unverified) of one directory's CSVs."""
    checked, found, total, unverified = [], [], 0, []
    skip = UNVERIFIED.get(label, set())
    stored_names = {p.name for p in stored.glob("*.csv")}
    recomputed_names = {p.name for p in recomputed.glob("*.csv")}
    for name in sorted(stored_names | recomputed_names):
        where = f"{label}/{name}"
        if name in skip:
            unverified.append(where)
            continue
        if name not in recomputed_names:
            found.append({"file": where, "problem": "extra file", "stored": "present", "recomputed": "absent"})
            total += 1
        elif name not in stored_names:
            found.append({"file": where, "problem": "missing file", "stored": "absent", "recomputed": "present"})
            total += 1
        else:
            rows, count = compare_csv(stored / name, recomputed / name, where, limit)
            checked.append(where)
            found += rows
            total += count
    return checked, found, total, unverified


def reproduce_study(study_dir: Path, *, max_mismatches: int = 1000) -> ReproduceResult:
    """Check a study's report, comparison and validity directories (module docstring). Raises
    :class:`PsytestError` for a directory that is not a study, or a study with none of them written."""
    from psychometrics.analysis import across_models as am
    from psychometrics.analysis.compare import compare_runs
    from psychometrics.report.study_report import study_report_tables
    from psychometrics.run.outputs import check_provenance
    from psychometrics.study.runner import LAYOUT

    study_dir = Path(study_dir)
    runs = am.study_runs(study_dir)
    present = [name for name in ("report", "comparison", "validity") if (study_dir / LAYOUT[name]).is_dir()]
    if not present:
        raise PsytestError(f"{study_dir}: no report, comparison or validity directory to check; run psytest report "
                           f"{study_dir} first")
    notes: list[str] = []
    checked: list[str] = []
    found: list[dict] = []
    provenance: list[dict] = []
    unverified: list[str] = []
    total = 0
    with tempfile.TemporaryDirectory(prefix="psytest-reproduce-study-") as tmp:
        work = Path(tmp)
        recomputed: dict[str, dict[str, pd.DataFrame]] = {}
        inputs: dict = {}
        if "report" in present:
            tables = study_report_tables(study_dir, inputs)
            tables.pop("_summary", None)
            recomputed["report"] = tables
        if "comparison" in present and len(runs.questionnaire) >= 2:
            result = compare_runs(list(runs.questionnaire.values()))
            recomputed["comparison"] = {"differences": result.differences, "statistics": result.statistics}
        if "validity" in present and runs.behavior:
            from psychometrics.validity.tables import compute_validity

            labels = [label for label in runs.behavior if label in runs.questionnaire]
            validity = compute_validity([runs.questionnaire[label] for label in labels],
                                        [runs.behavior[label] for label in labels])
            recomputed["validity"] = validity
        for name in present:
            directory = study_dir / LAYOUT[name]
            if name not in recomputed:
                notes.append(f"{name}/: nothing recomputes it (too few complete runs); only its set is checked")
            else:
                _write(recomputed[name], work / name)
                files, rows, count, skipped = _compare_directory(directory, work / name, name, max_mismatches)
                checked += files
                found += rows
                total += count
                unverified += skipped
            problems, set_notes = check_provenance(directory, inputs if name == "report" else None, name)
            notes += set_notes
            for problem in problems:
                provenance.append({c: problem.get(c) for c in MISMATCH_COLUMNS})
                if problem.get("note"):
                    notes.append(problem["note"])
    notes += [f"left out of the study's tables (incomplete): {line}" for line in runs.skipped]
    notes.append(f"the runs themselves: psytest reproduce {study_dir}/runs/<model>")
    found = provenance + found  # first: a stale or mixed set explains the mismatches after it
    total += len(provenance)
    return ReproduceResult(study_dir, checked, _mismatch_frame(found[:max_mismatches]), total, unverified, None, notes)
