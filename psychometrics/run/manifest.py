"""``manifest.json``: what a run is, typed and versioned.

A manifest says what was asked of which model (model, the backend settings that change answers, the
design, the content hashes of the inventories, persona set and tasks, the identity of the prompts
sent), and where it came from (creation time, package versions, where the inventory and task files
were found). It never holds an API key: backends expose only settings that change answers.

Two kinds of run share one format: :class:`QuestionnaireManifest` (``psytest administer``) and
:class:`BehaviorManifest` (``psytest behave``). ``psytest_manifest`` is the format version. Older
versions are migrated on reading (:data:`MIGRATIONS`, one function per version step; nothing is
written back until a run is resumed); a newer or unknown version is refused, as is anything that does
not fit the model: every problem is one line naming the file and the field, never a KeyError deep in
an analysis. Commands read a manifest through :func:`read_manifest` (or the run owner,
:func:`psychometrics.run.owner.open_run`), never as a dict.

Version history:

1. the first format; a behaviour run said ``"study": "behavior"``.
2. ``kind`` (``questionnaire`` or ``behavior``) instead of ``study``, and ``prompts`` (questionnaire) or
   ``plan`` (behaviour): the identity of everything sent (:mod:`psychometrics.run.identity`), so a
   resumed run whose prompts would differ is refused and says what changed.

Additions within version 2 (optional fields, absent from older runs and ignored by older readers):
``personas.targets`` and ``personas.texts``, each respondent's persona target levels and text hash
(:class:`PersonaSetRef`); ``extensions``, each time a questionnaire run's design grew
(:class:`DesignExtension`), and ``reused``, answers copied from other runs (:class:`ReuseRecord`). A
design with several temperatures records ``design.temperature`` as a list, which an older psytest refuses
to resume (it would plan one temperature). ``endpoints``: the URLs a run was sent to
(:class:`EndpointRecord`); runs made before it have their URL in ``backend_params.api_base``, which then
stays part of their identity (:func:`psychometrics.run.identity.identity_params`).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from psychometrics import limits
from psychometrics.design.plan import Design
from psychometrics.errors import PsytestError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2


def _kind_of(value: object) -> str:
    kinds = {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number",
             bool: "true or false", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _bounded(low: int, high: int):
    """A whole number in ``low..high``, refused with the range named (booleans are not numbers)."""

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low:,} to {high:,}, not {str(value)[:40]}")
        return value

    return Annotated[int, BeforeValidator(check)]


class _Record(BaseModel):
    """Manifest parts: unknown keys are ignored (a later minor addition), types are strict."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class ContentRef(_Record):
    """A file a run used, by id and the sha256 of its content."""

    id: str
    content_hash: str


class PersonaSetRef(ContentRef):
    """The persona set of a run: its id and content hash, and for each persona the run used (its
    respondents) the target levels (persona id -> {trait: level}; {} for an untargeted one) and the
    sha256 of its text. Analyses read the targets from here, not from the set's file, so a user's persona
    file that moved still gives them; runs made before these were recorded have None (the set is then
    resolved by name, :func:`psychometrics.validity.tables.persona_targets`)."""

    targets: dict[str, dict[str, _bounded(-4, 4)]] | None = None  # type: ignore[valid-type]
    texts: dict[str, str] | None = None

    @classmethod
    def of(cls, persona_set, persona_ids: list[str] | None) -> "PersonaSetRef":
        """The record of ``persona_set`` with the personas ``persona_ids`` selects (all without it)."""
        import hashlib

        chosen = persona_set.select(persona_ids)
        return cls(id=persona_set.id, content_hash=persona_set.content_hash,
                   targets={p.id: dict(p.targets) for p in chosen},
                   texts={p.id: hashlib.sha256(p.text.encode("utf-8")).hexdigest() for p in chosen})


class TaskRef(_Record):
    """A behavioural task of a run: the hash of what it sends (``prompt_hash``) and of its whole file."""

    id: str
    prompt_hash: str | None = None
    content_hash: str | None = None


class PromptIdentity(_Record):
    """What a questionnaire run sends (:mod:`psychometrics.run.identity`): the sha256 of each template's
    text, and of the planned request ids in plan order (covering every rendered prompt)."""

    templates: dict[str, str]
    plan: str
    requests: int


class DesignExtension(_Record):
    """One growth of a questionnaire run (:mod:`psychometrics.run.growth`): when, the design options that
    changed (``{option: {"from": old, "to": new}}``), the inventories added, the design before (so the
    run's history can be re-planned), and the requests planned before and after."""

    at: str
    changed: dict[str, dict[str, Any]]
    inventories_added: list[str] = Field(default_factory=list)
    previous_design: Annotated[Design, Field(strict=False)]
    requests_before: int
    requests_planned: int
    requests_added: int


class ReuseRecord(_Record):
    """Answers copied into this run from another run's store (``--reuse``): when, from which run (its
    directory as given, resolved), and how many requests."""

    at: str
    source: str
    requests: int


class BehaviorDesignRecord(_Record):
    """A behaviour run's design as stored (:class:`psychometrics.behavior.runner.BehaviorDesign`)."""

    samples: _bounded(1, limits.SAMPLES) = 1  # type: ignore[valid-type]
    temperature: Annotated[float, Field(strict=False)] = 0.0
    seed: int = 0
    personas: str | None = None
    persona_ids: list[str] | None = None
    variants: _bounded(1, limits.VARIANTS) | None = None  # type: ignore[valid-type]
    #: The display-order rule (:mod:`psychometrics.behavior.order`); absent in runs made before it was
    #: recorded, which drew each conversation's order at random: they plan as they did.
    order: Literal["balanced", "random"] = "random"
    mode: Literal["text", "probs", "both"] = "text"
    #: ``behave --max-tokens``: every task's reply limit (None: each task's own, as in runs made before it)
    max_tokens: _bounded(1, limits.MAX_TOKENS) | None = None  # type: ignore[valid-type]


class EndpointRecord(_Record):
    """An endpoint a run sent requests to: its URL without credentials, how it was given (``--api-base``,
    ``OPENAI_BASE_URL``, a router file) and when it was first used. Where, not what: never part of the
    run's identity, so a run resumes at a new URL (and records it here)."""

    url: str
    source: str | None = None
    first_used: str | None = None


class _Manifest(_Record):
    psytest_manifest: int = MANIFEST_VERSION
    model: str
    backend_params: dict[str, Any] = Field(default_factory=dict)
    endpoints: list[EndpointRecord] = Field(default_factory=list)
    #: The most requests any session had in flight at once (None: made before this was recorded, when a
    #: local model evaluated one request at a time whatever the concurrency). A local model evaluates the
    #: requests in flight in one llama.cpp batch, so above 1 its answers reproduce within a tolerance only.
    most_in_flight: int | None = None
    personas: PersonaSetRef | None = None
    created_at: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    platform: str | None = None

    @property
    def psytest_version(self) -> str:
        return self.packages.get("psytest", "unknown")


class QuestionnaireManifest(_Manifest):
    """A questionnaire run (``psytest administer``)."""

    kind: Literal["questionnaire"] = "questionnaire"
    design: Annotated[Design, Field(strict=False)]
    inventories: Annotated[list[ContentRef], Field(min_length=1)]
    inventory_sources: dict[str, str] = Field(default_factory=dict)
    requests_planned: int | None = None
    prompts: PromptIdentity | None = None  # None: a version 1 run (checked against its stored request ids)
    extensions: list[DesignExtension] = Field(default_factory=list)
    reused: list[ReuseRecord] = Field(default_factory=list)

    @property
    def first_temperature(self) -> float:
        """The temperature the run began with: that of answers stored before the temperature was recorded
        in their condition (such runs had one temperature, kept when the run grew)."""
        return (self.extensions[0].previous_design if self.extensions else self.design).temperatures[0]

    def inventory_source(self, inventory_id: str) -> str:
        """Where to find an inventory again: a shipped name, or the path of the user's file."""
        return self.inventory_sources.get(inventory_id, inventory_id)


class BehaviorManifest(_Manifest):
    """A behaviour run (``psytest behave``)."""

    kind: Literal["behavior"] = "behavior"
    design: BehaviorDesignRecord
    tasks: list[TaskRef]
    task_sources: dict[str, str] = Field(default_factory=dict)
    task_content_hashes: dict[str, str] = Field(default_factory=dict)
    conversations_planned: int | None = None
    plan: str | None = None  # sha256 of the planned conversation ids; None: a version 1 run


Manifest = Union[QuestionnaireManifest, BehaviorManifest]


# ---------------------------------------------------------------------------------------------------
# versions


def _v1_to_v2(data: dict) -> dict:
    data = dict(data)
    data["kind"] = "behavior" if data.pop("study", None) == "behavior" else "questionnaire"
    return data


#: ``MIGRATIONS[v]`` takes a manifest of version ``v`` (a dict) to version ``v + 1``.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _v1_to_v2}


def migrate(data: dict, where: str) -> dict:
    """``data`` brought to :data:`MANIFEST_VERSION`; a version this psytest does not know is refused."""
    version = data.get("psytest_manifest")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MANIFEST_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > MANIFEST_VERSION
        raise PsytestError(f"{where}: manifest format {str(version)[:20]}, but this psytest reads formats 1 to "
                           f"{MANIFEST_VERSION}; " + ("upgrade psytest to read it" if newer else
                                                      "it is not a run manifest psytest wrote"))
    for step in range(version, MANIFEST_VERSION):
        data = MIGRATIONS[step](data)
    data["psytest_manifest"] = MANIFEST_VERSION
    return data


# ---------------------------------------------------------------------------------------------------
# reading


def _where(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problem(error: Mapping[str, Any]) -> str:
    """One pydantic error as the sentence a user reads."""
    loc = tuple(p for p in error["loc"] if p not in ("QuestionnaireManifest", "BehaviorManifest"))
    name = _where(loc) or "the top level"
    value = error.get("input")
    kind = error["type"]
    if kind == "missing":
        return f"'{name}' is missing"
    expected = {"string_type": "text", "dict_type": "an object", "model_type": "an object", "model_attributes_type":
                "an object", "list_type": "a list", "int_type": "a whole number", "int_parsing": "a whole number",
                "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false"}.get(kind)
    if expected is not None:
        return f"'{name}' must be {expected}, not {_kind_of(value)}"
    if kind == "value_error":
        return f"'{name}' {str(error['msg']).removeprefix('Value error, ')}"
    if kind == "literal_error":
        return f"'{name}' must be one of {error.get('ctx', {}).get('expected', '')}, not {str(value)[:40]!r}"
    return f"'{name}': {error['msg']}"


def parse_manifest(data: object, where: str, expect: str | None = None) -> Manifest:
    """A manifest from parsed JSON (migrated, checked); ``expect`` is the kind a command reads
    (``questionnaire``, ``behavior`` or None for either). One-line :class:`PsytestError` otherwise."""
    damaged = "the manifest was changed or damaged: restore it, or run again into a new --out"
    if not isinstance(data, dict):
        raise PsytestError(f"{where}: 'the top level' must be an object, not {_kind_of(data)}; {damaged}")
    if data.get("psytest_manifest", 1) == 1 and "psytest_manifest" not in data:
        data = {**data, "psytest_manifest": 1}
    data = migrate(data, where)
    kind = data.get("kind")
    run_dir = str(Path(where).parent)
    if expect == "questionnaire" and kind == "behavior":
        raise PsytestError(f"{run_dir}: a behaviour run (made by 'psytest behave'), not a questionnaire run; give it "
                           "to 'psytest validity --behavior' or 'psytest report RUN --behavior'")
    if expect == "behavior" and kind != "behavior":
        raise PsytestError(f"{run_dir}: a questionnaire run, not a behaviour run (made by 'psytest behave')")
    model = BehaviorManifest if kind == "behavior" else QuestionnaireManifest
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PsytestError(f"{where}: {_problem(exc.errors()[0])}; {damaged}") from None


def read_manifest(run_dir: Path, expect: str | None = "questionnaire") -> Manifest:
    """The typed manifest of ``run_dir`` (see :func:`parse_manifest`)."""
    path = Path(run_dir) / MANIFEST
    try:
        data = limits.read_json(path, "run manifest")
    except FileNotFoundError:
        raise PsytestError(f"{run_dir}: not a psytest run directory (no {MANIFEST})") from None
    except IsADirectoryError:
        raise PsytestError(f"{path}: a directory, not a run manifest; give a run directory psytest wrote") from None
    return parse_manifest(data, str(path), expect)


def manifest_json(manifest: Manifest) -> str:
    """The manifest as written: format version first, indented, UTF-8 text kept as it is."""
    data = manifest.model_dump(mode="json")
    ordered = {"psytest_manifest": data.pop("psytest_manifest"), "kind": data.pop("kind"), **data}
    return json.dumps(ordered, indent=2, ensure_ascii=False) + "\n"


def write_manifest(run_dir: Path, manifest: Manifest, *, replace: bool) -> bool:
    """Write ``manifest`` atomically (a complete file, fsynced, then linked or renamed into place).

    With ``replace`` False it is created only if absent, safely against another process starting on
    ``run_dir`` at once (a hard link appears whole or not at all); returns whether this call created it.
    With ``replace`` True it replaces the one there (a resumed run recording its format and what it
    added)."""
    path = Path(run_dir) / MANIFEST
    tmp = Path(run_dir) / f".{MANIFEST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(manifest_json(manifest))
        handle.flush()
        os.fsync(handle.fileno())
    try:
        if replace:
            tmp.replace(path)
            return True
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: create-if-absent is not atomic there
            if path.exists():
                return False
            tmp.replace(path)
            return True
    finally:
        tmp.unlink(missing_ok=True)
