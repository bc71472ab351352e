"""Safe YAML reading for user-supplied files.

PyYAML's ``safe_load`` never constructs arbitrary objects, but it silently keeps the last of two
identical mapping keys, which hides real mistakes in hand-written inventories and design files.
:func:`load_yaml_file` uses the safe loader and rejects duplicate keys, and turns every problem into a
one-line :class:`~psychometrics.errors.PsytestError` naming the file and line.

Hostile files are bounded: files over :data:`MAX_BYTES` are refused before parsing (the pure-Python
parser takes seconds per megabyte), nesting too deep for the parser is an error rather than a crash,
and aliases that would expand to more than :data:`MAX_VALUES` values ("billion laughs") or refer to
themselves are refused. Merge keys (``<<: [*a, *a]``, nested) are counted here before PyYAML flattens
them, with every repeat, so a merge bomb is refused whatever PyYAML version deduplicates (or not) the
merged entries. Tags such as ``!!python/object`` are not constructed by the safe loader. Text with an
unpaired surrogate (``"\\ud83d"``, which SQLite cannot store) is refused.

Only what JSON can say is read: mappings, lists, text, numbers, booleans and null. YAML's other types
are refused with the line they are on: a ``!!set`` (its order depends on ``PYTHONHASHSEED``, so content
hashes, and with them run identities, would differ between two runs of the same command), timestamps,
``!!binary``, ``!!omap`` and ``!!pairs``. Mapping keys must be text or whole numbers (response values
are numbers); a key such as ``yes``, ``~`` or ``1.5`` that YAML reads as a boolean, null or fraction is
refused rather than silently becoming ``True``, ``None`` or a float.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from psychometrics import limits
from psychometrics.errors import PsytestError

MAX_BYTES = limits.YAML_BYTES  # 40x the largest shipped inventory
MAX_VALUES = limits.YAML_VALUES  # values after expanding every alias
MAX_MERGED = limits.YAML_MERGED  # mapping entries that merge keys may bring in, over the whole document, repeats counted


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice, and merge keys beyond :data:`MAX_MERGED`."""

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        sizes = self.__dict__.setdefault("_merge_sizes", {})
        if id(node) not in sizes:  # measured before PyYAML flattens (and deduplicates) it in place
            own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
            merged = merged_entries(node, sizes) - own
            total = self.__dict__.get("_merged", 0) + merged
            if total > MAX_MERGED:
                raise yaml.constructor.ConstructorError(
                    None, None, f"merge keys ('<<') bring in more than {MAX_MERGED:,} entries", node.start_mark
                )
            self._merged = total
        super().flatten_mapping(node)


def _merge_sources(node: yaml.Node) -> list[yaml.Node]:
    """The mappings that ``node``'s merge keys name (``<<: *a`` or ``<<: [*a, *b]``)."""
    sources: list[yaml.Node] = []
    for key_node, value_node in node.value if isinstance(node, yaml.MappingNode) else ():
        if key_node.tag == "tag:yaml.org,2002:merge":
            sources += value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
    return sources


def merged_entries(node: yaml.Node, sizes: dict[int, int], active: set[int] | None = None) -> int:
    """Entries of mapping ``node`` once its merge keys are expanded, every repeat counted (memoised by
    node in ``sizes``, so linear in the nodes even for a merge bomb). ConstructorError for a merge cycle."""
    if not isinstance(node, yaml.MappingNode):
        return 0  # PyYAML reports what is wrong with it
    key = id(node)
    if key in sizes:
        return sizes[key]
    active = set() if active is None else active
    if key in active:
        raise yaml.constructor.ConstructorError(
            None, None, "a merge key ('<<') refers to the mapping that contains it", node.start_mark
        )
    active.add(key)
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    total = own + sum(merged_entries(sub, sizes, active) for sub in _merge_sources(node))
    active.discard(key)
    sizes[key] = min(total, 1 << 62)
    return sizes[key]


_NOT_JSON = {
    "tag:yaml.org,2002:set": "a set (!!set), whose order is not fixed; write a list",
    "tag:yaml.org,2002:timestamp": "a date or time; quote it to make it text",
    "tag:yaml.org,2002:binary": "binary data (!!binary); write text",
    "tag:yaml.org,2002:omap": "an ordered map (!!omap); write a mapping or a list",
    "tag:yaml.org,2002:pairs": "a list of pairs (!!pairs); write a mapping or a list",
}


class _NotJSONError(yaml.constructor.ConstructorError):
    """A value or key of a type psytest files do not use (reported without "syntax error": the YAML is valid)."""


def _refuse_non_json(loader: "_UniqueKeySafeLoader", node: yaml.Node):
    raise _NotJSONError(
        None, None, f"{_NOT_JSON[node.tag]} (psytest files hold only mappings, lists, text, numbers, "
        "true/false and null)", node.start_mark)


def _construct_mapping(loader: _UniqueKeySafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:  # the keys written here; "<<: *defaults" may be overridden by them
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise _NotJSONError(
                None, None, f"the key {key_node.value!r} is read as {_kind_of(key)}, not as text or a whole "
                "number; quote it", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, float):
        return "a fraction"
    return "a date" if hasattr(value, "isoformat") else f"a {type(value).__name__}"


_UniqueKeySafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)
for _tag in _NOT_JSON:
    _UniqueKeySafeLoader.add_constructor(_tag, _refuse_non_json)


def _join_surrogates(data: Any, seen: set[int]) -> Any:
    """``data`` with escaped surrogate pairs (``"\\ud83d\\ude00"``) joined into their character, lists and
    mappings changed in place; ValueError for an unpaired surrogate."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
            return data
        except UnicodeEncodeError:
            try:
                return data.encode("utf-16", "surrogatepass").decode("utf-16")
            except UnicodeDecodeError:
                raise ValueError("text with an unpaired surrogate escape (such as \\ud83d, half an emoji); "
                                 "write the character itself, or the pair") from None
    if isinstance(data, (dict, list)) and id(data) not in seen:
        seen.add(id(data))
        if isinstance(data, list):
            data[:] = [_join_surrogates(child, seen) for child in data]
        else:
            items = [(_join_surrogates(k, seen), _join_surrogates(v, seen)) for k, v in data.items()]
            data.clear()
            data.update(items)
    return data


def expanded_size(data: Any, limit: int = MAX_VALUES) -> int:
    """How many values ``data`` holds with every shared (aliased) part counted each time it is used.

    Shared parts are measured once (memoised by identity), so this takes time linear in the distinct
    objects even for an alias bomb. Raises ``ValueError`` for a structure that contains itself, and stops
    counting past ``limit``.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(obj: Any) -> int:
        if not isinstance(obj, (dict, list)):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ValueError("an alias refers to a value that contains it")
        active.add(key)
        children = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else obj
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                break
        active.discard(key)
        sizes[key] = total
        return total

    return size(data)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely; raise a one-line :class:`PsytestError` naming ``source`` on failure."""
    try:
        data = yaml.load(text, Loader=_UniqueKeySafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if isinstance(exc, _NotJSONError):
            raise PsytestError(f"{source}: {line}{problem}") from None
        raise PsytestError(f"{source}: {line}YAML syntax error: {problem}; fix the file and retry") from None
    except yaml.YAMLError as exc:
        raise PsytestError(f"{source}: YAML syntax error: {exc}; fix the file and retry") from None
    except RecursionError:
        raise PsytestError(f"{source}: nested too deeply to read; flatten the file") from None
    try:
        values = expanded_size(data)
    except (ValueError, RecursionError) as exc:
        problem = str(exc) if isinstance(exc, ValueError) else "nested too deeply to read"
        raise PsytestError(f"{source}: {problem}; write the values out instead") from None
    if values > MAX_VALUES:
        raise PsytestError(
            f"{source}: its aliases expand to more than {MAX_VALUES:,} values; write the values out "
            "instead of nesting aliases"
        )
    if "\\u" in text or "\\U" in text:  # only escapes can make a surrogate
        try:
            data = _join_surrogates(data, set())
        except ValueError as exc:
            raise PsytestError(f"{source}: {exc}") from None
    return data


def content_hash(model: Any) -> str:
    """sha256 of the canonical JSON of a pydantic ``model`` (sorted keys, no spaces): the identity of
    what a user's file said, the same on every machine and under every ``PYTHONHASHSEED``.

    A set anywhere in the model (possible only through the Python API: files cannot hold one) would
    make the hash depend on iteration order, so it is a :class:`PsytestError` instead."""
    import hashlib
    import json

    def refuse_sets(value: Any) -> None:
        if isinstance(value, (set, frozenset)):
            raise PsytestError(f"{type(model).__name__}: holds a set, whose order is not fixed; give a list")
        if isinstance(value, dict):
            for child in value.values():
                refuse_sets(child)
        elif isinstance(value, (list, tuple)):
            for child in value:
                refuse_sets(child)

    refuse_sets(model.model_dump(mode="python"))
    canonical = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_yaml_file(path: Path) -> Any:
    """Read and parse a YAML file; missing, unreadable or malformed files raise :class:`PsytestError`."""
    return parse_yaml(read_yaml_text(path), str(path))


def read_yaml_text(path: Path) -> str:
    """The text of a YAML file, read at most :data:`MAX_BYTES` (a device or a huge file is not read whole);
    missing, unreadable or non-UTF-8 files raise :class:`PsytestError`."""
    try:
        with path.open("rb") as handle:  # bounded read: a device or a huge file is not read whole
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise PsytestError(
                f"{path}: larger than the {MAX_BYTES:,} bytes a YAML file may have; split it or trim it"
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise PsytestError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise PsytestError(f"{path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise PsytestError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    except OSError as exc:
        raise PsytestError(f"{path}: cannot read ({exc.strerror})") from None
    return text
