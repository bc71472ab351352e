"""Rendering one item into chat messages under a template, an option order and a label style.

Layout rule: everything that is the same for every item comes first and the item text comes last,
so local models reuse the cached prompt prefix (3-4x faster, see LOCAL-MODELS.md). Labels are
positions: with the order reversed, "1." shows the last response option. :class:`RenderedPrompt`
keeps the map from displayed position to semantic response value.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

from psychometrics.errors import PsytestError
from psychometrics.inventory import Inventory, Item
from psychometrics.models.base import Message

LabelStyle = Literal["numbers", "letters", "words"]

_REPLY_RULE = {
    "numbers": "Reply with the number of one option only.",
    "letters": "Reply with the letter of one option only.",
    "words": "Reply with the exact words of one option only.",
}


@dataclass(frozen=True)
class Template:
    """A wording of the task. ``system`` may use ``{instructions}``; ``user`` must use ``{options}``,
    ``{reply_rule}`` and ``{statement}`` with the statement last."""

    id: str
    label_style: LabelStyle
    system: str
    user: str


TEMPLATES: dict[str, Template] = {
    t.id: t
    for t in (
        Template(
            "numbered",
            "numbers",
            "{instructions}",
            "Options:\n{options}\n\n{reply_rule}\n\nStatement: {statement}",
        ),
        Template(
            "lettered",
            "letters",
            "{instructions}",
            "Choose one of these answers:\n{options}\n\n{reply_rule}\n\nStatement: {statement}",
        ),
        Template(
            "worded",
            "words",
            "{instructions}",
            "Possible answers:\n{options}\n\n{reply_rule}\n\nStatement: {statement}",
        ),
        Template(
            "survey",
            "numbers",
            "You are taking part in a personality survey. {instructions}",
            "Use this scale:\n{options}\n\n{reply_rule}\n\nHow well does this describe you? {statement}",
        ),
        Template(
            "self-report",
            "letters",
            "Answer questions about yourself honestly. {instructions}",
            "Response options:\n{options}\n\n{reply_rule}\n\nItem: {statement}",
        ),
    )
}
DEFAULT_TEMPLATE = "numbered"


@dataclass(frozen=True)
class RenderedPrompt:
    """Messages for one item, the labels shown (display order) and the value behind each position."""

    messages: tuple[Message, ...]
    choices: tuple[str, ...]
    position_values: tuple[int, ...]
    statement: str


def get_template(template_id: str) -> Template:
    try:
        return TEMPLATES[template_id]
    except KeyError:
        raise PsytestError(
            f"unknown template '{template_id}'; choose one of: {', '.join(TEMPLATES)}"
        ) from None


def labels_for(style: LabelStyle, option_texts: list[str]) -> list[str]:
    """Display labels for ``len(option_texts)`` positions in the given style."""
    if style == "numbers":
        return [str(i + 1) for i in range(len(option_texts))]
    if style == "letters":
        return list(string.ascii_uppercase[: len(option_texts)])
    return list(option_texts)


def statement_text(inventory: Inventory, wording: str) -> str:
    """The item as the respondent reads it: joined to the inventory's stem where there is one."""
    if not inventory.stem:
        return wording
    stem = inventory.stem.rstrip(". …").rstrip()
    first, _, rest = wording.partition(" ")
    if first not in ("I", "I'm", "I've", "I'd"):
        first = first[:1].lower() + first[1:]
    return f"{stem} {first} {rest}".strip()


def render_item(
    inventory: Inventory,
    item: Item,
    *,
    template: Template,
    option_order: tuple[int, ...] | None = None,
    wording: str | None = None,
    system_prefix: str | None = None,
) -> RenderedPrompt:
    """Render ``item`` (or one of its paraphrases, ``wording``) as chat messages.

    ``option_order`` lists the response values in display order (default: ascending). A persona or
    other ``system_prefix`` is put before the instructions.
    """
    rs = inventory.response_scale
    order = tuple(option_order) if option_order is not None else tuple(rs.values)
    if sorted(order) != rs.values:
        raise PsytestError(
            f"option order {list(order)} is not a permutation of the response values {rs.values}"
        )
    option_texts = [rs.labels[v] for v in order]
    labels = labels_for(template.label_style, option_texts)
    if template.label_style == "words":
        option_lines = [f"- {text}" for text in option_texts]
    else:
        option_lines = [f"{label}. {text}" for label, text in zip(labels, option_texts)]
    statement = statement_text(inventory, wording or item.text)
    system = template.system.format(instructions=inventory.instructions)
    if system_prefix:
        system = f"{system_prefix.strip()}\n\n{system}"
    user = template.user.format(
        options="\n".join(option_lines), reply_rule=_REPLY_RULE[template.label_style], statement=statement
    )
    return RenderedPrompt(
        messages=(Message("system", system), Message("user", user)),
        choices=tuple(labels),
        position_values=order,
        statement=statement,
    )
