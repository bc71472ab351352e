"""Persona sets: texts put before the instructions to vary (or shape) who the model answers as.

A persona file is YAML with ``id``, ``name``, ``description``, ``source`` and ``personas``; each persona
has an ``id``, a ``text`` and optional ``targets`` (trait -> intended level, -4..4, for trait-shaping
personas; empty for neutral ones). Two sets ship with psytest: ``trait-shaping`` (each Big Five and Dark
Triad trait at four levels, plus a baseline) and ``neutral-biographies`` (40 biographies without trait
cues). ``--personas`` accepts a shipped name or a path to a user's file.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from psychometrics import limits
from psychometrics.errors import PsytestError
from psychometrics.yaml_io import content_hash, load_yaml_file

_DIR = Path(__file__).resolve().parent.parent / "data" / "personas"

Identifier = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z][A-Za-z0-9_.\-]*$", max_length=64)]
Text = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=limits.SHORT_TEXT)]
Prose = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=limits.LONG_TEXT)]


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    text: Prose
    targets: dict[Identifier, Annotated[int, Field(ge=-4, le=4, strict=True)]] = Field(default_factory=dict)


class PersonaSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    name: Text
    description: Prose | None = None
    source: Text | None = None
    personas: Annotated[list[Persona], Field(min_length=1, max_length=limits.PERSONAS, strict=True)]

    @cached_property
    def content_hash(self) -> str:
        return content_hash(self)

    def select(self, ids: list[str] | None) -> list[Persona]:
        if not ids:
            return list(self.personas)
        by_id = {p.id: p for p in self.personas}
        repeated = next((i for index, i in enumerate(ids) if i in ids[:index]), None)
        if repeated is not None:
            raise PsytestError(f"--persona-ids: '{repeated}' is given twice; give each persona once")
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise PsytestError(
                f"--persona-ids: {', '.join(missing)} not in persona set '{self.id}'; "
                f"it has: {', '.join(list(by_id)[:12])}{' ...' if len(by_id) > 12 else ''}"
            )
        return [by_id[i] for i in ids]


def shipped_persona_sets() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.yaml"))


def load_persona_set(path: Path) -> PersonaSet:
    data = load_yaml_file(path)
    if data is None:
        raise PsytestError(f"{path}: the file is empty; a persona file needs id, name and personas")
    if not isinstance(data, dict):
        raise PsytestError(f"{path}: a persona file must be a mapping with id, name and personas")
    try:
        persona_set = PersonaSet.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = list(error["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "personas" and isinstance(loc[1], int):
            entries = data.get("personas") or []
            ident = entries[loc[1]].get("id") if loc[1] < len(entries) and isinstance(entries[loc[1]], dict) else None
            where = f"persona '{ident}': " if ident else f"persona #{loc[1] + 1}: "
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        if error["type"] == "extra_forbidden":
            problem = f"unknown field '{field}'"
        elif error["type"] == "missing":
            problem = f"missing required field '{field}'"
        else:
            given = error.get("input")
            shown = f", got {given!r}" if isinstance(given, (str, int, float)) and len(repr(given)) <= 40 else ""
            problem = f"field '{field}': {error['msg']}{shown}"
        raise PsytestError(f"{path}: {where}{problem}") from None
    ids = [p.id for p in persona_set.personas]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise PsytestError(f"{path}: persona '{duplicate}': duplicate persona id; ids must be unique")
    return persona_set


def resolve_persona_set(name_or_path: str) -> PersonaSet:
    """A shipped persona set by name, or a user's persona file by path."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        if not candidate.is_file():
            raise PsytestError(f"--personas {name_or_path}: no such file; check the path")
        return load_persona_set(candidate)
    path = _DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise PsytestError(
            f"--personas {name_or_path}: unknown persona set; choose one of: "
            f"{', '.join(shipped_persona_sets())} (or give a path to a YAML file)"
        )
    return load_persona_set(path)
