"""Run a study: every model's questionnaire (and behaviour) run, then the comparison and validity tables.

The study directory::

    STUDY/study.json                 what was run: the study file's text and sha256, each run and its outcome
    STUDY/runs/<slug>/               one questionnaire run per model (psytest administer's run directory)
    STUDY/runs/<slug>-behavior/      one behaviour run per model, when the study has tasks
    STUDY/comparison/                psytest compare of all the questionnaire runs (the first model is the reference)
    STUDY/validity/                  psytest validity of all self-report and behaviour runs, when there are tasks
    STUDY/report/                    the combined report of the models side by side (psytest report STUDY
                                     rebuilds it; psychometrics.report.study_report)

Each run goes through the same path as ``psytest administer`` / ``psytest behave`` with ``--out`` its
directory, so it is resumable exactly as they are: running the study again sends only what is missing, and a
study file edited so that a model's run would differ is refused by that run's identity check. Everything the
file names is resolved before the first request, so a typo is one line before any work. A model whose
requests fail does not stop the others: its outcome is recorded and the study result lists it; runs with
failures are left out of the comparison and the validity tables (they are incomplete) until a re-run
completes them.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from psychometrics.errors import EndpointDown, EndpointStopped, PsytestError
from psychometrics.run.outputs import is_temporary
from psychometrics.study.spec import Study

if TYPE_CHECKING:
    from psychometrics.analysis.compare import CompareResult
    from psychometrics.report import ReportPaths
    from psychometrics.validity.tables import ValidityResult

MANIFEST = "study.json"
MANIFEST_KIND = "psytest-study"
MANIFEST_FORMAT = 1
#: What a study directory may hold besides its manifest (anything else: not a study directory)
LAYOUT = {"runs": "runs", "comparison": "comparison", "validity": "validity", "report": "report"}


@dataclass
class StudyRun:
    """One run of a study and how it went."""

    model: str
    slug: str
    kind: str  # "questionnaire" or "behavior"
    run_dir: Path
    planned: int = 0
    already_answered: int = 0
    sent: int = 0
    failed: int = 0
    first_error: Optional[str] = None
    done: bool = False
    cut_off: int = 0  # requests or conversations whose reply was cut off at max_tokens (unread)

    def record(self, root: Path) -> dict:
        return {"model": self.model, "slug": self.slug, "kind": self.kind,
                "run_dir": self.run_dir.relative_to(root).as_posix(), "status": self.status,
                "planned": self.planned, "already_answered": self.already_answered, "sent": self.sent,
                "failed": self.failed}

    @property
    def status(self) -> str:
        return "failed" if self.failed else ("complete" if self.done else "pending")


@dataclass
class StudyResult:
    """A finished study: its runs, the comparison and validity results (None when not made) and notes."""

    study: Study
    runs: list[StudyRun]
    comparison: Optional[CompareResult] = None
    validity: Optional[ValidityResult] = None
    report: Optional[ReportPaths] = None
    notes: list[str] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return self.study.out

    @property
    def cut_off_models(self) -> list[str]:
        """Models with a run where most replies were cut off at max_tokens, in study order."""
        cut = {run.model for run in self.runs if run.sent - run.failed > 0 and run.cut_off * 2 > run.sent - run.failed}
        return [model for model in self.study.spec.models if model in cut]

    @property
    def failed_models(self) -> list[str]:
        """Models with at least one failed request or conversation, in study order."""
        failed = {run.model for run in self.runs if run.failed}
        return [model for model in self.study.spec.models if model in failed]

    def paths(self) -> dict[str, Optional[Path]]:
        """Where the study's outputs are (None for those not made)."""
        root = self.study.out
        return {"study": root / MANIFEST, "runs": root / LAYOUT["runs"],
                "comparison": root / LAYOUT["comparison"] if self.comparison is not None else None,
                "validity": root / LAYOUT["validity"] if self.validity is not None else None,
                "report": self.report.html if self.report is not None else None}

    def as_dict(self) -> dict:
        return {"study_dir": str(self.study.out), "failed_models": self.failed_models,
                "cut_off_models": self.cut_off_models,
                "runs": [run.record(self.study.out) for run in self.runs],
                "paths": {k: (str(v) if v is not None else None) for k, v in self.paths().items()},
                "notes": self.notes}


def claim_study_directory(directory: Path, create: bool = True) -> None:
    """Check that ``directory`` is new, empty or a study directory psytest wrote (its ``study.json``);
    one line otherwise, so a folder of someone's files is never written into."""
    from psychometrics import limits

    if directory.exists() and not directory.is_dir():
        raise PsytestError(f"study out {directory}: is a file, not a directory; give a directory")
    if directory.is_dir():
        manifest = directory / MANIFEST
        if manifest.exists():
            data = limits.read_json(manifest, "study manifest")
            if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
                raise PsytestError(f"study out {directory}: its {MANIFEST} is not a psytest study's; give the "
                                   "study its own directory")
        else:  # a temporary file left by a manifest write cut short is psytest's, not the user's
            entries = sorted(p.name for p in directory.iterdir() if not is_temporary(p.name))
            if entries:
                shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
                raise PsytestError(f"study out {directory}: holds files psytest did not write ({shown}); give the "
                                   "study a new or empty directory")
    if create:
        directory.mkdir(parents=True, exist_ok=True)


def write_manifest(result: StudyResult, state: str) -> Path:
    """``study.json``: the study file (text, sha256, path), each run's record, the outputs, and ``state``
    (``running`` while runs are sent, ``complete`` at the end). Written whole and fsynced."""
    from psychometrics import __version__
    from psychometrics.run.outputs import atomic_write

    study, root = result.study, result.study.out
    made = result.paths()
    manifest = {
        "kind": MANIFEST_KIND, "format": MANIFEST_FORMAT, "psytest_version": __version__, "state": state,
        "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "study_file": str(study.path), "study_sha256": study.sha256, "study_text": study.text,
        "models": [{"model": model, "slug": study.slugs[model]} for model in study.spec.models],
        "runs": [run.record(root) for run in result.runs],
        "comparison": LAYOUT["comparison"] if made["comparison"] else None,
        "validity": LAYOUT["validity"] if made["validity"] else None,
        "report": LAYOUT["report"] if made["report"] else None,
        "layout": dict(LAYOUT), "failed_models": result.failed_models, "notes": result.notes,
    }
    return atomic_write(root / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", fsync=True)


def resolve_everything(study: Study) -> None:
    """Resolve every inventory, persona set, task and model the study names, so bad input is one line before
    anything is sent (each message names the study file and key)."""
    from psychometrics.design.plan import design_from_mapping
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models import resolve_model

    source = str(study.path)

    def named(key: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except PsytestError as exc:
            raise PsytestError(f"{source}: {key}: {exc}") from None

    inventories = [named("inventories", partial(resolve_inventory, study.local(name)))
                   for name in study.spec.inventories]
    if len({inv.id for inv in inventories}) != len(inventories):
        raise PsytestError(f"{source}: inventories: the same inventory is given twice; give each once")
    design = design_from_mapping(study.design(), f"{source}: design")
    if design.personas:
        from psychometrics.design.personas import resolve_persona_set

        persona_set = named("personas", lambda: resolve_persona_set(design.personas or ""))
        named("persona_ids", lambda: persona_set.select(design.persona_ids))
    if study.tasks is not None:
        from psychometrics.behavior.task import resolve_tasks

        named("tasks", lambda: resolve_tasks(study.tasks or ""))
    for model in study.spec.models:
        named(f"models: {model}", partial(resolve_model, model, inventories=inventories))


def _behave_options(study: Study) -> dict:
    options = study.spec.behavior.model_dump() if study.spec.behavior else {}
    design = study.design()
    return {**options, "tasks": study.tasks, "personas": design.get("personas"),
            "persona_ids": design.get("persona_ids")}


def plan_study(study: Study, prices: Optional[Path] = None) -> list[dict]:
    """Each run's dry-run plan (``administer``/``behave`` ``--dry-run`` with the run's directory, so what
    is already answered is counted), as ``{"model", "slug", "kind", "plan"}``; each plan has its ``cost``
    (a behaviour run's priced from its token estimate: :func:`psychometrics.cost.estimate.price_tokens`).
    ``prices``: a user's price file (``--prices``)."""
    from psychometrics import api

    resolve_everything(study)
    inventories = [study.local(name) for name in study.spec.inventories]
    plans = []
    for model in study.spec.models:
        run_dir = study.run_dir(model)
        plan = api.administer(model, inventory=inventories, design=study.design(), out=run_dir, dry_run=True,
                              prices=prices)
        plans.append({"model": model, "slug": study.slugs[model], "kind": "questionnaire", "plan": plan})
        if study.tasks is not None:
            plan = api.behave(model, out=study.run_dir(model, "behavior"), dry_run=True, prices=prices,
                              **_behave_options(study))
            plans.append({"model": model, "slug": study.slugs[model], "kind": "behavior", "plan": plan})
    return plans


def study_costs(plans: list[dict]) -> list[dict]:
    """Per model of a study, the estimated cost of its runs added up (questionnaire and behaviour)."""
    from psychometrics.cost.estimate import add_estimates

    models = list(dict.fromkeys(p["model"] for p in plans))
    return [add_estimates(model, [p["plan"]["cost"] for p in plans if p["model"] == model and "cost" in p["plan"]])
            for model in models]


def run_study(study: Study, *, concurrency: int = 4, max_retries: int = 5, timeout: Optional[float] = None,
              progress: Optional[Callable[[str, str], Any]] = None, prices: Optional[Path] = None) -> StudyResult:
    """Run every model of the study, then compare and (with tasks) the validity tables; see the module
    docstring. ``progress(model, kind)`` gives the :class:`psychometrics.api.Progress` of each run (or None)."""
    from psychometrics import api

    resolve_everything(study)
    claim_study_directory(study.out)
    inventories = [study.local(name) for name in study.spec.inventories]
    kinds = ["questionnaire", "behavior"] if study.tasks is not None else ["questionnaire"]
    runs = [StudyRun(model, study.slugs[model], kind, study.run_dir(model, kind))
            for model in study.spec.models for kind in kinds]
    result = StudyResult(study, runs)
    write_manifest(result, "running")  # first: from now on the directory is known as a study's
    (study.out / LAYOUT["runs"]).mkdir(exist_ok=True)
    for run in runs:
        shown = progress(run.model, run.kind) if progress else None
        try:
            if run.kind == "questionnaire":
                outcome = api.administer(run.model, inventory=inventories, design=study.design(), out=run.run_dir,
                                         concurrency=concurrency, max_retries=max_retries, timeout=timeout,
                                         progress=shown, prices=prices)
            else:
                outcome = api.behave(run.model, out=run.run_dir, concurrency=concurrency, max_retries=max_retries,
                                     timeout=timeout, progress=shown, **_behave_options(study))
        except (EndpointDown, EndpointStopped) as exc:  # this model's endpoint, not the study: the others go on
            run.failed, run.first_error, run.done = max(1, _failed_units(run)), str(exc), True
            write_manifest(result, "running")
            continue
        except PsytestError as exc:  # e.g. the run's identity check: the study file changed what it would send
            raise PsytestError(f"{study.path}: models: {run.model} ({run.kind}): {exc}") from None
        assert isinstance(outcome, api.RunOutcome)  # not a dry run
        stats = outcome.stats
        run.planned, run.already_answered, run.sent, run.failed = (stats.planned, stats.already_answered,
                                                                   stats.sent, stats.failed)
        run.first_error, run.done, run.cut_off = stats.first_error, True, stats.cut_off
        if run.cut_off * 2 > run.sent - run.failed > 0:
            result.notes.append(f"{run.model} ({run.kind}): {run.cut_off} of {run.sent - run.failed} replies were cut "
                                "off at max_tokens and not read; give the study a larger max_tokens (design, behavior)")
        write_manifest(result, "running")
    complete = {run.model for run in runs if run.failed == 0}
    _compare(result, [run for run in runs if run.kind == "questionnaire" and run.model in complete])
    if study.tasks is not None:
        _validity(result, [run for run in runs if run.model in complete])
    _report(result)
    write_manifest(result, "complete")
    return result


def _failed_units(run: StudyRun) -> int:
    """How many requests (or conversations) of ``run`` are stored as failed: a run its endpoint stopped."""
    from psychometrics.behavior.store import BehaviorStore
    from psychometrics.run.owner import BEHAVIOR_DB, RESPONSES
    from psychometrics.run.store import RunStore

    path = run.run_dir / (RESPONSES if run.kind == "questionnaire" else BEHAVIOR_DB)
    if not path.exists():
        return 0
    store_class = RunStore if run.kind == "questionnaire" else BehaviorStore
    with store_class(path, read_only=True) as store:
        return len(store.failed_attempts())


def _compare(result: StudyResult, runs: list[StudyRun]) -> None:
    from psychometrics import api

    skipped = len(result.study.spec.models) - len(runs)
    if skipped:
        result.notes.append(f"{skipped} model(s) with failed requests are left out of the comparison; re-run the "
                            "study to complete them")
    if len(runs) < 2:
        result.notes.append("no comparison: it needs at least two models whose runs completed")
        return
    result.comparison = api.compare([run.run_dir for run in runs], out=result.study.out / LAYOUT["comparison"])


def _validity(result: StudyResult, runs: list[StudyRun]) -> None:
    from psychometrics import api

    selfreport = [run.run_dir for run in runs if run.kind == "questionnaire"]
    behavior = [run.run_dir for run in runs if run.kind == "behavior"]
    if not selfreport or not behavior:
        result.notes.append("no validity tables: no model's questionnaire and behaviour runs both completed")
        return
    from psychometrics.run.persona_match import PersonaSetMismatch

    try:
        result.validity = api.validity(selfreport=selfreport, behavior=behavior,
                                       out=result.study.out / LAYOUT["validity"])
    except PersonaSetMismatch as exc:  # respondents that are not the same people: refused, not a footnote
        raise PsytestError(f"{result.study.path}: {exc}") from None
    except PsytestError as exc:  # e.g. too few respondents: the runs stand; say why there are no tables
        result.notes.append(f"no validity tables: {exc}")


def _report(result: StudyResult) -> None:
    """The combined report (``STUDY/report``) of the models whose runs completed."""
    from psychometrics import api

    if not any(run.kind == "questionnaire" and run.failed == 0 for run in result.runs):
        result.notes.append("no combined report: no model's questionnaire run completed")
        return
    try:
        result.report = api.report(result.study.out)
    except PsytestError as exc:  # the runs stand; say why there is no report
        result.notes.append(f"no combined report: {exc}")
