"""The one reader of a run directory: :func:`open_run` and the :class:`Run` it returns.

Every command that reads a run (score, report, compare, baseline, check, reproduce, validity, export)
opens it here, so all of them see the same thing:

* the typed, migrated manifest (:mod:`psychometrics.run.manifest`), of the kind the command reads;
* the run's inventories and persona set, each found where the run found it and checked against the
  content hash the run recorded (an edited file is refused, whoever reads);
* its store, opened read-only and checked (schema version, SQLite's quick check, every column's type);
* its answers read in one snapshot, with stored values outside the response scale set missing, and its
  scale scores under the run's own invalid-answer policy (``--invalid drop`` is listwise everywhere);
* what a derived file is made from (:meth:`Run.inputs`: the manifest's sha256 and the store's
  fingerprint, read in the same transaction as the answers).

Writers (administer, behave) create and extend run directories in :mod:`psychometrics.run.directory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from psychometrics.errors import PsytestError
from psychometrics.run.manifest import MANIFEST, BehaviorManifest, Manifest, QuestionnaireManifest, read_manifest

if TYPE_CHECKING:
    import pandas as pd

    from psychometrics.behavior.task import Task
    from psychometrics.design.personas import PersonaSet
    from psychometrics.design.plan import PlannedRequest
    from psychometrics.inventories.model import Inventory

RESPONSES = "responses.sqlite"
BEHAVIOR_DB = "behavior.sqlite"


@dataclass
class Answers:
    """A questionnaire run's answers as read in one snapshot of its store."""

    responses: "pd.DataFrame"  # one row per stored item answer, condition fields as columns
    value_checks: "pd.DataFrame"  # stored values outside the response scale (set missing in responses)
    inputs: dict  # manifest sha256 and store fingerprint: what derived files are made from


@dataclass
class Run:
    """A run directory, opened by :func:`open_run`."""

    path: Path
    manifest: Manifest
    _answers: Answers | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def store_path(self) -> Path:
        return self.path / (BEHAVIOR_DB if self.kind == "behavior" else RESPONSES)

    @property
    def questionnaire(self) -> QuestionnaireManifest:
        assert isinstance(self.manifest, QuestionnaireManifest)
        return self.manifest

    @property
    def behavior(self) -> BehaviorManifest:
        assert isinstance(self.manifest, BehaviorManifest)
        return self.manifest

    # inputs the run used, checked ---------------------------------------------------------------

    @cached_property
    def inventories(self) -> list["Inventory"]:
        """The run's inventories, each checked against the content hash in its manifest."""
        from psychometrics.inventories.library import resolve_inventory

        found = []
        for entry in self.questionnaire.inventories:
            inventory = resolve_inventory(self.questionnaire.inventory_source(entry.id))
            if inventory.content_hash != entry.content_hash:
                raise PsytestError(f"inventory '{entry.id}' has changed since the run (content hash differs); "
                                   "analyse with the original file, or re-run")
            found.append(inventory)
        return found

    @cached_property
    def persona_set(self) -> "PersonaSet | None":
        """The run's persona set (None without one), checked against its content hash."""
        from psychometrics.design.personas import resolve_persona_set

        name = self.manifest.design.personas
        if not name:
            return None
        persona_set = resolve_persona_set(name)
        recorded = self.manifest.personas
        if recorded is not None and persona_set.content_hash != recorded.content_hash:
            raise PsytestError(f"persona set '{name}' has changed since the run (content hash differs); "
                               "use the original persona file")
        return persona_set

    @cached_property
    def tasks(self) -> dict[str, "Task"]:
        """A behaviour run's tasks by id, loaded again from where the run found them. What they send must be
        what the run sent (their prompt hash; a format-1 manifest without one compares the whole file);
        their scoring may have been corrected since, and then applies to the stored replies."""
        from psychometrics.behavior.runner import prompt_hash
        from psychometrics.behavior.task import resolve_tasks

        m = self.behavior
        tasks = {}
        for entry in m.tasks:
            source = m.task_sources.get(entry.id, entry.id)
            task = resolve_tasks(source)[0]
            if m.design.max_tokens is not None:  # behave --max-tokens: the limit the run sent
                task = task.model_copy(update={"max_tokens": m.design.max_tokens})
            if entry.prompt_hash is not None:
                same = entry.prompt_hash == prompt_hash(task, m.design.variants)
            else:
                same = task.content_hash == entry.content_hash
            if not same:
                raise PsytestError(f"task '{entry.id}' ({source}) asks something different from what the run sent; "
                                   "its scores would not match the stored replies. Restore the file the run used")
            tasks[task.id] = task
        return tasks

    def changed_scoring(self) -> list[str]:
        """Tasks whose file changed since the run without changing what they send (a corrected scoring rule)."""
        recorded = self.behavior.task_content_hashes
        return sorted(t for t, task in self.tasks.items() if t in recorded and recorded[t] != task.content_hash)

    @property
    def invalid_policy(self) -> str:
        return self.questionnaire.design.invalid

    # the store --------------------------------------------------------------------------------

    def store(self):
        """The run's store, read-only and checked (a context manager)."""
        if self.kind == "behavior":
            from psychometrics.behavior.store import BehaviorStore

            return BehaviorStore(self.store_path, read_only=True)
        from psychometrics.run.store import RunStore

        return RunStore(self.store_path, read_only=True)

    def answers(self) -> Answers:
        """The answers, read once per :class:`Run` in one snapshot (see :class:`Answers`)."""
        if self._answers is None:
            from psychometrics.run.outputs import file_sha256
            from psychometrics.run.frame import responses_frame
            from psychometrics.statistics.scoring import impossible_values

            with self.store() as store, store.reading() as fingerprint:
                responses = responses_frame(store, [inv.id for inv in self.inventories],
                                            self.questionnaire.first_temperature)
            responses, value_checks = impossible_values(responses, self.inventories)
            inputs = {"manifest_sha256": file_sha256(self.path / MANIFEST), "store": fingerprint}
            self._answers = Answers(responses, value_checks, inputs)
        return self._answers

    def scores(self, by: Sequence[str] | None = None) -> "pd.DataFrame":
        """Scale and facet scores of each respondent under the run's invalid-answer policy (``drop``: a
        scale needs every item). ``by``: the condition fields that make a respondent (default: all)."""
        from psychometrics.conditions import CONDITION_FIELDS
        from psychometrics.statistics.scoring import scale_scores

        by = tuple(by) if by else tuple(CONDITION_FIELDS)
        responses = self.answers().responses
        listwise = self.invalid_policy == "drop"
        if by == tuple(CONDITION_FIELDS):
            return scale_scores(responses, self.inventories, listwise=listwise)
        return scale_scores(responses, self.inventories, by, listwise)

    def inputs(self) -> dict:
        """What a derived file of this run is made from (manifest sha256, store fingerprint); for a
        questionnaire run, as of the snapshot its answers were read from."""
        return self.answers().inputs if self.kind == "questionnaire" else self.state()

    def state(self) -> dict:
        """The manifest's sha256 and the store's fingerprint now, without reading the answers."""
        from psychometrics.run.outputs import file_sha256

        with self.store() as store:
            return {"manifest_sha256": file_sha256(self.path / MANIFEST), "store": store.fingerprint()}

    def stored_ids(self) -> set[str]:
        """Every request (or conversation) id in the store, answered or failed."""
        table = "conversations" if self.kind == "behavior" else "responses"
        with self.store() as store:
            return {row[0] for row in store.conn.execute(f"SELECT DISTINCT request_id FROM {table}")}

    def plan(self) -> list["PlannedRequest"]:
        """The questionnaire run's requests planned again from its manifest and inputs."""
        from psychometrics.design.plan import plan_requests

        m = self.questionnaire
        return plan_requests(self.inventories, m.design, m.model, m.backend_params, self.persona_set)


def open_run(path: Path | str, expect: str | None = "questionnaire") -> Run:
    """Open the run directory ``path`` for reading (see the module docstring). ``expect``: the kind of run
    the command reads (``questionnaire``, ``behavior``, or None for either); another kind, a missing
    directory, manifest or store are one-line errors naming the path."""
    path = Path(path)
    if not path.is_dir():
        raise PsytestError(f"{path}: no such run directory; give a directory written by psytest administer"
                           + (" or behave" if expect != "questionnaire" else ""))
    manifest = read_manifest(path, expect)
    run = Run(path, manifest)
    if not run.store_path.is_file():
        what = "answers (administer it first)" if run.kind == "questionnaire" else "conversations (run behave first)"
        raise PsytestError(f"{run.store_path}: no such store beside the manifest; the run has no {what}")
    return run


def recorded_order(run_dir: Path | None, default: str = "balanced") -> str:
    """The option-order rule a behaviour run in ``run_dir`` recorded (resuming keeps it), else ``default``
    (no directory or manifest yet, another kind of run, or a manifest whose own checks will say what is wrong)."""

    if run_dir is None or not (Path(run_dir) / MANIFEST).is_file():
        return default
    try:
        manifest = read_manifest(Path(run_dir), expect=None)
    except PsytestError:
        return default
    return manifest.design.order if manifest.kind == "behavior" else default
