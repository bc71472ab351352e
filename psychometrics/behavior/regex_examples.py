"""Example strings built from a regular expression, so that a simulated reply can give an answer that an
item's ``pattern`` recognises."""

from __future__ import annotations

import re

from psychometrics.behavior import patterns
from psychometrics.behavior.task import ListedItem

_MAX_COPIES = 100  # a{100000000} would build a 100 MB example: no example instead


def _regex_example(pattern: str) -> str | None:
    """A short string the pattern matches (for simulated replies), or None."""
    try:
        import re._parser as sre  # Python >= 3.11
    except ImportError:  # pragma: no cover
        import sre_parse as sre  # type: ignore[no-redef]
    from re._constants import (  # type: ignore[import-not-found]
        ANY,
        ASSERT,
        ASSERT_NOT,
        AT,
        BRANCH,
        CATEGORY,
        CATEGORY_DIGIT,
        CATEGORY_NOT_DIGIT,
        CATEGORY_NOT_SPACE,
        CATEGORY_NOT_WORD,
        CATEGORY_SPACE,
        CATEGORY_WORD,
        GROUPREF,
        IN,
        LITERAL,
        MAX_REPEAT,
        MIN_REPEAT,
        NEGATE,
        NOT_LITERAL,
        RANGE,
        SUBPATTERN,
    )

    category = {CATEGORY_DIGIT: "7", CATEGORY_NOT_DIGIT: "a", CATEGORY_SPACE: " ", CATEGORY_NOT_SPACE: "a",
                CATEGORY_WORD: "a", CATEGORY_NOT_WORD: " "}
    groups: dict[int, str] = {}

    def in_set(ch: str, members) -> bool:
        for op, av in members:
            if (op is LITERAL and chr(av) == ch) or (op is RANGE and av[0] <= ord(ch) <= av[1]):
                return True
            if op is CATEGORY and re.fullmatch({CATEGORY_DIGIT: r"\d", CATEGORY_NOT_DIGIT: r"\D",
                                                CATEGORY_SPACE: r"\s", CATEGORY_NOT_SPACE: r"\S",
                                                CATEGORY_WORD: r"\w", CATEGORY_NOT_WORD: r"\W"}.get(av, "(?!)"), ch):
                return True
        return False

    def build(parsed) -> str:
        out = []
        for op, av in parsed:
            if op is LITERAL:
                out.append(chr(av))
            elif op is NOT_LITERAL:
                out.append("x" if chr(av) != "x" else "y")
            elif op is ANY:
                out.append("x")
            elif op is IN:
                if av and av[0][0] is NEGATE:
                    out.append(next(c for c in "xqz0 -" if not in_set(c, av[1:])))
                else:
                    first_op, first = av[0]
                    out.append(chr(first) if first_op is LITERAL else chr(first[0]) if first_op is RANGE
                               else category.get(first, "a"))
            elif op is BRANCH:
                out.append(build(av[1][0]))
            elif op is SUBPATTERN:
                text = build(av[-1])
                if av[0] is not None:
                    groups[av[0]] = text
                out.append(text)
            elif op in (MAX_REPEAT, MIN_REPEAT) or getattr(op, "name", "") == "POSSESSIVE_REPEAT":
                if av[0] > _MAX_COPIES:
                    raise ValueError(av[0])
                out.append(build(av[2]) * av[0])
            elif op is GROUPREF:
                out.append(groups.get(av, ""))
            elif op in (AT, ASSERT, ASSERT_NOT):
                continue
            else:
                raise ValueError(op)
        return "".join(out)

    try:
        example = build(sre.parse(pattern)).strip()
    except (ValueError, StopIteration, re.error, IndexError, TypeError):
        return None
    return example or None


def item_example(item: ListedItem, source: str = "", where: str = "") -> str | None:
    """Text that the item's pattern recognises: a string built from the pattern, else the item text.
    The pattern runs under the time limit of :mod:`psychometrics.behavior.patterns` (``source`` and
    ``where`` name the task file and variant if it is exceeded)."""
    if not item.pattern:
        return None
    where = f"{where}, item '{item.id}'" if where else f"item '{item.id}'"
    example = _regex_example(item.pattern)
    if example is not None and not patterns.search(item.pattern, f" {example}. ", source, where):
        example = None
    if example is None and patterns.search(item.pattern, f" {item.text} ", source, where):
        example = item.text
    return example
