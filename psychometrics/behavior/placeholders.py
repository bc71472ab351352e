"""Filling the placeholders of a variant's turns, and the labels options are shown with.

Placeholders in turn text: ``{options}`` (``A. text`` lines in display order), ``{labels}``
(``A, B or C``), ``{items}`` (``1. text`` lines in display order), any variant param, and for
``sycophancy`` also ``{suggested}`` (the text of the option the user pushes for) and
``{suggested_label}`` (its label in this request's order). Literal braces are ``{{`` and ``}}``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from psychometrics import limits

MAX_OPTIONS = limits.TASK_OPTIONS  # labels A-H ("I" would read as the pronoun)


def option_label(index: int) -> str:
    return "ABCDEFGH"[index]


def join_labels(labels: Sequence[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"


def placeholder_names(text: str) -> list[str]:
    """Field names used in a turn; raises ValueError on unbalanced braces."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def fill_placeholders(text: str, values: dict[str, Any]) -> str:
    return text.format_map(values)


def option_lines(labels: Sequence[str], texts: Sequence[str]) -> str:
    return "\n".join(f"{label}. {text}" for label, text in zip(labels, texts))
