"""Safe YAML reading for user-supplied files.

PyYAML's ``safe_load`` never constructs arbitrary objects, but it silently keeps the last of two
identical mapping keys, which hides real mistakes in hand-written inventories and design files.
:func:`load_yaml_file` uses the safe loader and rejects duplicate keys, and turns every problem into a
one-line :class:`~psychometrics.errors.PsytestError` naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from psychometrics.errors import PsytestError


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""


def _construct_mapping(loader: _UniqueKeySafeLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeySafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely; raise a one-line :class:`PsytestError` naming ``source`` on failure."""
    try:
        return yaml.load(text, Loader=_UniqueKeySafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise PsytestError(f"{source}: {line}YAML syntax error: {problem}; fix the file and retry") from None
    except yaml.YAMLError as exc:
        raise PsytestError(f"{source}: YAML syntax error: {exc}; fix the file and retry") from None


def load_yaml_file(path: Path) -> Any:
    """Read and parse a YAML file; missing, unreadable or malformed files raise :class:`PsytestError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PsytestError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise PsytestError(f"{path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise PsytestError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    except OSError as exc:
        raise PsytestError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_yaml(text, str(path))
