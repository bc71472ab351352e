"""Regular expressions from task files: checked when the task is loaded, and run with a time limit.

A pattern such as ``(a+)+$`` takes exponential time on a reply like ``aaaa...!`` in a backtracking
matcher, so a task file could hang ``tasks validate``, ``behave`` or an analysis. Two guards, so that a
pattern from a file can never hang psytest:

* :func:`pattern_problem`, when the task is loaded: a pattern may not use backreferences, nor repeat
  (``*``, ``+``, ``{2,}``...) a part that itself repeats with a variable length or holds alternatives
  (``(a+)+``, ``(\\w+\\s?)*``, ``(a|aa)+``), the shapes behind catastrophic backtracking; and at most
  :data:`~psychometrics.limits.PATTERN_CHARS` characters.
* :func:`search` and :func:`finditer` run patterns with the ``regex`` package's matcher under a time
  limit (:data:`~psychometrics.limits.PATTERN_SECONDS` per reply): the rare pattern that passes the
  check and is still slow on some reply stops the command with one line naming the task file, the
  variant and the item, instead of running for ever. Matching follows Python's ``re`` syntax and
  semantics (``regex`` in its version-0 mode), case-insensitively as the kinds ask.

A match that cuts a number out of a longer one is no match: "14" in "14.04" or "250" in "1,250" is
another number (:func:`cuts_a_number`), whatever lookarounds the pattern's author remembered; "50" in
"50.0" is the same number and stays.
"""

from __future__ import annotations

import re
from functools import lru_cache

from psychometrics import limits
from psychometrics.behavior.task import TaskError



def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is refused (see the module docstring), or None when it may be used."""
    if len(pattern) > limits.PATTERN_CHARS:
        return f"is longer than {limits.PATTERN_CHARS:,} characters"
    try:
        import re._parser as sre  # Python >= 3.11
    except ImportError:  # pragma: no cover
        import sre_parse as sre  # type: ignore[no-redef]
    try:
        parsed = sre.parse(pattern)
    except re.error as exc:
        return f"does not compile ({exc})"
    return _tree_problem(parsed, repeated=False)


def _tree_problem(parsed, repeated: bool) -> str | None:
    """Walk the parsed pattern; ``repeated``: inside a part repeated more than once."""
    for op, av in parsed:
        name = str(op)
        if name in ("GROUPREF", "GROUPREF_EXISTS"):
            return "uses a backreference (\\1, (?P=name), (?(1)...)); write the text it should match instead"
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = av
            if repeated and low != high:
                return ("repeats a part that itself repeats (such as (a+)+ or (\\w+\\s?)*), which can take for ever "
                        "on a long reply; repeat a fixed-length part, or drop the outer repeat")
            problem = _tree_problem(body, repeated or high > 1)
            if problem:
                return problem
            if high > 1 and _has_branch(body):
                return ("repeats a group of alternatives (such as (a|aa)+), which can take for ever on a long reply; "
                        "use a character class or repeat each alternative separately")
        elif name == "BRANCH":
            for branch in av[1]:
                problem = _tree_problem(branch, repeated)
                if problem:
                    return problem
        elif name == "SUBPATTERN":
            problem = _tree_problem(av[-1], repeated)
            if problem:
                return problem
        elif name in ("ASSERT", "ASSERT_NOT", "ATOMIC_GROUP"):
            problem = _tree_problem(av[-1] if name != "ATOMIC_GROUP" else av, repeated)
            if problem:
                return problem
    return None


def _has_branch(parsed) -> bool:
    for op, av in parsed:
        name = str(op)
        if name == "BRANCH":
            return True
        if name == "SUBPATTERN" and _has_branch(av[-1]):
            return True
    return False


@lru_cache(maxsize=512)
def _compiled(pattern: str):
    import regex

    return regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)


_NUMBER_AROUND = re.compile(r"\d+(?:[.,]\d+)*")


def _number_value(text: str) -> float | None:
    """A number as written: a comma before exactly three digits groups thousands, else it is a decimal
    comma; None when it does not read as one number ("1.2.3")."""
    text = re.sub(r",(?=\d{3}(?!\d))", "", text).replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return None


def cuts_a_number(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` begins or ends inside a longer number whose value differs from the
    number the match holds at that edge ("14" of "14.04", "250" of "1,250"; not "50" of "50.0")."""
    for edge in (start, end - 1):
        if not 0 <= edge < len(text) or not text[edge].isdigit():
            continue
        for whole in _NUMBER_AROUND.finditer(text, max(0, edge - 40), min(len(text), edge + 40)):
            if whole.start() <= edge < whole.end():
                if whole.start() >= start and whole.end() <= end:
                    break  # the whole number is inside the match
                inner = _NUMBER_AROUND.search(text, max(whole.start(), start), min(whole.end(), end))
                held, written = (_number_value(inner.group(0)) if inner else None), _number_value(whole.group(0))
                if held is None or written is None or held != written:
                    return True
                break
    return False


def _run(pattern: str, text: str, how: str, source: str, where: str):
    try:
        compiled = _compiled(pattern)
        found = [m for m in compiled.finditer(text, timeout=limits.PATTERN_SECONDS)
                 if not cuts_a_number(text, m.start(), m.end())]
        if how == "search":
            return found[0] if found else None
        return found
    except TimeoutError:
        raise TaskError(source, where, f"pattern {pattern[:60]!r} took more than {limits.PATTERN_SECONDS:g} s on "
                        f"{len(text):,} characters of text; simplify it (no nested or overlapping repeats)") from None


def search(pattern: str, text: str, source: str, where: str):
    """The first case-insensitive match of ``pattern`` in ``text``, or None; a pattern that takes longer
    than the time limit raises :class:`TaskError` naming ``source`` (the task file) and ``where``."""
    return _run(pattern, text, "search", source, where)


def finditer(pattern: str, text: str, source: str, where: str) -> list:
    """Every case-insensitive match of ``pattern`` in ``text`` (see :func:`search`)."""
    return _run(pattern, text, "finditer", source, where)
