"""Reply text -> outcome and chosen position.

Each reply is classified as exactly one of:

``valid``         one displayed option was chosen (strict pattern, else a lenient one);
``refusal``       the model declined (e.g. "As an AI, I don't have personal feelings");
``out_of_range``  a label-like answer that is not among the options (e.g. "7" on a 1-5 scale);
``multiple``      more than one option named;
``unparseable``   anything else;
``truncated``     the server cut the reply off at ``max_tokens`` before a complete answer
                  (:func:`psychometrics.engine.send.cut_off_outcomes`; never from the text alone).

The strict pattern accepts the bare label, optionally followed by punctuation or the option's words
("4", "4.", "D) Moderately accurate"). The lenient pass looks for labels and option words anywhere in
the reply. Which pass succeeded is recorded, so a study can report how much it relied on leniency.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["valid", "refusal", "out_of_range", "multiple", "unparseable", "truncated"]
OUTCOMES: tuple[Outcome, ...] = ("valid", "refusal", "out_of_range", "multiple", "unparseable", "truncated")

_REFUSAL = re.compile(
    r"\b(as an ai|as a language model|i (?:do not|don't) have (?:personal|feelings|a personality|emotions)"
    r"|i (?:cannot|can't|am unable to|won't) (?:answer|rate|provide|respond|share)"
    r"|i'm (?:not able|unable) to|not appropriate for me)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ParsedReply:
    outcome: Outcome
    position: int | None = None  # index into the displayed choices
    method: Literal["strict", "lenient"] | None = None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", unicodedata.normalize("NFKC", text).casefold()).split())


def reading_key(option_text: str) -> str:
    """What the parser reads of an option's words: case, punctuation, spacing and Unicode form
    (NFKC: composed or decomposed accents, full-width letters) are ignored. Two options with the same
    key cannot be told apart in a reply, so an inventory may not have them
    (:func:`psychometrics.inventories.model.check_consistency`)."""
    return _norm(option_text)


@functools.lru_cache(maxsize=4096)
def _strict_pattern(label: str, option: str) -> re.Pattern:
    """The bare ``label``, optionally with trailing punctuation and/or its own ``option`` words (compiled once
    per label and option: the same few recur in every reply of a run)."""
    return re.compile(rf"^\(?{re.escape(label)}[\.\):]?(?:\s*[-:]?\s*{re.escape(option)})?[\.\s]*$",
                      0 if not label.isalpha() else re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _label_token(label: str) -> re.Pattern:
    """``label`` as a standalone token; letters in upper case only ("a lot" is not "A")."""
    return re.compile(rf"(?<![\w]){re.escape(label)}(?![\w])", 0 if label.isalpha() else re.IGNORECASE)


def parse_reply(text: str | None, choices: tuple[str, ...], option_texts: tuple[str, ...]) -> ParsedReply:
    """Classify ``text`` against the displayed ``choices`` (labels) and their ``option_texts``."""
    if text is None or not text.strip():
        return ParsedReply("unparseable")
    reply = text.strip()
    words_style = tuple(choices) == tuple(option_texts)
    numeric = all(c.isdigit() for c in choices)

    # Strict: the bare label, optionally with trailing punctuation and/or its own option words.
    for position, (label, option) in enumerate(zip(choices, option_texts)):
        if words_style:
            if _norm(reply) == _norm(label):
                return ParsedReply("valid", position, "strict")
            continue
        if _strict_pattern(label, option).match(reply):
            return ParsedReply("valid", position, "strict")

    if _REFUSAL.search(reply):
        return ParsedReply("refusal")

    # Lenient: labels as standalone tokens, and option words, anywhere in the reply.
    found: set[int] = set()
    normalized = f" {_norm(reply)} "
    by_length = sorted(range(len(option_texts)), key=lambda i: -len(option_texts[i]))
    remaining = normalized
    for position in by_length:
        phrase = f" {_norm(option_texts[position])} "
        if phrase in remaining:
            found.add(position)
            remaining = remaining.replace(phrase, " ")
    if not words_style:
        for position, label in enumerate(choices):
            if _label_token(label).search(reply):
                found.add(position)
    if len(found) == 1:
        return ParsedReply("valid", found.pop(), "lenient")
    if len(found) > 1:
        return ParsedReply("multiple")
    if numeric and re.fullmatch(r"\s*-?\d+[\.\)]?\s*", reply):
        return ParsedReply("out_of_range")
    if not numeric and not words_style and re.fullmatch(r"\s*[A-Z][\.\)]?\s*", reply):
        return ParsedReply("out_of_range")
    return ParsedReply("unparseable")


def parse_many(
    text: str | None, n_items: int, choices: tuple[str, ...], option_texts: tuple[str, ...]
) -> list[ParsedReply]:
    """Classify a reply to ``n_items`` numbered statements, one answer per line ("S1: 4").

    Lines are matched by their statement number; if the reply has no numbered lines but exactly
    ``n_items`` non-empty lines, they are taken in order (a lenient match). A whole-reply refusal marks
    every item as refused; a statement without an answer line is unparseable, and one answered twice
    with different options is ``multiple`` (neither line is preferred).
    """
    if text is None or not text.strip():
        return [ParsedReply("unparseable")] * n_items
    answers: dict[int, str] = {}
    repeated: dict[int, list[str]] = {}
    for match in re.finditer(r"(?im)^[\s*#-]*S(\d+)\**\s*[:.)\-]\s*(.+?)\s*$", text):
        number = int(match.group(1))
        if number in answers:
            repeated.setdefault(number, [answers[number]]).append(match.group(2))
        answers.setdefault(number, match.group(2))
    lenient = False
    if not answers:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        if len(lines) == n_items:
            answers = {k + 1: line for k, line in enumerate(lines)}
            lenient = True
        elif _REFUSAL.search(text):
            return [ParsedReply("refusal")] * n_items
    results = []
    for k in range(1, n_items + 1):
        if k not in answers:
            results.append(ParsedReply("unparseable"))
            continue
        parsed = parse_reply(answers[k], choices, option_texts)
        if k in repeated:
            readings = {(p.outcome, p.position) for p in (parse_reply(a, choices, option_texts) for a in repeated[k])}
            if len(readings) > 1:
                parsed = ParsedReply("multiple")
        if lenient and parsed.outcome == "valid":
            parsed = ParsedReply("valid", parsed.position, "lenient")
        results.append(parsed)
    return results
