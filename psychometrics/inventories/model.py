"""Inventories: the data model of a personality questionnaire, and its validation.

An inventory file is YAML with: identification (id, name, version, citation, licence), the
instructions and optional item stem, the response scale, the items (text, keying, paraphrases), the
scales and facets that group items (each with a scoring rule), and human norms where known.

Loading has two stages, each turning any problem into a one-line
:class:`~psychometrics.errors.InventoryError` that names the file, the item or field, and what is wrong:

1. structure, checked by pydantic models that forbid unknown fields and coerce nothing silently;
2. consistency, checked by :func:`check_consistency` (every item in exactly one scale, scales naming
   only existing items, facets inside their scale, norms inside the possible score range, ...).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
)

from psychometrics import limits
from psychometrics.errors import InventoryError
from psychometrics.yaml_io import content_hash, load_yaml_file

Identifier = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[A-Za-z][A-Za-z0-9_.\-]*$", max_length=64)
]
Slug = Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z0-9][a-z0-9\-]*$", max_length=64)]
Text = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=limits.SHORT_TEXT)]
Prose = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=limits.LONG_TEXT)]
Scoring = Literal["mean", "sum"]
# Lists must be lists: a set given through the Python API would be taken in hash-seed order.
Strict = Field(strict=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponseScale(_Strict):
    """Integer response options ``min..max``, each with its label (e.g. 1 "Very inaccurate")."""

    min: Annotated[int, Field(strict=True, ge=-limits.RESPONSE_VALUE, le=limits.RESPONSE_VALUE)]
    max: Annotated[int, Field(strict=True, ge=-limits.RESPONSE_VALUE, le=limits.RESPONSE_VALUE)]
    labels: dict[StrictInt, Text]

    @property
    def values(self) -> list[int]:
        return list(range(self.min, self.max + 1))

    @property
    def n_options(self) -> int:
        return self.max - self.min + 1

    def label(self, value: int) -> str:
        return self.labels[value]

    def reverse(self, value: float) -> float:
        """The reverse-keyed counterpart of ``value``: ``min + max - value``."""
        return self.min + self.max - value


class Item(_Strict):
    """One questionnaire item; ``reverse_keyed`` items are scored ``min + max - response``."""

    id: Identifier
    text: Text
    reverse_keyed: StrictBool = False
    paraphrases: Annotated[list[Text], Field(max_length=limits.PARAPHRASES, strict=True)] = Field(default_factory=list)


class Scale(_Strict):
    """A scored scale (a domain or factor): the items it sums or averages.

    ``trait`` names the construct in a vocabulary shared across inventories (``extraversion``,
    ``neuroticism``, ``machiavellianism``, ...), so scales of different instruments can be matched
    (multitrait-multimethod analysis, simulated respondents). ``trait_sign = -1`` marks a scale that
    measures the opposite pole (IPIP-50 Emotional Stability is ``neuroticism`` with sign -1).
    """

    id: Identifier
    name: Text
    trait: Identifier | None = None
    trait_sign: Literal[1, -1] = 1
    scoring: Scoring = "mean"
    items: Annotated[list[Identifier], Strict]
    description: Prose | None = None


class Facet(_Strict):
    """A narrower scale inside one parent :class:`Scale`."""

    id: Identifier
    name: Text
    scale: Identifier
    scoring: Scoring = "mean"
    items: Annotated[list[Identifier], Strict]


class NormStat(_Strict):
    """Mean and standard deviation of a scale score in a human sample, on the scale's own metric."""

    mean: float
    sd: Annotated[float, Field(gt=0)]


class NormGroup(_Strict):
    """Human norms for one group (e.g. 'women 21-40'): per scale and facet mean and SD."""

    group: Text
    source: Text
    n: Annotated[int, Field(gt=0, strict=True)] | None = None
    note: Text | None = None
    scales: dict[Identifier, NormStat] = Field(default_factory=dict)
    facets: dict[Identifier, NormStat] = Field(default_factory=dict)


class Inventory(_Strict):
    """A whole instrument. Build it with :func:`load_inventory`, which also checks consistency."""

    id: Slug
    name: Text
    version: Text
    description: Prose | None = None
    citation: Text
    licence: Text
    url: Text | None = None
    instructions: Prose
    stem: Text | None = None
    response_scale: ResponseScale
    items: Annotated[list[Item], Field(min_length=1, max_length=limits.ITEMS, strict=True)]
    scales: Annotated[list[Scale], Field(min_length=1, max_length=limits.SCALES, strict=True)]
    facets: Annotated[list[Facet], Field(max_length=limits.SCALES, strict=True)] = Field(default_factory=list)
    norms: Annotated[list[NormGroup], Field(max_length=limits.NORM_GROUPS, strict=True)] = Field(default_factory=list)

    # -- derived views (cheap, cached; the model is frozen) -------------------------------------------
    @cached_property
    def item_by_id(self) -> dict[str, Item]:
        return {item.id: item for item in self.items}

    @cached_property
    def scale_of_item(self) -> dict[str, str]:
        return {item_id: scale.id for scale in self.scales for item_id in scale.items}

    @cached_property
    def facet_of_item(self) -> dict[str, str]:
        return {item_id: facet.id for facet in self.facets for item_id in facet.items}

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the inventory: identifies exactly what was administered."""
        return content_hash(self)

    def scale(self, scale_id: str) -> Scale:
        return next(s for s in self.scales if s.id == scale_id)

    def item_records(self) -> list[dict[str, Any]]:
        """Every item with its scale, facet, keying and paraphrases (the ``show --json`` view)."""
        return [
            {
                "id": item.id,
                "text": item.text,
                "scale": self.scale_of_item.get(item.id),
                "facet": self.facet_of_item.get(item.id),
                "reverse_keyed": item.reverse_keyed,
                "paraphrases": list(item.paraphrases),
            }
            for item in self.items
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "items": len(self.items),
            "reverse_keyed": sum(item.reverse_keyed for item in self.items),
            "scales": [s.id for s in self.scales],
            "facets": len(self.facets),
            "response_scale": f"{self.response_scale.min}..{self.response_scale.max}",
            "paraphrased_items": sum(bool(item.paraphrases) for item in self.items),
            "norm_groups": len(self.norms),
            "licence": self.licence,
        }


# ---------------------------------------------------------------------------------------------------
# Loading


def load_inventory(path: Path) -> Inventory:
    """Load, validate and consistency-check the inventory file at ``path``."""
    data = load_yaml_file(path)
    return inventory_from_data(data, str(path))


def inventory_from_data(data: Any, source: str) -> Inventory:
    """Validate parsed YAML ``data`` (``source`` names it in errors) into an :class:`Inventory`."""
    if data is None:
        raise InventoryError(source, None, "the file is empty; an inventory needs id, name, items, scales, ...")
    if not isinstance(data, dict):
        raise InventoryError(
            source, None, f"the top level must be a mapping of fields (id, name, items, ...), not a {_kind(data)}"
        )
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, data, source) from None
    check_consistency(inventory, source)
    return inventory


def check_consistency(inv: Inventory, source: str) -> None:
    """Check cross-references and ranges that field types cannot express.

    Raises :class:`InventoryError` for the first problem found.
    """
    rs = inv.response_scale
    if rs.min >= rs.max:
        raise InventoryError(
            source, "response_scale", f"min ({rs.min}) must be smaller than max ({rs.max})"
        )
    if rs.n_options > limits.RESPONSE_OPTIONS:  # before anything lists the values
        raise InventoryError(source, "response_scale", f"{rs.min}..{rs.max} is {rs.n_options:,} response options, "
                             f"more than the {limits.RESPONSE_OPTIONS} allowed; use a narrower scale")
    for value in sorted(rs.labels):
        if not rs.min <= value <= rs.max:
            raise InventoryError(
                source,
                "response_scale.labels",
                f"response value {value} is out of range {rs.min}..{rs.max}; label only values in range",
            )
    for value in rs.values:
        if value not in rs.labels:
            raise InventoryError(
                source, "response_scale.labels", f"response value {value} has no label; label every value {rs.min}..{rs.max}"
            )
    if len(set(rs.labels.values())) != len(rs.labels):
        raise InventoryError(source, "response_scale.labels", "two response values share a label; labels must differ")
    from psychometrics.engine.parse import reading_key

    read_as: dict[str, int] = {}
    for value in rs.values:
        key = reading_key(rs.labels[value])
        if not key:
            raise InventoryError(source, "response_scale.labels", f"the label of value {value} "
                                 f"({rs.labels[value]!r}) has no letter or digit, so no reply can name it; use words")
        if key in read_as:
            other = read_as[key]
            raise InventoryError(
                source, "response_scale.labels",
                f"the labels of values {other} and {value} ({rs.labels[other]!r}, {rs.labels[value]!r}) differ only "
                "in case, punctuation, spacing or Unicode form, so a reply naming one cannot be told from the "
                "other; make the words differ")
        read_as[key] = value

    item_ids: set[str] = set()
    for item in inv.items:
        if item.id in item_ids:
            raise InventoryError(source, f"item '{item.id}'", "duplicate item id; every item id must be unique")
        item_ids.add(item.id)
        seen_wordings = {item.text.casefold()}
        for paraphrase in item.paraphrases:
            if paraphrase.casefold() in seen_wordings:
                raise InventoryError(
                    source,
                    f"item '{item.id}'",
                    f"paraphrase {paraphrase!r} repeats the item text or another paraphrase",
                )
            seen_wordings.add(paraphrase.casefold())

    texts = {item.text.casefold(): item.id for item in inv.items}
    for item in inv.items:
        for paraphrase in item.paraphrases:
            same_as = texts.get(paraphrase.casefold())
            if same_as is not None and same_as != item.id:
                raise InventoryError(
                    source,
                    f"item '{item.id}'",
                    f"paraphrase {paraphrase!r} is the text of item '{same_as}'; a paraphrase must not duplicate another item",
                )

    scale_of: dict[str, str] = {}
    scale_ids: set[str] = set()
    for scale in inv.scales:
        if scale.id in scale_ids:
            raise InventoryError(source, f"scale '{scale.id}'", "duplicate scale id; every scale id must be unique")
        scale_ids.add(scale.id)
        if not scale.items:
            raise InventoryError(source, f"scale '{scale.id}'", "lists no items")
        for item_id in scale.items:
            if item_id not in item_ids:
                raise InventoryError(
                    source, f"scale '{scale.id}'", f"names item '{item_id}', which is not among the items"
                )
            if item_id in scale_of:
                where = "twice" if scale_of[item_id] == scale.id else f"also in scale '{scale_of[item_id]}'"
                raise InventoryError(
                    source,
                    f"scale '{scale.id}'",
                    f"item '{item_id}' is listed {where}; each item belongs to exactly one scale",
                )
            scale_of[item_id] = scale.id
    for item in inv.items:
        if item.id not in scale_of:
            raise InventoryError(
                source, f"item '{item.id}'", "is in no scale; add it to a scale's items or remove it"
            )

    facet_of: dict[str, str] = {}
    facet_ids: set[str] = set()
    for facet in inv.facets:
        where = f"facet '{facet.id}'"
        if facet.id in facet_ids or facet.id in scale_ids:
            raise InventoryError(source, where, "duplicate id; facet ids must differ from each other and from scale ids")
        facet_ids.add(facet.id)
        if facet.scale not in scale_ids:
            raise InventoryError(source, where, f"names scale '{facet.scale}', which is not among the scales")
        if not facet.items:
            raise InventoryError(source, where, "lists no items")
        for item_id in facet.items:
            if item_id not in item_ids:
                raise InventoryError(source, where, f"names item '{item_id}', which is not among the items")
            if scale_of[item_id] != facet.scale:
                raise InventoryError(
                    source,
                    where,
                    f"item '{item_id}' is in scale '{scale_of[item_id]}', not in the facet's scale '{facet.scale}'",
                )
            if item_id in facet_of:
                raise InventoryError(
                    source, where, f"item '{item_id}' is also in facet '{facet_of[item_id]}'; an item belongs to one facet"
                )
            facet_of[item_id] = facet.id

    groups: dict[str, int] = {}
    for index, norm in enumerate(inv.norms):
        if norm.group.casefold() in groups:
            raise InventoryError(source, f"norms[{index}] ('{norm.group}')", f"the same group as norms[{groups[norm.group.casefold()]}]; "
                                 "give each norm group once (its rows would be indistinguishable)")
        groups[norm.group.casefold()] = index

    ranges = {s.id: _score_range(rs, len(s.items), s.scoring) for s in inv.scales}
    ranges.update({f.id: _score_range(rs, len(f.items), f.scoring) for f in inv.facets})
    for index, norm in enumerate(inv.norms):
        where = f"norms[{index}] ('{norm.group}')"
        if not norm.scales and not norm.facets:
            raise InventoryError(source, where, "gives no scale or facet statistics")
        for kind, table, known in (("scale", norm.scales, scale_ids), ("facet", norm.facets, facet_ids)):
            for target, stat in table.items():
                if target not in known:
                    raise InventoryError(source, where, f"names {kind} '{target}', which is not among the {kind}s")
                low, high = ranges[target]
                if not low <= stat.mean <= high:
                    raise InventoryError(
                        source,
                        where,
                        f"{kind} '{target}' mean {stat.mean} is outside the possible score range {low:g}..{high:g}",
                    )
                if stat.sd > (high - low):
                    raise InventoryError(
                        source, where, f"{kind} '{target}' SD {stat.sd} exceeds the score range {low:g}..{high:g}"
                    )


def _score_range(rs: ResponseScale, n_items: int, scoring: str) -> tuple[float, float]:
    if scoring == "sum":
        return float(rs.min * n_items), float(rs.max * n_items)
    return float(rs.min), float(rs.max)


# ---------------------------------------------------------------------------------------------------
# Pydantic error -> one line

_MODEL_AT: dict[str, type[BaseModel]] = {
    "items": Item,
    "scales": Scale,
    "facets": Facet,
    "norms": NormGroup,
    "response_scale": ResponseScale,
}


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer", float: "number"}.get(
        type(value), type(value).__name__
    )


def _describe_location(loc: tuple, data: dict) -> tuple[str | None, str | None, type[BaseModel]]:
    """Map a pydantic ``loc`` to (where, field, model): e.g. ("item 'q4'", "text", Item)."""
    if not loc:
        return None, None, Inventory
    head = loc[0]
    if head in ("items", "scales", "facets", "norms") and len(loc) >= 2 and isinstance(loc[1], int):
        entries = data.get(head)
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        label = {"items": "item", "scales": "scale", "facets": "facet", "norms": "norms"}[head]
        ident = entry.get("group" if head == "norms" else "id") if isinstance(entry, dict) else None
        if head == "norms":
            where = f"norms[{loc[1]}]" + (f" ('{ident}')" if ident else "")
        else:
            where = f"{label} '{ident}'" if isinstance(ident, str) else f"{label} #{loc[1] + 1}"
        rest = [str(part) for part in loc[2:]]
        model = _MODEL_AT[head]
        if head == "norms" and len(rest) >= 3:
            where += f" {rest[0][:-1]} '{rest[1]}'"
            rest = rest[2:]
            model = NormStat
        return where, ".".join(rest) or None, model
    if head == "response_scale" and len(loc) > 1:
        return "response_scale", ".".join(str(p) for p in loc[1:]) or None, ResponseScale
    return None, ".".join(str(p) for p in loc), Inventory


def _translate(exc: ValidationError, data: dict, source: str) -> InventoryError:
    error = exc.errors()[0]
    where, field, model = _describe_location(tuple(error["loc"]), data)
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        field_name = field.split(".")[-1] if field else "?"
        parent = field.rsplit(".", 1)[0] if field and "." in field else None
        owner = where + (f" {parent}" if parent else "") if where else parent
        allowed = ", ".join(model.model_fields)
        return InventoryError(source, owner, f"unknown field '{field_name}'; allowed fields: {allowed}")
    if kind == "missing":
        field_name = field.split(".")[-1] if field else "?"
        parent = field.rsplit(".", 1)[0] if field and "." in field else None
        owner = where + (f" {parent}" if parent else "") if where else parent
        return InventoryError(source, owner, f"missing required field '{field_name}'")
    subject = f"field '{field}'" if field else "value"
    if kind in ("bool_type", "bool_parsing"):
        problem = f"{subject} must be true or false, got {value!r}"
    elif kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        problem = f"{subject} must be one of {expected}, got {value!r}"
    elif kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        problem = f"{subject} {value!r} is not a valid identifier (must match {pattern})"
    elif kind in ("string_too_short",):
        problem = f"{subject} must not be empty"
    elif kind == "too_short":
        problem = f"{subject} must not be empty"
    elif kind == "string_too_long":
        problem = f"{subject} is longer than the {error['ctx']['max_length']:,} characters allowed; shorten it"
    elif kind == "too_long":
        problem = (f"{subject} has {error['ctx'].get('actual_length', 0):,} entries, more than the "
                   f"{error['ctx']['max_length']:,} allowed")
    elif kind in ("less_than", "less_than_equal"):
        bound = error.get("ctx", {}).get("lt", error.get("ctx", {}).get("le"))
        problem = f"{subject} must be at most {bound:,}, got {value!r}"
    elif kind in ("greater_than", "greater_than_equal"):
        bound = error.get("ctx", {}).get("gt", error.get("ctx", {}).get("ge"))
        problem = f"{subject} must be greater than {bound}, got {value!r}"
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        expected = kind.split("_")[0].replace("dict", "mapping").replace("list", "list").replace("int", "integer")
        expected = {"model": "mapping"}.get(expected, expected)
        problem = f"{subject} must be a {expected}, got {_kind(value)} {value!r}"[:300]
    else:
        problem = f"{subject}: {error['msg']}"
    return InventoryError(source, where, problem)
