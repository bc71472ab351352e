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
from psychometrics.inventories.model import Inventory, Item
from psychometrics.models.base import Message

LabelStyle = Literal["numbers", "letters", "words"]

REPLY_RULES = {
    "numbers": "Reply with the number of one option only.",
    "letters": "Reply with the letter of one option only.",
    "words": "Reply with the exact words of one option only.",
}
REPLY_RULES_MANY = {
    "numbers": 'Rate every statement. Reply with one line per statement in the form "S1: <number>".',
    "letters": 'Rate every statement. Reply with one line per statement in the form "S1: <letter>".',
    "words": 'Rate every statement. Reply with one line per statement in the form "S1: <exact words of the option>".',
}


@dataclass(frozen=True)
class Template:
    """A wording of the task.

    The system message is ``system`` (which may use ``{instructions}``); the user message is ``intro``,
    the options, the reply rule, then ``lead`` and the statement, always last. ``lead_many`` introduces
    the numbered statements when several items share a request.
    """

    id: str
    label_style: LabelStyle
    system: str
    intro: str
    lead: str
    lead_many: str


TEMPLATES: dict[str, Template] = {
    t.id: t
    for t in (
        Template("numbered", "numbers", "{instructions}", "Options:", "Statement: ", "Statements:"),
        Template("lettered", "letters", "{instructions}", "Choose one of these answers:", "Statement: ", "Statements:"),
        Template("worded", "words", "{instructions}", "Possible answers:", "Statement: ", "Statements:"),
        Template(
            "survey", "numbers", "You are taking part in a personality survey. {instructions}",
            "Use this scale:", "How well does this describe you? ", "How well does each of these describe you?",
        ),
        Template(
            "self-report", "letters", "Answer questions about yourself honestly. {instructions}",
            "Response options:", "Item: ", "Items:",
        ),
    )
}


@dataclass(frozen=True)
class RenderedPrompt:
    """Messages for one request, the labels shown (display order), the value behind each position,
    and the statements asked (one, or several numbered S1, S2, ... in display order)."""

    messages: tuple[Message, ...]
    choices: tuple[str, ...]
    position_values: tuple[int, ...]
    statements: tuple[str, ...]

    @property
    def statement(self) -> str:
        return self.statements[0]


def get_template(template_id: str) -> Template:
    try:
        return TEMPLATES[template_id]
    except KeyError:
        raise PsytestError(
            f"unknown template '{template_id}'; choose one of: {', '.join(TEMPLATES)}"
        ) from None


MAX_LETTERED_OPTIONS = len(string.ascii_uppercase)


def labels_for(style: LabelStyle, option_texts: list[str]) -> list[str]:
    """Display labels for ``len(option_texts)`` positions in the given style (never fewer: more options
    than letters is an error, not a shorter list)."""
    if style == "numbers":
        return [str(i + 1) for i in range(len(option_texts))]
    if style == "letters":
        if len(option_texts) > MAX_LETTERED_OPTIONS:
            raise PsytestError(f"{len(option_texts)} response options cannot be labelled A-Z; use a numbered or "
                               "worded template")
        return list(string.ascii_uppercase[: len(option_texts)])
    return list(option_texts)


def check_labels(inventory: Inventory, template: Template) -> None:
    """Refuse an inventory whose options the template's labels would make ambiguous to the parser:
    more than 26 options under letters, or an option whose words are themselves a label of the
    template's kind (a bare number under numbers, one letter under letters: "2" could be the label
    or the words of another option)."""
    rs = inventory.response_scale
    where = f"--templates {template.id}: inventory '{inventory.id}'"
    if template.label_style == "letters" and rs.n_options > MAX_LETTERED_OPTIONS:
        raise PsytestError(f"{where} has {rs.n_options} response options, more than the letters A-Z can label; "
                           "use a numbered or worded template")
    for value in rs.values:
        words = rs.labels[value].strip().rstrip(".):")
        clash = (template.label_style == "numbers" and words.isdigit()) or (
            template.label_style == "letters" and len(words) == 1 and words.isalpha())
        if clash:
            kind = "a number" if template.label_style == "numbers" else "a single letter"
            raise PsytestError(f"{where}: the label of value {value} ({rs.labels[value]!r}) is {kind}, which the "
                               f"{template.id} template's replies use to name positions; use a worded template or "
                               "give the options words")


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
    """Render one ``item`` (or one of its paraphrases, ``wording``) as chat messages."""
    return render_items(
        inventory, [(item, wording or item.text)], template=template, option_order=option_order,
        system_prefix=system_prefix,
    )


def render_items(
    inventory: Inventory,
    items: list[tuple[Item, str]],
    *,
    template: Template,
    option_order: tuple[int, ...] | None = None,
    system_prefix: str | None = None,
) -> RenderedPrompt:
    """Render one or several ``(item, wording)`` pairs as chat messages.

    ``option_order`` lists the response values in display order (default: ascending). A persona or
    other ``system_prefix`` is put before the instructions. Several items are numbered S1, S2, ... in
    the given order and answered one per line.
    """
    frame = prompt_frame(inventory, template=template, option_order=option_order, system_prefix=system_prefix)
    return frame.render([wording for _, wording in items])


@dataclass(frozen=True)
class PromptFrame:
    """Everything the prompts of one inventory, template, option order and system prefix share: the
    system message, the options block and the labels. A plan renders each frame once and every item
    of the cell into it (:meth:`render`), so a large plan neither re-renders nor re-stores the shared
    text (its prompts hold the same system message object)."""

    inventory: Inventory
    template: Template
    system: Message
    options: str
    choices: tuple[str, ...]
    position_values: tuple[int, ...]

    def render(self, wordings: list[str]) -> RenderedPrompt:
        """The prompt asking ``wordings`` (one item's text, or several numbered S1, S2, ...)."""
        template = self.template
        statements = tuple(statement_text(self.inventory, wording) for wording in wordings)
        if len(statements) == 1:
            ask = f"{REPLY_RULES[template.label_style]}\n\n{template.lead}{statements[0]}"
        else:
            numbered = "\n".join(f"S{k + 1}. {text}" for k, text in enumerate(statements))
            ask = f"{REPLY_RULES_MANY[template.label_style]}\n\n{template.lead_many}\n{numbered}"
        return RenderedPrompt(
            messages=(self.system, Message("user", f"{self.options}{ask}")),
            choices=self.choices,
            position_values=self.position_values,
            statements=statements,
        )


def prompt_frame(
    inventory: Inventory,
    *,
    template: Template,
    option_order: tuple[int, ...] | None = None,
    system_prefix: str | None = None,
) -> PromptFrame:
    """The shared part of :func:`render_items`' prompts (see :class:`PromptFrame`)."""
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
    system = template.system.format(instructions=inventory.instructions)
    if system_prefix:
        system = f"{system_prefix.strip()}\n\n{system}"
    options = "\n".join(option_lines)
    return PromptFrame(inventory, template, Message("system", system), f"{template.intro}\n{options}\n\n",
                       tuple(labels), order)
