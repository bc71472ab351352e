"""``psytest validity``: read questionnaire and behaviour runs, compute the validity tables, write them.

The runs are joined on the respondent (model x persona): the questionnaire and behaviour runs of a study
use the same model(s) and persona set, and runs whose persona sets differ are refused
(:mod:`psychometrics.run.persona_match`). Persona targets for the manipulation check come from the run
manifests (the levels each respondent's persona set), or, for older runs, from the persona set by name.
Output: every table as CSV, ``validity.html`` (self-contained, like the run report) and ``validity.json``
with the headline numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import pandas as pd

from psychometrics.errors import PsytestError

if TYPE_CHECKING:
    from psychometrics.behavior.task import Task


@dataclass
class ValidityResult:
    out_dir: Path
    tables: dict[str, pd.DataFrame]
    files: list[Path] = field(default_factory=list)
    equivalence_bound: float = 0.2

    def headline(self) -> dict:
        """What ``validity.json`` leads with: per scope the count of declared pairs under each conclusion
        (:mod:`psychometrics.validity.incremental`) and the rules that give them; the declared pairs with
        their conclusion and reason, r, the partial r beyond the persona's targets, the equivalence test and
        the corrected r; then the dissociation indices (plain and incremental) with the share of declared
        pairs with the declared sign, their mean r in the declared direction and mean power to detect r = .3;
        the persona-effect ratios; the notes."""
        from psychometrics.validity.incremental import CONCLUSIONS, conclusion_rules

        dissociation = self.tables.get("dissociation", pd.DataFrame())
        pairs = self.tables.get("validity_pairs", pd.DataFrame())
        incremental = self.tables.get("validity_incremental", pd.DataFrame())
        ratio = self.tables.get("persona_effect", pd.DataFrame())
        overall = dissociation[dissociation["trait"] == "all"] if not dissociation.empty else dissociation
        declared = pairs[pairs["declared"]] if not pairs.empty else pairs
        keep = ["scope", "trait", "task", "expected_sign", "n", "r", "ci_low", "ci_high", "p", "p_bh_declared",
                "confirmed", "power_r30", "rel_self", "rel_behavior", "r_corrected", "r_corrected_low",
                "r_corrected_high", "note"]
        rows = _records(declared[[c for c in keep if c in declared]]) if not declared.empty else []
        if not incremental.empty:
            extra = {(r["scope"], r["trait"], r["task"]): r for r in _records(incremental)}
            taken = ["conclusion", "reason", "basis", "partial_r", "delta_r2", "p_incremental", "p_bh_incremental",
                     "incremental_confirmed", "p_equivalence", "equivalent", "manipulation_r", "manipulation_p"]
            rows = [{**{k: row[k] for k in ("scope", "trait", "task")},
                     **{k: extra.get((row["scope"], row["trait"], row["task"]), {}).get(k) for k in taken},
                     **{k: v for k, v in row.items() if k not in ("scope", "trait", "task")}} for row in rows]
        conclusions = []
        if not incremental.empty:
            for scope, part in incremental.groupby("scope", sort=False):
                counts = part["conclusion"].value_counts()
                conclusions.append({"scope": scope, "declared": len(part),
                                    **{label: int(counts.get(label, 0)) for label in CONCLUSIONS}})
        return {
            "conclusions": conclusions,
            "conclusion_rules": [{"label": label, "rule": rule} for label, rule in conclusion_rules(self.equivalence_bound)],
            "declared_pairs": rows,
            "dissociation": _records(overall) if not overall.empty else [],
            "persona_effect": _records(ratio) if not ratio.empty else [],
            "notes": _records(self.tables["notes"]) if "notes" in self.tables else [],
        }

    def payload(self) -> dict:
        return {"out_dir": str(self.out_dir), "files": [p.name for p in self.files], **self.headline()}


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def compute_validity(selfreport_dirs: list[Path], behavior_dirs: list[Path], *, n_boot: int = 2000, seed: int = 0,
                     options: tuple[str, str] = ("--selfreport", "--behavior"),
                     equivalence_bound: float = 0.2) -> dict[str, pd.DataFrame]:
    """Every validity table for the given questionnaire and behaviour runs. Runs whose persona sets differ
    are refused (:func:`psychometrics.run.persona_match.check_same_personas`) before anything is read;
    ``options`` name the two kinds of run in that message (the command's options)."""
    from psychometrics.behavior.analysis import by_measure, planned_behavior_frame
    from psychometrics.validity.behavior_scores import mark_ratio_tasks
    from psychometrics.run.owner import open_run
    from psychometrics.run.persona_match import check_same_personas, persona_targets
    from psychometrics.validity.statistics import read_selfreport, validity_tables

    if not selfreport_dirs or not behavior_dirs:
        raise PsytestError("psytest validity: give at least one --selfreport run and one --behavior run, or --scores "
                           "SCORES.csv --pairs PAIRS.yaml")
    manifests = []
    for run_dir in selfreport_dirs:
        run = open_run(run_dir, expect=None)
        if run.kind == "behavior":
            raise PsytestError(f"{options[0]} {run_dir}: a behaviour run; give it with {options[1]}")
        manifests.append(run.manifest)
    seen: dict[Path, str] = {}
    for option, run_dir in [*((options[0], d) for d in selfreport_dirs), *((options[1], d) for d in behavior_dirs)]:
        resolved = Path(run_dir).resolve()
        if resolved in seen:  # its respondents would enter twice
            raise PsytestError(f"{option} {run_dir}: this run is given twice ({seen[resolved]} too); give each run once")
        seen[resolved] = f"{option} {run_dir}"
    behavior_runs = [open_run(run_dir, expect="behavior") for run_dir in behavior_dirs]
    check_same_personas([*((f"{options[0]} {d}", m) for d, m in zip(selfreport_dirs, manifests)),
                         *((f"{options[1]} {d}", r.manifest) for d, r in zip(behavior_dirs, behavior_runs))])
    frames: list[pd.DataFrame] = []
    variant_order: dict[str, list[str]] = {}
    run_notes: list[tuple[str, str]] = []
    all_tasks: dict[str, Task] = {}
    for run_dir, run in zip(behavior_dirs, behavior_runs):
        manifests.append(run.manifest)
        tasks = run.tasks
        all_tasks.update(tasks)
        for task in tasks.values():
            variant_order.setdefault(task.id, [v.id for v in task.variants])
        run_notes += [("behavior", f"{run_dir}: the scoring of '{t}' changed since the run; its stored replies are "
                                  "scored with the current task file") for t in run.changed_scoring()]
        frame, plan_notes = planned_behavior_frame(run)
        frames.append(frame)
        run_notes += [("behavior", note) for note in plan_notes]
    selfreport, items = read_selfreport([Path(d) for d in selfreport_dirs])
    behavior = mark_ratio_tasks(pd.concat(frames, ignore_index=True), all_tasks)  # reply length: a ratio measure
    behavior, variant_order = by_measure(behavior, variant_order)  # text and probability scores: two measures
    tables = validity_tables(selfreport, behavior, persona_targets(manifests), items=items,
                             variant_order=variant_order, seed=seed, n_boot=n_boot,
                             equivalence_bound=equivalence_bound)
    if run_notes:
        tables["notes"] = pd.concat([tables["notes"], pd.DataFrame(run_notes, columns=["table", "note"])],
                                    ignore_index=True)
    return tables


def validity_page(tables: dict[str, pd.DataFrame], title: str, sources: list[str], csv_names: list[str],
                  dpi: int = 96, what_was_run: str | None = None, intro: str | None = None,
                  equivalence_bound: float = 0.2) -> str:
    """``validity.html``: the validity section alone, in the report's self-contained page."""
    from psychometrics import __version__
    from psychometrics.report.html import render_html
    from psychometrics.report.validity_section import INTRO, validity_section

    section = validity_section(tables, dpi=dpi, intro=intro or INTRO, equivalence_bound=equivalence_bound)
    context = {
        "title": title,
        # the run report's verdict-first head has nothing to say about a validity page
        "what_was_run": what_was_run or f"Self-report vs behaviour of {len(sources)} runs.",
        "verdict": None,
        "evidence": [],
        "run_dir": ", ".join(sources),
        "run_info": [("runs" if what_was_run is None else "inputs", ", ".join(sources))],
        "sections": [section] if section else [],
        "replies": None,
        "files": sorted(csv_names) + ["validity.html", "validity.json"],
        "generator": f"psytest {__version__}",
    }
    return render_html(context)


def run_validity(selfreport_dirs: list[Path], behavior_dirs: list[Path], out: Optional[Path], *,
                 n_boot: int = 2000, seed: int = 0, equivalence_bound: float = 0.2) -> ValidityResult:
    """Compute and write everything (one set, :class:`psychometrics.run.outputs.DerivedSet`); ``out`` defaults
    to ``validity/`` in the first behaviour run."""
    from psychometrics.run.outputs import DerivedSet, claim_directory

    if not behavior_dirs:
        raise PsytestError("psytest validity: give at least one --selfreport run and one --behavior run, or --scores "
                           "SCORES.csv --pairs PAIRS.yaml")
    default = Path(behavior_dirs[0]) / "validity"
    out_dir = Path(out) if out is not None else default
    owned = out_dir.resolve() == default.resolve()
    from psychometrics.validity.incremental import check_bound

    check_bound(equivalence_bound)  # a bad option is refused before the work
    claim_directory(out_dir, "validity", owned=owned, create=False)  # refused before the work, not after
    tables = compute_validity(selfreport_dirs, behavior_dirs, n_boot=n_boot, seed=seed,
                              equivalence_bound=equivalence_bound)
    sources = [str(d) for d in [*selfreport_dirs, *behavior_dirs]]
    run_info = pd.DataFrame({"field": ["runs"], "value": [", ".join(sources)]})
    csv_names = [f"{name}.csv" for name, table in {**tables, "run_info": run_info}.items()
                 if table is not None and not table.empty]
    page = validity_page(tables, "psytest: self-report vs behaviour", sources, csv_names,
                         equivalence_bound=equivalence_bound)
    result = ValidityResult(out_dir, tables, [], equivalence_bound)
    inputs = {"runs": runs_inputs(selfreport_dirs, behavior_dirs, out_dir)}
    with DerivedSet(out_dir, "validity", inputs=inputs, owned=owned,
                    options={"bootstrap": n_boot, "seed": seed, "equivalence_bound": equivalence_bound}) as validity:
        result.files += validity.write_tables({**tables, "run_info": run_info})
        result.files.append(validity.write_text("validity.html", page))
        result.files.append(validity.write_text(
            "validity.json", json.dumps(result.headline(), indent=2, ensure_ascii=False) + "\n"))
    return result


def runs_inputs(selfreport_dirs: list[Path], behavior_dirs: list[Path], out_dir: Path,
                given: list | None = None) -> list[dict]:
    """The provenance ``inputs`` of a validity set made from runs: per run the path as given (``given``
    overrides it, as recorded), its role (``selfreport`` / ``behavior``), its path relative to the set's
    directory (so a committed set is recomputed where it is checked out: ``psytest reproduce DIR``) and
    what its tables are made from (manifest sha256, store fingerprint)."""
    import os

    from psychometrics.run.owner import open_run

    roles = [("selfreport", Path(d)) for d in selfreport_dirs] + [("behavior", Path(d)) for d in behavior_dirs]
    return [{"run": str(given[i]) if given and given[i] is not None else str(d), "role": role,
             "relative": Path(os.path.relpath(d.resolve(), Path(out_dir).resolve())).as_posix(),
             **open_run(d, expect=None).inputs()} for i, (role, d) in enumerate(roles)]


def scores_inputs(scores: Path, pairs: Path, out_dir: Path) -> dict:
    """The provenance ``inputs`` of a ``--scores`` validity set: each file's path relative to the set's
    directory (so a committed directory is checked where it is checked out) and its sha256."""
    import os

    from psychometrics.run.outputs import file_sha256

    return {key: {"file": Path(os.path.relpath(Path(path).resolve(), Path(out_dir).resolve())).as_posix(),
                  "sha256": file_sha256(Path(path))} for key, path in (("scores", scores), ("pairs", pairs))}


def compute_scores_validity(scores: Path, pairs: Path, *, n_boot: int = 2000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every validity table for scores from elsewhere (:mod:`psychometrics.validity.scores_input`): the
    declared pairs of ``pairs`` over the respondents of ``scores``."""
    from psychometrics.validity.scores_input import scores_input
    from psychometrics.validity.statistics import validity_tables

    data = scores_input(Path(scores), Path(pairs))
    tables = validity_tables(data.selfreport, data.behavior, data.targets, seed=seed, n_boot=n_boot,
                             declared=data.declared)
    tables["behavior_reliability"] = pd.DataFrame()  # one score per observation: no variants to split
    notes = tables["notes"]
    notes = notes[~notes["note"].str.startswith(("no self-report item data", "no persona targets"))]
    added = [*data.notes, ("validity_pairs", "scores from a file: no item data or task variants, so no reliabilities "
                           "and no correction for unreliability")]
    if data.targets is None:
        added.append(("manipulation_check", "no target_<trait> columns: no manipulation check"))
    tables["notes"] = pd.concat([notes, pd.DataFrame(added, columns=["table", "note"])], ignore_index=True)
    return tables


def run_scores_validity(scores: Path, pairs: Path, out: Path, *, n_boot: int = 2000, seed: int = 0) -> ValidityResult:
    """``psytest validity --scores SCORES.csv --pairs PAIRS.yaml --out DIR``: compute and write every table,
    ``validity.html`` and ``validity.json`` as :func:`run_validity` does for runs."""
    from psychometrics.report.validity_section import SCORES_INTRO
    from psychometrics.run.outputs import DerivedSet, claim_directory

    if out is None:
        raise PsytestError("psytest validity --scores: give --out DIR for the tables")
    out_dir = Path(out)
    claim_directory(out_dir, "validity", owned=False, create=False)
    tables = compute_scores_validity(scores, pairs, n_boot=n_boot, seed=seed)
    sources = [Path(scores).name, Path(pairs).name]
    run_info = pd.DataFrame({"field": ["scores", "pairs"], "value": sources})
    csv_names = [f"{name}.csv" for name, table in {**tables, "run_info": run_info}.items()
                 if table is not None and not table.empty]
    page = validity_page(tables, "psytest: self-report vs behaviour (scores from a file)", sources, csv_names,
                         intro=SCORES_INTRO, what_was_run=f"Self-report vs behaviour of the scores in {sources[0]}, pairs declared in "
                                      f"{sources[1]}.")
    result = ValidityResult(out_dir, tables, [])
    inputs = scores_inputs(Path(scores), Path(pairs), out_dir)
    with DerivedSet(out_dir, "validity", inputs=inputs, owned=False,
                    options={"bootstrap": n_boot, "seed": seed}) as validity:
        result.files += validity.write_tables({**tables, "run_info": run_info})
        result.files.append(validity.write_text("validity.html", page))
        result.files.append(validity.write_text(
            "validity.json", json.dumps(result.headline(), indent=2, ensure_ascii=False) + "\n"))
    return result
