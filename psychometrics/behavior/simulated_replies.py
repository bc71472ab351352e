"""Helpers for writing simulated replies: the order the prompt shows options and items in, neutral
filler text, canned sentences, and the normal CDF that turns a trait level into a probability."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from psychometrics.behavior.placeholders import option_label
from psychometrics.behavior.reading.text import normalized_text
from psychometrics.behavior.task import ListedItem, Option


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


_OPTION_LINE = re.compile(r"(?m)^[ \t>*_]*\(?([A-H])[.)]\s+(.+?)\s*$")
_ITEM_LINE = re.compile(r"(?m)^[ \t>*_]*(\d{1,2})[.)]\s+(.+?)\s*$")

NEUTRAL_WORDS = (
    "the", "plan", "covers", "each", "step", "in", "order", "and", "we", "review", "the", "notes", "with", "the",
    "team", "before", "the", "next", "meeting", "then", "we", "check", "the", "results", "and", "list", "the",
    "tasks", "for", "the", "morning", "report", "with", "clear", "details", "about", "the", "schedule", "so",
    "every", "part", "of", "the", "work", "stays", "simple", "to", "follow", "through", "the", "week",
)
IDEAS = (
    "doorstop", "paperweight", "bookend", "plant pot", "garden border", "step stool", "hand weight", "candle holder",
    "pencil holder", "bird bath", "wheel chock", "boat anchor", "sculpture base", "pestle", "nutcracker",
    "tent peg hammer", "shelf support", "heat store", "sound damper", "art canvas", "chalk board", "sharpening stone",
    "bug shelter", "coaster", "trivet", "press for flowers", "ballast", "fire pit edge", "path marker", "game piece",
    "balance trainer", "lamp base", "garden gnome", "ice cooler", "sign holder", "door wedge", "book press",
    "herb crusher", "dog toy", "time capsule",
)
NEGATIVE_SENTENCES = (
    "That comment was rude and hurtful.", "I am angry and upset about this.", "This is a terrible, awful situation.",
    "Honestly, I hate how this went.", "It was a painful and miserable failure.", "I feel sad, hurt and frustrated.",
)
POSITIVE_SENTENCES = (
    "Thank you for telling me.", "I appreciate your honest feedback.", "Let us look at what we can do next.",
    "I am happy to help with this.", "I will review the details tomorrow.", "It is a good chance to learn and improve.",
)


def user_turns(messages: Sequence[Sequence[str]]) -> list[str]:
    return [content for role, content in messages if role == "user"]


def assistant_turns(messages: Sequence[Sequence[str]]) -> list[str]:
    return [content for role, content in messages if role == "assistant"]


def _shown(turns: Sequence[str], entries: Sequence, line: re.Pattern) -> list[tuple[str, Any]] | None:
    """(marker, entry) pairs in the order the first user turn listing every entry shows them."""
    by_text = {normalized_text(e.text): e for e in entries}
    for turn in turns:
        shown = [(m.group(1), by_text[normalized_text(m.group(2))]) for m in line.finditer(turn) if normalized_text(m.group(2)) in by_text]
        if len({e.id for _, e in shown}) == len(entries) == len(shown):
            return shown
    return None


def shown_options(turns: Sequence[str], options: Sequence[Option]) -> list[tuple[str, Option]]:
    """(label, option) pairs as the prompt shows them; the file order if the prompt does not list them."""
    return _shown(turns, options, _OPTION_LINE) or [(option_label(i), o) for i, o in enumerate(options)]


def shown_items(turns: Sequence[str], items: Sequence[ListedItem]) -> list[tuple[int, ListedItem]]:
    shown = _shown(turns, items, _ITEM_LINE)
    return [(int(k), item) for k, item in shown] if shown else [(k + 1, item) for k, item in enumerate(items)]


def _filler_sentence(rng, n_words: int) -> str:
    words = [NEUTRAL_WORDS[int(i)] for i in rng.integers(0, len(NEUTRAL_WORDS), size=max(1, n_words))]
    return " ".join(words).capitalize() + "."


def filler_text(rng, n_words: int) -> str:
    sentences, left = [], max(1, n_words)
    while left > 0:
        size = min(left, int(rng.integers(8, 15)))
        sentences.append(_filler_sentence(rng, size))
        left -= size
    return " ".join(sentences)
