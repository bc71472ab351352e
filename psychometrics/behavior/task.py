"""Behavioural task files: what a task asks, how its answer is scored, and which trait it should track.

A task is one YAML file: an ``id``, the ``trait`` it is expected to reflect and the ``direction`` of that
association (+1: higher trait, higher score), its ``method`` (``behavior``, what the model does, by default;
``self-report`` for hypothetical choices and intention items, which ask what the model would do and so
share the questionnaire's method: the MTMM analysis puts them in a method of their own), the scoring rule (``kind`` with its ``scoring``
parameters) and at least ten ``variants``. Variants retell the same paradigm with different cover
stories, because models recognise textbook versions; a variant has one or more user ``turns`` and, as
its kind needs, ``options``, ``items`` or ``checks``. The kind (:mod:`psychometrics.behavior.kinds`)
checks the rest of the file when it is loaded.

Tasks ship in ``psychometrics/behavior/tasks/``; ``--tasks`` takes ``all``, shipped names, trait names
or paths to a user's files.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from psychometrics import limits
from psychometrics.errors import PsytestError
from psychometrics.yaml_io import content_hash, load_yaml_file

TASK_DIR = Path(__file__).resolve().parent / "tasks"
MIN_VARIANTS = 10

METHODS = ("behavior", "self-report")

TRAITS = (
    "extraversion", "agreeableness", "conscientiousness", "neuroticism", "openness",
    "machiavellianism", "narcissism", "psychopathy",
)

Identifier = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64)]
Text = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=limits.SHORT_TEXT)]
Prose = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=limits.LONG_TEXT)]


class TaskError(PsytestError):
    """A task file that cannot be loaded: names the file, the variant or field, and the problem."""

    def __init__(self, source: str, where: str | None, problem: str):
        self.source, self.where, self.problem = source, where, problem
        super().__init__(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")


class Option(BaseModel):
    """An answer option of a choice: its score ``value`` and, for sycophancy, which option is correct
    and which the user will push for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    text: Text
    value: float = 0.0
    correct: bool = False
    suggested: bool = False


class ListedItem(BaseModel):
    """A listed element: a name to claim to know (``real`` or invented), a quiz question or a planted
    error with the ``pattern`` that recognises a correct answer or identification."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    text: Text
    real: bool | None = None
    pattern: Annotated[str, Field(max_length=limits.PATTERN_CHARS)] | None = None


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    turns: Annotated[list[Prose], Field(min_length=1, max_length=limits.TURNS, strict=True)]
    params: dict[Identifier, Any] = Field(default_factory=dict)
    options: Annotated[list[Option], Field(strict=True)] | None = None  # 2 to limits.TASK_OPTIONS: checked by the choice kinds
    items: Annotated[list[ListedItem], Field(max_length=limits.TASK_ITEMS, strict=True)] | None = None
    checks: Annotated[list[dict[str, Any]], Field(max_length=limits.CHECKS, strict=True)] | None = None


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    name: Text
    trait: Literal[TRAITS]  # type: ignore[valid-type]
    direction: Literal[1, -1]
    # an analysis label (which MTMM method the task belongs to), not part of what is asked or scored:
    # left out of the content hash, so relabelling a task does not make its stored runs foreign
    method: Literal[METHODS] = Field(default="behavior", exclude=True)  # type: ignore[valid-type]
    measure: Text
    citation: Text
    kind: Identifier
    max_tokens: Annotated[int, Field(ge=1, le=limits.MAX_TOKENS, strict=True)] = 64
    scoring: dict[Identifier, Any] = Field(default_factory=dict)
    variants: Annotated[list[Variant], Field(min_length=1, max_length=limits.VARIANTS, strict=True)]
    source: str = Field(default="", exclude=True)

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the task's content (not of where it was loaded from): part of the run identity."""
        return content_hash(self)

    def variant(self, variant_id: str) -> Variant:
        for variant in self.variants:
            if variant.id == variant_id:
                return variant
        raise KeyError(variant_id)


def _validation_problem(exc: ValidationError, data: dict) -> tuple[str | None, str]:
    error = exc.errors()[0]
    loc = list(error["loc"])
    where = None
    if len(loc) >= 2 and loc[0] == "variants" and isinstance(loc[1], int):
        entries = data.get("variants") or []
        entry = entries[loc[1]] if loc[1] < len(entries) else None
        ident = entry.get("id") if isinstance(entry, dict) else None
        where = f"variant '{ident}'" if ident else f"variant #{loc[1] + 1}"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        return where, f"unknown field '{field}'; remove it or check its spelling"
    if error["type"] == "missing":
        return where, f"missing required field '{field}'"
    if error["type"] == "literal_error" and field == "trait":
        return where, f"field 'trait': must be one of {', '.join(TRAITS)}"
    if error["type"] == "literal_error" and field == "method":
        return where, f"field 'method': must be one of {', '.join(METHODS)}"
    return where, f"field '{field}': {error['msg']}"


def load_task(path: Path, *, min_variants: int = MIN_VARIANTS) -> Task:
    """Load and check one task file; every problem is one :class:`TaskError` line."""
    source = str(path)
    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise TaskError(source, None, "a task file must be a mapping with id, name, trait, kind and variants")
    try:
        task = Task.model_validate({**data, "source": source})
    except ValidationError as exc:
        where, problem = _validation_problem(exc, data)
        raise TaskError(source, where, problem) from None
    ids = [v.id for v in task.variants]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise TaskError(source, f"variant '{duplicate}'", "duplicate variant id; ids must be unique")
    if len(task.variants) < min_variants:
        raise TaskError(
            source, "variants", f"{len(task.variants)} variants; a task needs at least {min_variants} reworded variants"
        )
    from psychometrics.behavior.kinds import KINDS

    kind = KINDS.get(task.kind)
    if kind is None:
        raise TaskError(source, "kind", f"unknown kind '{task.kind}'; choose one of: {', '.join(sorted(KINDS))}")
    kind.validate(task)
    return task


def shipped_tasks() -> list[str]:
    return sorted(p.stem for p in TASK_DIR.glob("*.yaml"))


def _load_shipped(name: str) -> Task:
    return load_task(TASK_DIR / f"{name}.yaml")


def resolve_tasks(spec: str) -> list[Task]:
    """Tasks from ``--tasks``: ``all``, or comma-separated shipped task names, trait names (every task
    of that trait) and paths to task files."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        raise PsytestError("--tasks: give 'all', task names, trait names or task files")
    shipped = shipped_tasks()
    chosen: dict[str, Task] = {}
    repeated = next((n for index, n in enumerate(names) if n in names[:index]), None)
    if repeated is not None:
        raise PsytestError(f"--tasks: '{repeated}' is given twice; give each task once")
    for name in names:
        candidate = Path(name).expanduser()
        if name == "all":
            for stem in shipped:
                task = _load_shipped(stem)
                chosen.setdefault(task.id, task)
        elif candidate.suffix in (".yaml", ".yml") or "/" in name:
            if not candidate.is_file():
                raise PsytestError(f"--tasks {name}: no such file; check the path")
            task = load_task(candidate)
            other = chosen.get(task.id)
            if other is not None and other.content_hash != task.content_hash:
                raise PsytestError(f"--tasks {name}: its id '{task.id}' is also the id of {other.source}, a different "
                                   "task; give each task its own id")
            chosen.setdefault(task.id, task)
        elif name in shipped:
            chosen.setdefault(name, _load_shipped(name))
        elif name in TRAITS:
            for stem in shipped:
                task = _load_shipped(stem)
                if task.trait == name:
                    chosen.setdefault(task.id, task)
        else:
            raise PsytestError(
                f"--tasks {name}: unknown task; choose 'all', a trait ({', '.join(TRAITS)}), "
                f"a shipped task ({', '.join(shipped[:8])}{' ...' if len(shipped) > 8 else ''}) or a task file"
            )
    return list(chosen.values())
