"""A study file (``psytest study STUDY.yaml``): which models, inventories, design, personas and tasks.

A study runs the same design on several models: one questionnaire run per model, and one behaviour run
per model when ``tasks`` are given. The file is read with the safe YAML loader and its limits
(:mod:`psychometrics.yaml_io`); every key is known (an unknown one is refused with one line naming it and
the file), and everything it names (models, inventories, personas, tasks) is resolved before anything is
sent, so a typo in the last model does not surface after the first has run for an hour.

Keys::

    models:        [sim/e=1,seed=1, local/qwen2.5-0.5b, openai/gpt-4o-mini, gguf:PATH, ...]
    inventories:   [mini-ipip, sd3]          # shipped names or inventory files
    design:        {option_orders: [original, reversed], templates: [numbered], ...}   # administer --design keys
    personas:      trait-shaping             # optional: a persona set (questionnaires and tasks)
    persona_ids:   [p01, p02]                # optional: ids chosen from it
    tasks:         [dictator-game]           # optional: behaviour tasks, as behave --tasks takes them
    behavior:      {variants: 2, samples: 1, temperature: 0.0, seed: 0}   # optional: behave's design
    out:           STUDY                     # optional: the study directory

Relative paths (inventory, persona and task files, ``out``) are read from the study file's folder, so a
study runs the same from any working directory. ``out`` defaults to a folder named after the file,
beside it (``studies/big5.yaml`` -> ``studies/big5/``).

Each model's runs live in ``STUDY/runs/<slug>/`` and ``STUDY/runs/<slug>-behavior/``: the slug is the
model string made a safe file name (:func:`model_slug`); two models whose directories would coincide are
refused.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from psychometrics import limits
from psychometrics.errors import PsytestError

BEHAVIOR_SUFFIX = "-behavior"
SLUG_CHARS = 80  # a slug's length before a hash of the full model string is appended instead
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
# Names some file systems reserve (Windows devices), whatever the extension
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}

ModelName = Annotated[str, Field(min_length=1, max_length=limits.SHORT_TEXT)]
Name = Annotated[str, Field(min_length=1, max_length=limits.SHORT_TEXT)]


class BehaviorOptions(BaseModel):
    """``behave``'s design options, as its command-line options name them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variants: Annotated[int, Field(ge=1, le=limits.VARIANTS)] | None = None
    samples: Annotated[int, Field(ge=1, le=limits.SAMPLES)] = 1
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.0
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    order: Literal["balanced", "random"] | None = None  # None: the run's recorded rule, else balanced
    mode: Literal["text", "probs", "both"] = "text"
    max_tokens: Annotated[int, Field(ge=1, le=limits.MAX_TOKENS)] | None = None  # None: each task's own


class StudySpec(BaseModel):
    """The keys of a study file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: Annotated[list[ModelName], Field(min_length=1, max_length=limits.STUDY_MODELS)]
    inventories: Annotated[list[Name], Field(min_length=1, max_length=100)]
    design: Optional[dict] = None
    personas: Optional[Name] = None
    persona_ids: Annotated[list[Name], Field(min_length=1, max_length=limits.PERSONAS)] | None = None
    tasks: Annotated[list[Name], Field(min_length=1, max_length=1_000)] | None = None
    behavior: Optional[BehaviorOptions] = None
    out: Optional[Name] = None

    @field_validator("tasks", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        """``tasks`` as behave's comma list ("dictator-game, sycophancy") or a YAML list."""
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("out")
    @classmethod
    def _a_path(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and "\x00" in value:
            raise ValueError("a path cannot hold a NUL character")
        return value


def model_slug(model: str) -> str:
    """``model`` as a directory name: lower case, runs of anything but ``a-z 0-9 . _ -`` as one ``-``,
    runs of dots as one, no leading or trailing dot or dash; a name too long, empty or reserved gets a hash of the full string, so
    distinct models rarely collide (those that do are refused by :func:`check_slugs`)."""
    slug = _DOTS.sub(".", _UNSAFE.sub("-", model.lower())).strip("-.")
    digest = hashlib.sha256(model.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    if len(slug) > SLUG_CHARS:
        slug = slug[:SLUG_CHARS].rstrip("-.") + "-" + digest
    if not slug or slug.split(".")[0] in _RESERVED:
        slug = f"model-{slug + '-' if slug else ''}{digest}"
    return slug


def check_slugs(models: list[str], source: str) -> dict[str, str]:
    """Each model's slug; one-line error for a model given twice, or two whose run directories (``SLUG``
    and ``SLUG-behavior``) would be the same."""
    slugs: dict[str, str] = {}
    directories: dict[str, str] = {}
    for model in models:
        if model in slugs:
            raise PsytestError(f"{source}: models: '{model}' is given twice; give each model once")
        slug = model_slug(model)
        for name in (slug, slug + BEHAVIOR_SUFFIX):
            other = directories.get(name)
            if other is not None:
                raise PsytestError(f"{source}: models: '{other}' and '{model}' would share the run directory "
                                   f"runs/{name}; a study cannot tell them apart, so run one of them in another study")
            directories[name] = model
        slugs[model] = slug
    return slugs


@dataclass(frozen=True)
class Study:
    """A study file read and checked: its spec, where it is, its text and sha256, and each model's slug."""

    path: Path
    spec: StudySpec
    text: str
    sha256: str
    slugs: dict[str, str]
    out: Path

    def local(self, name: str) -> str:
        """A file name from the study (an inventory, persona or task file) read from the study's folder;
        names of shipped ones unchanged (a name is a file when it ends in .yaml/.yml or has a '/')."""
        if name.endswith((".yaml", ".yml")) or "/" in name:
            candidate = Path(name).expanduser()
            return str(candidate if candidate.is_absolute() else self.path.parent / candidate)
        return name

    @property
    def tasks(self) -> Optional[str]:
        """``tasks`` as behave's comma list, task files read from the study's folder; None when none given."""
        given = self.spec.tasks
        return None if given is None else ",".join(self.local(name) for name in given)

    def design(self) -> dict:
        """The questionnaire design: the ``design`` mapping with the study's personas (files read from the
        study's folder)."""
        design = dict(self.spec.design or {})
        if self.spec.personas is not None:
            design["personas"] = self.local(self.spec.personas)
            if self.spec.persona_ids is not None:
                design["persona_ids"] = list(self.spec.persona_ids)
        elif isinstance(design.get("personas"), str):
            design["personas"] = self.local(design["personas"])
        return design

    def run_dir(self, model: str, kind: str = "questionnaire") -> Path:
        slug = self.slugs[model]
        return self.out / "runs" / (slug + BEHAVIOR_SUFFIX if kind == "behavior" else slug)


def _field_error(exc: ValidationError, source: str) -> PsytestError:
    error = exc.errors()[0]
    field = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        if len(error["loc"]) == 1:
            return PsytestError(f"{source}: unknown key '{field}'; a study file takes "
                                f"{', '.join(StudySpec.model_fields)}")
        return PsytestError(f"{source}: unknown key '{field}'; behavior takes {', '.join(BehaviorOptions.model_fields)}")
    if error["type"] == "missing":
        return PsytestError(f"{source}: '{field}' is missing; a study needs models and inventories")
    return PsytestError(f"{source}: {field}: {error['msg'].removeprefix('Value error, ')}")


def load_study(path: Path, out: Optional[Path] = None) -> Study:
    """Read and check ``path`` (one-line :class:`PsytestError` naming the file and key for any problem);
    ``out`` overrides the file's own ``out``."""
    from psychometrics.design.plan import design_from_mapping
    from psychometrics.yaml_io import parse_yaml, read_yaml_text

    path = Path(path)
    text = read_yaml_text(path)  # bounded; a missing or unreadable file is one line
    data = parse_yaml(text, str(path))  # the safe loader and its limits
    if data is None:
        raise PsytestError(f"{path}: the file is empty; a study file is a mapping with models and inventories")
    if not isinstance(data, dict):
        raise PsytestError(f"{path}: a study file must be a mapping with models and inventories")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        raise _field_error(exc, str(path)) from None
    if spec.design is not None:
        for key in ("personas", "persona_ids"):
            if key in spec.design and spec.personas is not None:
                raise PsytestError(f"{path}: design.{key}: personas are given at the top level; give them once")
        design_from_mapping(spec.design, f"{path}: design")
    if spec.persona_ids is not None and spec.personas is None:
        raise PsytestError(f"{path}: persona_ids needs personas (a persona set name or file)")
    if spec.behavior is not None and spec.tasks is None:
        raise PsytestError(f"{path}: behavior: give tasks too (the behaviour tasks these options are for)")
    for index, model in enumerate(spec.models):
        if "=" in model and "/" not in model and ":" not in model:  # "seed=1" from [sim/e=1,seed=1]
            raise PsytestError(f"{path}: models: '{model}' is not a model; a list in brackets splits "
                               f"'{spec.models[index - 1] if index else model}' at its commas: write each model on its "
                               "own '- ' line, or quote it")
    slugs = check_slugs(list(spec.models), str(path))
    if out is not None and "\x00" in str(out):
        raise PsytestError("--out: a path cannot hold a NUL character; give another directory")
    if out is None:
        # normalised ("examples/../reports/x" is shown as "reports/x"), as a user would have written it
        out = Path(os.path.normpath(path.parent / Path(spec.out).expanduser())) if spec.out else path.with_suffix("")
        if out == path:
            out = path.with_name(path.name + "-study")
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Study(path, spec, text, sha256, slugs, Path(out))
