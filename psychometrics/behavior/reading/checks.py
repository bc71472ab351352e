"""The formatting checks of the ``constraints`` kind (:data:`CHECK_TYPES`), each verified by code
(:func:`check_passes`).

Words and phrases match in any case ("Stay Refreshed." ends with "Stay refreshed."), except where case is
the rule: ``all_caps_word`` and ``lowercase``. Checks that a reply passes by leaving something out
(``exclude``, ``no_commas``, ``lowercase``, ``max_words``, ``sentences_max``) are credited only to a reply
that attempts the writing: the kind scores a refusal or a repeated prompt 0 before any check is run."""

from __future__ import annotations

import re
from typing import Any

from psychometrics.behavior.reading.text import plain_text, words_of

INT_CHECKS = ("max_words", "min_words", "bullets", "sentences_max")
TEXT_CHECKS = ("include", "exclude", "starts_with", "ends_with", "all_caps_word")
FLAG_CHECKS = ("lowercase", "no_commas")
CHECK_TYPES = INT_CHECKS + TEXT_CHECKS + FLAG_CHECKS
REPEATABLE_CHECKS = ("include", "exclude", "all_caps_word")


def _whole_word(word: str, text: str, flags: int = re.IGNORECASE) -> bool:
    return bool(re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text, flags))


def word_used(word: str, text: str) -> bool:
    """Whether ``word`` is used, as itself or with a plural or possessive ending ("cakes", "Friday's")."""
    return bool(re.search(rf"(?<![^\W_]){re.escape(word)}(?:e?s|['’]s)?(?![^\W_])", text, re.IGNORECASE))


_EDGE_MARKS = " \t\r\n*_#>\"'“”‘’`"
_ABBREVIATIONS = frozenset(("mr", "mrs", "ms", "dr", "st", "prof", "e.g", "i.e", "vs", "a.m", "p.m", "no", "approx"))


def _collapsed(text: str) -> str:
    """Text with runs of whitespace (line breaks included) as one space and markdown or quotes trimmed off
    both ends, for checking how a reply starts and ends."""
    return " ".join(plain_text(text).split()).strip(_EDGE_MARKS)


def _starts_with(text: str, value: str) -> bool:
    """The reply opens with ``value``, in any case ("Hi there" opens as "hi there" asks: capitals are the
    ``lowercase`` check's business, not counted twice); a value ending in a letter must end a word there
    ("The", not "There")."""
    start = _collapsed(text).casefold()
    value = value.casefold()
    return start.startswith(value) and not (value[-1:].isalnum() and start[len(value):len(value) + 1].isalnum())


def _ends_with(text: str, value: str) -> bool:
    """The reply closes with ``value`` in any case (line breaks inside it count as spaces); a value ending in a
    letter may be followed by a full stop or "!", and one starting with a letter must start a word."""
    end = _collapsed(text).casefold()
    value = value.casefold()
    if value[-1:].isalnum():
        end = end.rstrip(".!")
    return end.endswith(value) and not (value[:1].isalnum() and end[:-len(value)][-1:].isalnum())


def _count_sentences(text: str) -> int:
    """Sentences: each ``- `` bullet line is one; prose splits at ``. ! ?`` (not after "Mr." or "p.m.") and at
    line breaks, except after a line ending in a comma or colon ("Dear Sam," / "Best wishes,"). A closing
    fragment without end punctuation that is one word or at most four words with a comma ("Best wishes,
    Alex") is a sign-off, not a sentence."""
    units, carry = [], ""
    for line in (line.strip() for line in text.splitlines()):
        if not line:
            continue
        if line.startswith("- "):
            units.append(("bullet", line))
        elif line.endswith((",", ":")) and not line.startswith("- "):
            carry += line + " "
        else:
            units.append(("prose", carry + line))
            carry = ""
    if carry:
        units.append(("prose", carry.strip()))
    count = 0
    for kind, unit in units:
        count += 1 if kind == "bullet" else len(_prose_sentences(unit))
    last = units[-1][1] if units else ""
    tail = _prose_sentences(last)[-1] if units and units[-1][0] == "prose" and _prose_sentences(last) else ""
    signoff = ("," in tail and len(words_of(tail)) <= 4) or len(words_of(tail)) == 1
    if tail and signoff and not re.search(r"[.!?][\"'”’)\]]*$", tail) and count > 1:
        count -= 1
    return count


def _prose_sentences(text: str) -> list[str]:
    pieces, current = [], ""
    for piece in re.split(r"(?<=[.!?])\s+", text.strip()):
        current = f"{current} {piece}".strip()
        last = current.rsplit(None, 1)[-1].rstrip(".").casefold()
        if last in _ABBREVIATIONS or re.fullmatch(r"[A-Z]\.", current.rsplit(None, 1)[-1]):
            continue
        pieces.append(current)
        current = ""
    if current:
        pieces.append(current)
    return [p for p in pieces if re.search(r"\w", p)]


def check_passes(kind: str, value: Any, text: str) -> bool:
    """Whether ``text`` satisfies one check (see the module docstring of the task format)."""
    if kind == "max_words":
        return len(words_of(text)) <= value
    if kind == "min_words":
        return len(words_of(text)) >= value
    if kind == "include":
        return word_used(value, text)
    if kind == "exclude":
        return not word_used(value, text)
    if kind == "lowercase":
        return not any(ch.isupper() for ch in text)
    if kind == "no_commas":
        return "," not in text and "，" not in text
    if kind == "bullets":
        return sum(1 for line in text.splitlines() if line.lstrip().startswith("- ")) == value
    if kind == "starts_with":
        return _starts_with(text, value)
    if kind == "ends_with":
        return _ends_with(text, value)
    if kind == "sentences_max":
        return _count_sentences(text) <= value
    if kind == "all_caps_word":
        return _whole_word(value.upper(), text, 0)
    raise KeyError(kind)
