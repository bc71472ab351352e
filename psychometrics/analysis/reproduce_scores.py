"""Reproducing a validity directory written from a scores file (``psytest validity --scores ... --pairs``).

``psytest reproduce DIR`` on such a directory reads the scores and pairs files its provenance record names
(paths relative to ``DIR``), recomputes every validity table with the recorded bootstrap and seed into a
temporary directory and compares each stored CSV with its recomputation cell by cell
(:func:`psychometrics.analysis.reproduce.compare_csv`). The set itself is checked as a derived set
(:func:`psychometrics.run.outputs.check_provenance`), including whether either input file changed since
(``stale``). Nothing is written into ``DIR``.
"""

from __future__ import annotations

from pathlib import Path

from psychometrics.errors import PsytestError


def is_scores_validity(directory: Path) -> bool:
    """Whether ``directory`` holds a validity set written from a scores file."""
    from psychometrics.run.outputs import read_provenance

    if not (Path(directory) / "provenance.json").is_file():
        return False
    record = read_provenance(Path(directory)) or {}
    inputs = record.get("inputs") or {}
    return record.get("kind") == "validity" and isinstance(inputs, dict) and "scores" in inputs and "pairs" in inputs


def reproduce_scores_validity(directory: Path, *, max_mismatches: int = 1000):
    """Recompute and compare the directory's tables (module docstring); a :class:`ReproduceResult`."""
    from psychometrics.analysis.reproduce_validity import compare_validity_set
    from psychometrics.run.outputs import read_provenance
    from psychometrics.validity.tables import compute_scores_validity, scores_inputs

    directory = Path(directory)
    record = read_provenance(directory) or {}
    inputs, options = record.get("inputs") or {}, record.get("options") or {}
    paths = {}
    for key in ("scores", "pairs"):
        entry = inputs.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise PsytestError(f"{directory}/provenance.json: no {key} file recorded; write the set again with "
                               "psytest validity --scores --pairs")
        paths[key] = (directory / entry["file"]).resolve()
        if not paths[key].is_file():
            raise PsytestError(f"{directory}: its {key} file {entry['file']} (relative to it) is missing; restore it")
    n_boot, seed = int(options.get("bootstrap", 2000)), int(options.get("seed", 0))
    tables = compute_scores_validity(paths["scores"], paths["pairs"], n_boot=n_boot, seed=seed)
    return compare_validity_set(directory, scores_inputs(paths["scores"], paths["pairs"], directory), tables,
                                max_mismatches, f"recomputed from {inputs['scores']['file']} and "
                                f"{inputs['pairs']['file']} (bootstrap {n_boot}, seed {seed})")
