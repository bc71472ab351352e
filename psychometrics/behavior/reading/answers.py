"""Reading numbered answers: a reply split at its ``1.``, ``2.`` ... markers, and a yes or no per answer."""

from __future__ import annotations

import re

from psychometrics.behavior.reading.text import normalized_text, plain_text

_NUMBERED = re.compile(r"(?im)^[ \t>#*_-]*(?:item\s+|question\s+|q)?(\d{1,2})\s*[.):\-–]\s*")
YES_WORDS = {"yes", "yeah", "yep", "y", "familiar", "know", "known", "knew", "heard", "aware", "recognize", "recognise",
        "recognized", "recognised", "true", "read", "visited"}
NO_WORDS = {"no", "nope", "not", "never", "unfamiliar", "unknown", "unsure", "n", "don", "dont", "haven", "havent",
       "didn", "didnt", "false", "nah"}


def numbered_segments(text: str, expected: int | None = None) -> dict[int, str]:
    """Text after each ``k.`` line marker up to the next marker (first occurrence of each number). When
    the line markers miss some of ``1..expected``, answers written on one line ("1. NaCl 2. Nucleus")
    are split at inline markers taken in order, if that finds more of them."""
    plain = plain_text(text)
    marks = list(_NUMBERED.finditer(plain))
    segments: dict[int, str] = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(plain)
        segments.setdefault(int(mark.group(1)), plain[mark.end():end])
    if expected and not set(range(1, expected + 1)) <= set(segments):
        inline = _inline_segments(plain, expected)
        if len(inline) > len(set(segments) & set(range(1, expected + 1))):
            return inline
    return segments


def _inline_segments(text: str, expected: int) -> dict[int, str]:
    """Segments between markers ``1.``, ``2.``, ... found in that order anywhere in the text."""
    found: list[tuple[int, int, int]] = []  # (number, marker start, text start)
    at = 0
    for number in range(1, expected + 1):
        mark = re.compile(rf"(?:^|(?<=[\s,;(]))(?:q|question\s+)?{number}\s*[.):]\s+", re.IGNORECASE).search(text, at)
        if mark is None:
            break
        found.append((number, mark.start(), mark.end()))
        at = mark.end()
    return {number: text[begin:(found[i + 1][1] if i + 1 < len(found) else len(text))]
            for i, (number, _, begin) in enumerate(found)}


# Ways of saying "I don't know it" without a no-word (matched in _norm text: "can't" is "can t").
_DENIAL = re.compile(
    r"\b(?:(?:can t|cannot|can not|couldn t|could not|unable to) (?:find|locate|place|recall|confirm|verify|identify)"
    r"|can t say i (?:know|have heard|recogni[sz]e|am familiar)|no (?:record|information|knowledge|idea)"
    r"|(?:doesn t|does not|don t|do not) (?:appear|seem|exist|ring a bell)|(?:not|isn t) (?:a )?real"
    r"|(?:may|might|could) not (?:exist|be real)"
    r"|(?:likely|probably|possibly|seems|appears|may be) (?:to be )?(?:fictional|invented|made up)"
    r"|never (?:come|came) across|haven t come across|don t recall|do not recall|unaware|uncertain|unrecogni[sz]ed)\b")


def read_yes_no(text: str, remove: str = "") -> bool | None:
    """The first yes-like or no-like word (a denial phrase counts as "no"), after removing the echoed
    item text."""
    haystack = f" {normalized_text(text)} "
    if remove and normalized_text(remove):
        haystack = haystack.replace(f" {normalized_text(remove)} ", " ")
    haystack = _DENIAL.sub(" no ", haystack)
    for token in haystack.split():
        if token in NO_WORDS:
            return False
        if token in YES_WORDS:
            return True
    return None
