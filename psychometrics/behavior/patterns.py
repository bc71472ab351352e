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


def _run(pattern: str, text: str, how: str, source: str, where: str):
    try:
        compiled = _compiled(pattern)
        if how == "search":
            return compiled.search(text, timeout=limits.PATTERN_SECONDS)
        return list(compiled.finditer(text, timeout=limits.PATTERN_SECONDS))
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
