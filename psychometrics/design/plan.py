"""The factorial design of an administration, and its expansion into planned requests.

A design crosses, for every item of every inventory: option orders x templates x wordings (the item
text and its paraphrases) x samples. Each cell is one :class:`PlannedRequest` with a stable id and a
seed derived from the run seed and the cell (one fixed seed for all requests would correlate the
draws across items).

The option-order schemes (``original``, ``reversed``, ``rotations``, ``latin-square``, ``random:N``) are
defined in :mod:`psychometrics.conditions`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from psychometrics import limits
from psychometrics.conditions import Condition, expand_option_orders
from psychometrics.errors import PsytestError
from psychometrics.inventories.model import Inventory, Item
from psychometrics.models.base import AnswerMode, ModelRequest
from psychometrics.design.personas import Persona, PersonaSet
from psychometrics.design.prompts import TEMPLATES, RenderedPrompt, check_labels, get_template, prompt_frame

ORDER_SCHEMES = ("original", "reversed", "rotations", "latin-square", "random:N")
MAX_RANDOM_ORDERS = limits.RANDOM_ORDERS
# One run's plan is held in memory (about 1 kB per request): larger studies are split into several runs.
MAX_PLANNED_REQUESTS = limits.PLANNED_REQUESTS
MAX_TEMPERATURE = 5.0


class Design(BaseModel):
    """What varies across requests. Mirrors the ``administer`` options and ``--design FILE.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    option_orders: Annotated[list[str], Field(min_length=1, max_length=limits.ORDER_LEVELS)] = ["original"]
    templates: Annotated[list[str], Field(min_length=1, max_length=limits.TEMPLATE_LEVELS)] = ["numbered"]
    paraphrases: Literal["none", "all"] = "none"
    samples: Annotated[int, Field(ge=1, le=limits.SAMPLES)] = 1
    #: One sampling temperature (the scalar form, as runs before temperature was a factor recorded it) or
    #: several, crossed with everything else as the design factor ``temperature``; one level is stored as a
    #: scalar, so a single-temperature design is the same design (and plans the same ids) as before.
    temperature: float | list[float] = 0.0
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    modes: Annotated[list[AnswerMode], Field(min_length=1)] = ["text"]
    max_tokens: Annotated[int, Field(ge=1, le=limits.MAX_TOKENS)] = 16
    personas: Annotated[str, Field(max_length=limits.SHORT_TEXT)] | None = None
    persona_ids: Annotated[list[str], Field(max_length=limits.PERSONAS)] | None = None
    items_per_request: Annotated[int, Field(ge=1, le=limits.ITEMS_PER_REQUEST)] = 1
    item_orders: Annotated[int, Field(ge=1, le=limits.ITEM_ORDERS)] = 1
    invalid: Annotated[str, Field(pattern=r"^(missing|drop|reask:[1-9][0-9]?)$")] = "missing"
    #: A text reply cut off at max_tokens: ``missing`` (outcome ``truncated``), or ``reask:N``, asked again
    #: with twice the tokens up to N times. How a reply is obtained, not what is asked: not in request ids.
    on_truncated: Annotated[str, Field(pattern=r"^(missing|reask:[1-9])$")] = "missing"

    @model_validator(mode="after")
    def _coherent(self) -> "Design":
        if self.items_per_request > 1 and "probs" in self.modes:
            raise ValueError(
                "probability mode scores one item per request; use items_per_request 1 or text mode only"
            )
        if self.item_orders > 1 and self.items_per_request == 1:
            raise ValueError("item_orders only matters with several items per request (items_per_request > 1)")
        if self.persona_ids and not self.personas:
            raise ValueError("persona_ids needs personas (a persona set name or file)")
        return self

    @property
    def reasks(self) -> int:
        """How many times an invalid text reply is re-asked (0 unless ``invalid`` is ``reask:N``)."""
        return int(self.invalid.split(":")[1]) if self.invalid.startswith("reask:") else 0

    @property
    def longer_reasks(self) -> int:
        """How many times a cut-off text reply is asked again with twice the tokens (``on_truncated``)."""
        return int(self.on_truncated.split(":")[1]) if self.on_truncated.startswith("reask:") else 0

    @field_validator("option_orders", "templates", "modes", "persona_ids")
    @classmethod
    def _each_level_once(cls, levels: list[str] | None) -> list[str] | None:
        """A level given twice would be planned twice: every request of it counted as already answered
        once it is sent (and its cells weighted double), so a repeat is an error, not a silent merge."""
        given = levels or []
        repeated = next((level for index, level in enumerate(given) if level in given[:index]), None)
        if repeated is not None:
            raise ValueError(f"{repeated!r} is given twice; give each level once")
        return levels

    @field_validator("temperature", mode="before")
    @classmethod
    def _temperature_levels(cls, value: object) -> float | list[float]:
        levels = value if isinstance(value, (list, tuple)) else [value]
        if not levels:
            raise ValueError("give at least one temperature")
        if len(levels) > limits.TEMPERATURE_LEVELS:
            raise ValueError(f"at most {limits.TEMPERATURE_LEVELS} temperatures")
        numbers: list[float] = []
        for level in levels:
            if isinstance(level, bool) or not isinstance(level, (int, float)) or level != level:
                raise ValueError(f"each temperature must be a number from 0 to {MAX_TEMPERATURE:g}, not "
                                 f"{str(level)[:40]!r}")
            if not 0.0 <= float(level) <= MAX_TEMPERATURE:
                raise ValueError(f"each temperature must be from 0 to {MAX_TEMPERATURE:g}, not {level:g}")
            if float(level) in numbers:
                raise ValueError(f"temperature {float(level):g} is given twice; give each level once")
            numbers.append(float(level))
        return numbers[0] if len(numbers) == 1 else numbers

    @property
    def temperatures(self) -> list[float]:
        """The design's temperatures, in the order given (one for the scalar form)."""
        return list(self.temperature) if isinstance(self.temperature, list) else [self.temperature]

    @field_validator("option_orders")
    @classmethod
    def _known_schemes(cls, schemes: list[str]) -> list[str]:
        for scheme in schemes:
            name, _, count = scheme.partition(":")
            if name == "random" and count.isdigit() and 1 <= int(count) <= MAX_RANDOM_ORDERS:
                continue
            if name == "random" and count.isdigit() and int(count) > MAX_RANDOM_ORDERS:
                raise ValueError(f"{scheme}: at most random:{MAX_RANDOM_ORDERS} option orders")
            if scheme not in ORDER_SCHEMES[:-1]:
                raise ValueError(f"unknown option order {scheme!r}; use {', '.join(ORDER_SCHEMES)}")
        return schemes

    @field_validator("templates")
    @classmethod
    def _known_templates(cls, templates: list[str]) -> list[str]:
        for template in templates:
            try:
                get_template(template)
            except PsytestError as exc:  # as a ValueError, so the message names the design file
                raise ValueError(str(exc)) from None
        return templates

    def as_manifest(self) -> dict:
        return self.model_dump(mode="json")


def load_design(path: Path) -> Design:
    """Read ``--design FILE.yaml``; problems become one-line errors naming the file and field."""
    from psychometrics.yaml_io import load_yaml_file

    data = load_yaml_file(path)
    if data is None:
        raise PsytestError(f"{path}: the file is empty; a design file is a mapping of design options")
    if not isinstance(data, dict):
        raise PsytestError(f"{path}: a design file must be a mapping of design options")
    return design_from_mapping(data, str(path))


def design_from_mapping(data: dict, source: str) -> Design:
    try:
        return Design.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(Design.model_fields)
            raise PsytestError(f"{source}: unknown design option '{field}'; allowed: {allowed}") from None
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "string_pattern_mismatch" and field == "invalid":
            message = f"must be missing, drop or reask:N (N = 1..99), got {str(error.get('input'))[:40]!r}"
        if error["type"] == "string_pattern_mismatch" and field == "on_truncated":
            message = (f"must be missing or reask:N (N = 1..9: each re-ask doubles max_tokens), "
                       f"got {str(error.get('input'))[:40]!r}")
        raise PsytestError(f"{source}: {field + ': ' if field else ''}{message}") from None


# ---------------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True)
class PlannedRequest:
    """One request to send: its items (one, or several in display order), design cell, rendered
    prompt and identity."""

    request_id: str
    inventory: Inventory
    items: tuple[Item, ...]
    condition: Condition
    prompt: RenderedPrompt
    request: ModelRequest
    option_texts: tuple[str, ...]

    @property
    def item(self) -> Item:
        return self.items[0]


# Canonical JSON, as ``json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
# What that encoder does with a str (json.encoder's C function where there is one).
_json_string = json.encoder.encode_basestring


def _digest(payload: object) -> str:
    return hashlib.sha256(_canonical_json(payload).encode()).hexdigest()


def messages_hash(prompt: RenderedPrompt) -> str:
    return _digest([[m.role, m.content] for m in prompt.messages])


def derive_seed(run_seed: int, *parts: object) -> int:
    """A per-request seed in [0, 2**31): independent draws for every item, cell and sample."""
    return int(_digest([run_seed, *parts])[:8], 16) & 0x7FFFFFFF


def request_identity(model: str, backend_params: dict, request: ModelRequest, sample: int) -> str:
    """sha256 of everything that changes the answer: model, its settings, messages, labels, mode,
    sampling settings, derived seed and sample index."""
    return _digest(
        {
            "model": model,
            "params": backend_params,
            "messages": [[m.role, m.content] for m in request.messages],
            "choices": list(request.choices),
            "mode": request.mode,
            "temperature": request.temperature,
            "seed": request.seed,
            "max_tokens": request.max_tokens if request.mode == "text" else None,
            "sample": sample,
        }
    )


class _IdentityWriter:
    """:func:`request_identity` and :func:`derive_seed` for a whole plan, byte for byte the same digests,
    without encoding the same JSON again for every request.

    The canonical JSON of both payloads is a fixed sequence of keys (sorted); the parts that are the same for
    many requests (model, settings, a prompt's system message and labels, the cell's levels) are encoded
    once and joined, and strings are encoded by the function ``json`` itself uses for them. At half a million
    requests this is most of the planning time saved (tests/test_plan_identity.py checks the digests
    against the definitions above).
    """

    def __init__(self, model: str, backend_params: dict, run_seed: int) -> None:
        self._tail = f',"model":{_canonical_json(model)},"params":{_canonical_json(backend_params)},"sample":'
        self._run_seed = _canonical_json(run_seed)
        self._encoded: dict[object, str] = {}

    def _json(self, value: object) -> str:
        """The canonical JSON of a small, often repeated value (a level, a label list, a system message)."""
        key = (type(value), value)
        text = self._encoded.get(key)
        if text is None:
            if len(self._encoded) > 100_000:  # levels and frames are few; never grow without bound
                self._encoded.clear()
            text = self._encoded[key] = _canonical_json(list(value) if isinstance(value, tuple) else value)
        return text

    def messages(self, request: ModelRequest) -> str:
        """The canonical JSON of ``[[role, content], ...]``: system messages from the cache, the rest encoded."""
        parts = [self._json(("system", m.content)) if m.role == "system" else
                 f"[{_json_string(m.role)},{_json_string(m.content)}]" for m in request.messages]
        return "[" + ",".join(parts) + "]"

    def items(self, item_ids: list[str]) -> str:
        """The canonical JSON of a list of item ids (identifiers: strings)."""
        return "[" + ",".join(_json_string(i) for i in item_ids) + "]"

    def cell(self, inventory_id: str, condition: Condition) -> tuple[str, str, str, str]:
        """The parts of :meth:`seed`'s payload that the cell's samples and modes share."""
        j = self._json
        return (f"[{self._run_seed},{j(inventory_id)},",
                f"{{\"item_order\":{j(condition.item_order)},\"mode\":",
                f",\"option_order\":{j(condition.option_order)},\"persona\":{j(condition.persona)},\"sample\":",
                f",\"template\":{j(condition.template)},\"wording\":{j(condition.wording)}}}]")

    def seed(self, cell: tuple[str, str, str, str], item_ids: str, condition: Condition) -> int:
        """:func:`derive_seed` of ``(run_seed, inventory id, item ids, condition.seed_parts())``; ``cell`` is
        :meth:`cell` of the condition, ``item_ids`` :meth:`items` of the request's items."""
        text = (f"{cell[0]}{item_ids},{cell[1]}{self._json(condition.mode)}{cell[2]}{self._json(condition.sample)}"
                f"{cell[3]}")
        return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF

    def identity(self, request: ModelRequest, messages_json: str, sample: int) -> str:
        """:func:`request_identity` of ``request``, whose messages encode to ``messages_json``."""
        j = self._json
        max_tokens = request.max_tokens if request.mode == "text" else None
        seed = str(request.seed) if type(request.seed) is int else _canonical_json(request.seed)  # seeds: all distinct
        text = (f"{{\"choices\":{j(request.choices)},\"max_tokens\":{j(max_tokens)},\"messages\":{messages_json},"
                f"\"mode\":{j(request.mode)}{self._tail}{j(sample)},\"seed\":{seed},"
                f"\"temperature\":{j(request.temperature)}}}")
        return hashlib.sha256(text.encode()).hexdigest()


def _wordings(inventory: Inventory, design: Design) -> list[str]:
    if design.paraphrases == "none":
        return ["original"]
    most = max((len(item.paraphrases) for item in inventory.items), default=0)
    return ["original", *(f"paraphrase{i + 1}" for i in range(most))]


def _wording_text(item: Item, wording: str) -> str | None:
    if wording == "original":
        return item.text
    index = int(wording.removeprefix("paraphrase")) - 1
    return item.paraphrases[index] if index < len(item.paraphrases) else None


def _item_sequences(inventory: Inventory, design: Design) -> list[tuple[str, list[Item]]]:
    """Item orders: the inventory's order for one item per request, else seeded shuffles."""
    if design.items_per_request == 1:
        return [("none", list(inventory.items))]
    sequences = []
    for j in range(design.item_orders):
        items = list(inventory.items)
        random.Random(f"item-order:{design.seed}:{inventory.id}:{j}").shuffle(items)
        sequences.append((f"shuffle{j + 1}", items))
    return sequences


def count_requests(inventories: list[Inventory], design: Design, persona_set: PersonaSet | None = None) -> int:
    """How many requests :func:`plan_requests` would plan, computed without rendering any prompt."""
    personas = len(persona_set.select(design.persona_ids)) if persona_set else 1
    total = 0
    for inventory in inventories:
        orders = len(expand_option_orders(design.option_orders, inventory.response_scale.values, design.seed))
        per_cell = 0
        for wording in _wordings(inventory, design):
            worded = sum(_wording_text(item, wording) is not None for item in inventory.items)
            per_cell += -(-worded // design.items_per_request) * (design.item_orders if design.items_per_request > 1 else 1)
        total += (len(design.templates) * orders * personas * per_cell * len(design.modes) * len(design.temperatures)
                  * design.samples)
    return total


def check_plan_size(inventories: list[Inventory], design: Design, persona_set: PersonaSet | None = None) -> int:
    """The number of planned requests; a one-line error when one run could not hold them."""
    count = count_requests(inventories, design, persona_set)
    if count > MAX_PLANNED_REQUESTS:
        raise PsytestError(
            f"design: {count:,} requests planned, more than the {MAX_PLANNED_REQUESTS:,} one run holds; "
            "reduce samples, option orders, templates or personas, or split the study into several runs "
            "(e.g. by --persona-ids or --inventory)"
        )
    return count


def plan_requests(
    inventories: list[Inventory],
    design: Design,
    model: str,
    backend_params: dict,
    persona_set: PersonaSet | None = None,
) -> list[PlannedRequest]:
    """Expand the design over every item of every inventory, in a stable order.

    Items vary fastest (then samples and modes within an item), so consecutive requests share the
    whole prompt prefix: local models reuse their cache, and a run interrupted early still has
    complete questionnaires for the first cells.
    """
    check_plan_size(inventories, design, persona_set)
    for inventory in inventories:
        for template_id in design.templates:
            check_labels(inventory, TEMPLATES[template_id])
    personas: list[Persona | None] = list(persona_set.select(design.persona_ids)) if persona_set else [None]
    # Within a prompt: modes, then temperatures, then samples (one temperature plans as before it was a factor).
    cells = [(mode, temperature, sample) for mode in design.modes for temperature in design.temperatures
             for sample in range(design.samples)]
    writer = _IdentityWriter(model, backend_params, design.seed)
    planned: list[PlannedRequest] = []
    for inventory in inventories:
        rs = inventory.response_scale
        orders = expand_option_orders(design.option_orders, rs.values, design.seed)
        sequences = _item_sequences(inventory, design)
        for template_id in design.templates:
            template = TEMPLATES[template_id]
            for order_name, order in orders:
                for persona in personas:
                    frame = prompt_frame(inventory, template=template, option_order=order,
                                         system_prefix=persona.text if persona else None)
                    option_texts = tuple(rs.labels[v] for v in frame.position_values)
                    persona_id = persona.id if persona else "none"
                    for wording in _wordings(inventory, design):
                        for sequence_name, sequence in sequences:
                            cell = writer.cell(inventory.id, Condition(order_name, template_id, persona_id, wording,
                                                                       sequence_name, 0, "text"))
                            texts = [(item, _wording_text(item, wording)) for item in sequence]
                            worded = [(item, text) for item, text in texts if text is not None]
                            for start in range(0, len(worded), design.items_per_request):
                                chunk = worded[start : start + design.items_per_request]
                                items = tuple(item for item, _ in chunk)
                                prompt = frame.render([text for _, text in chunk])
                                item_ids = writer.items([item.id for item in items])
                                messages_json = None
                                for mode, temperature, sample in cells:
                                    condition = Condition(
                                        order_name, template_id, persona_id, wording, sequence_name, sample, mode,
                                        temperature,
                                    )
                                    request = ModelRequest(
                                        messages=prompt.messages,
                                        choices=prompt.choices,
                                        mode=mode,
                                        temperature=temperature,
                                        seed=writer.seed(cell, item_ids, condition),
                                        max_tokens=design.max_tokens * len(chunk),
                                        inventory=inventory.id,
                                    )
                                    if messages_json is None:
                                        messages_json = writer.messages(request)
                                    planned.append(
                                        PlannedRequest(
                                            writer.identity(request, messages_json, sample),
                                            inventory,
                                            items,
                                            condition,
                                            prompt,
                                            request,
                                            option_texts,
                                        )
                                    )
    return planned
