"""The base of every scoring rule (:class:`Kind`) and what it produces: the :class:`Rendered` turns of a
variant and the :class:`Scored` result of a conversation.

Outcomes (:data:`OUTCOMES`): ``valid``, ``unparseable`` (``detail["reason"] == "ambiguous"`` when numbers
compete), ``out_of_range`` (a readable answer outside the scale, or, for ``sycophancy``, a first answer
that was wrong or already the user's option, where a switch is no yielding), ``refusal``, ``empty`` and
``truncated`` (cut off at the task's ``max_tokens`` where the kind cannot judge part of a reply; see
:attr:`Kind.truncation`). Single-reply kinds read the reply to the last turn.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from psychometrics import limits
from psychometrics.behavior.placeholders import (
    fill_placeholders, join_labels, option_label, option_lines, placeholder_names,
)
from psychometrics.behavior.reading.text import is_short_refusal
from psychometrics.behavior.task import Task, TaskError, Variant

OUTCOMES = ("valid", "unparseable", "out_of_range", "refusal", "empty", "truncated")


@dataclass(frozen=True)
class Rendered:
    """The user turns with placeholders filled, and the option or item ids in display order."""

    turns: tuple[str, ...]
    display: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scored:
    """What a conversation scored: ``score`` is None unless ``outcome == "valid"``."""

    outcome: str
    score: float | None
    detail: dict = field(default_factory=dict)


def valid_score(score: float, **detail: Any) -> Scored:
    return Scored("valid", float(score), detail)


def missing_score(outcome: str, **detail: Any) -> Scored:
    return Scored(outcome, None, detail)


class Kind:
    """Base scoring rule. Subclasses set the class attributes and implement ``score`` and ``simulate``."""

    name: ClassVar[str] = ""
    uses: ClassVar[str | None] = None  # "options", "items" or "checks"
    placeholders: ClassVar[frozenset[str]] = frozenset()
    scoring_keys: ClassVar[tuple[str, ...]] = ()
    n_turns: ClassVar[int | None] = None  # exact number of turns, if fixed
    #: What a reply cut off at the task's ``max_tokens`` means for the score: ``keep`` (scored as it is,
    #: and flagged), ``drop_last_line`` (its unfinished last line is not counted) or ``missing`` (outcome
    #: ``truncated``: a rule about the whole reply cannot be judged on part of it).
    truncation: ClassVar[str] = "keep"
    #: Scores on a scale each model sets for itself (reply length): a ratio measure, which the validity
    #: analysis scores relative to each variant and to the model's mean respondent (1 is that model's usual,
    #: so models of different verbosity pool; :mod:`psychometrics.validity.behavior_scores`).
    relative_to_model: ClassVar[bool] = False

    # -- validate

    def validate(self, task: Task) -> None:
        """Raise :class:`TaskError` naming the file, the variant or ``scoring``, and the problem."""
        unknown = sorted(set(task.scoring) - set(self.scoring_keys))
        if unknown:
            allowed = ", ".join(self.scoring_keys) or "no parameters"
            raise TaskError(task.source, "scoring", f"unknown parameter '{unknown[0]}'; kind '{self.name}' takes {allowed}")
        self.check_scoring(task)
        for variant in task.variants:
            self._check_variant(task, variant)

    def check_scoring(self, task: Task) -> None:
        """Kind-specific checks of ``task.scoring``."""

    def check_variant(self, task: Task, variant: Variant, where: str) -> None:
        """Kind-specific checks of one variant."""

    def _check_variant(self, task: Task, variant: Variant) -> None:
        where = f"variant '{variant.id}'"
        fail = lambda problem: TaskError(task.source, where, problem)
        for name in ("options", "items", "checks"):
            if getattr(variant, name) is not None and name != self.uses:
                raise fail(f"field '{name}': kind '{self.name}' does not use {name}; remove them")
        if self.uses and not getattr(variant, self.uses):
            raise fail(f"field '{self.uses}': kind '{self.name}' needs {self.uses}; add them")
        if self.n_turns is not None and len(variant.turns) != self.n_turns:
            raise fail(f"field 'turns': kind '{self.name}' needs exactly {self.n_turns} turns, found {len(variant.turns)}")
        clash = sorted(set(variant.params) & (self.placeholders | {"options", "labels", "items"}))
        if clash:
            raise fail(f"field 'params': '{clash[0]}' is a placeholder the kind fills; rename the param")
        entries = getattr(variant, self.uses) if self.uses in ("options", "items") else None
        if self.uses == "options" and not 2 <= len(entries) <= limits.TASK_OPTIONS:  # before labels are drawn
            raise fail(f"field 'options': {len(entries)} options; give 2 to {limits.TASK_OPTIONS}")
        if entries:
            ids = [e.id for e in entries]
            duplicate = next((i for i in ids if ids.count(i) > 1), None)
            if duplicate:
                raise fail(f"field '{self.uses}': duplicate id '{duplicate}'; ids must be unique within a variant")
        allowed = self.placeholders | set(variant.params)
        for number, turn in enumerate(variant.turns, 1):
            try:
                names = placeholder_names(turn)
            except ValueError:
                raise fail(f"turn {number}: unbalanced braces; write literal braces as {{{{ and }}}}") from None
            for name in names:
                base = re.split(r"[.\[]", name)[0]
                if not base or base != name:
                    raise fail(f"turn {number}: placeholder '{{{name}}}' is not allowed; use a plain name such as "
                               f"{{options}} or a variant param")
                if base not in allowed:
                    choices = ", ".join("{" + p + "}" for p in sorted(allowed)) or "none"
                    raise fail(f"turn {number}: unknown placeholder '{{{name}}}'; kind '{self.name}' fills {choices} "
                               f"(add a param, or write literal braces as {{{{ }}}})")
        for number, turn in enumerate(variant.turns, 1):
            for _, name, spec, _ in string.Formatter().parse(turn):  # "{x:>999999999}" would allocate a gigabyte
                if spec and ("{" in spec or any(int(d) > limits.FORMAT_WIDTH for d in re.findall(r"\d+", spec))):
                    raise fail(f"turn {number}: placeholder '{{{name}:{spec}}}' has a nested field or a width or "
                               f"precision over {limits.FORMAT_WIDTH}; use a plain {{{name}}}")
        try:
            self._values(variant, list(range(len(entries or []))))
            for number, turn in enumerate(variant.turns, 1):
                filled = fill_placeholders(turn, self._values(variant, list(range(len(entries or [])))))
                if len(filled) > limits.LONG_TEXT:
                    raise fail(f"turn {number}: {len(filled):,} characters once its placeholders are filled, more "
                               f"than the {limits.LONG_TEXT:,} allowed; shorten it or its params")
        except TaskError:  # a ValueError too, but already the one line to show
            raise
        except (KeyError, ValueError, IndexError, TypeError, AttributeError) as exc:
            raise fail(f"field 'turns': cannot fill the placeholders ({exc}); check the format specs") from None
        self.check_variant(task, variant, where)

    def _require_placeholder(self, task: Task, variant: Variant, name: str, turns: Sequence[int] | None = None) -> None:
        indices = turns if turns is not None else range(len(variant.turns))
        if not any(name in placeholder_names(variant.turns[i]) for i in indices):
            which = "turn 1" if turns == [0] else "a turn"
            raise TaskError(task.source, f"variant '{variant.id}'",
                            f"field 'turns': {which} must show the {name} with the {{{name}}} placeholder")

    def _scoring_number(self, task: Task, key: str, *, required: bool, nonzero: bool = False) -> None:
        """A scoring value is a number or names a numeric param present in every variant."""
        if key not in task.scoring:
            if required:
                raise TaskError(task.source, "scoring", f"missing '{key}'; kind '{self.name}' needs it (a number or a param name)")
            return
        value = task.scoring[key]
        if isinstance(value, str):
            for variant in task.variants:
                param = variant.params.get(value)
                if param is None:
                    raise TaskError(task.source, f"variant '{variant.id}'",
                                    f"field 'params': missing '{value}', which scoring '{key}' refers to; add it")
                if isinstance(param, bool) or not isinstance(param, (int, float)) or not math.isfinite(param):
                    raise TaskError(task.source, f"variant '{variant.id}'",
                                    f"field 'params': '{value}' (used by scoring '{key}') must be a number")
                if nonzero and param == 0:
                    raise TaskError(task.source, f"variant '{variant.id}'", f"field 'params': '{value}' is 0; scoring '{key}' divides by it")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TaskError(task.source, "scoring", f"'{key}' must be a number or the name of a variant param")
        elif nonzero and value == 0:
            raise TaskError(task.source, "scoring", f"'{key}' is 0; give a non-zero number")

    @staticmethod
    def _resolve(task: Task, variant: Variant, key: str, default: Any = None) -> Any:
        value = task.scoring.get(key, default)
        return variant.params[value] if isinstance(value, str) and value in variant.params else value

    # -- render

    def _entries(self, variant: Variant) -> list:
        return list(getattr(variant, self.uses) or []) if self.uses in ("options", "items") else []

    def _values(self, variant: Variant, order: Sequence[int]) -> dict[str, Any]:
        values: dict[str, Any] = dict(variant.params)
        entries = self._entries(variant)
        shown = [entries[i] for i in order]
        if self.uses == "options":
            labels = [option_label(i) for i in range(len(shown))]
            values["options"] = option_lines(labels, [o.text for o in shown])
            values["labels"] = join_labels(labels) if labels else ""
            suggested = next((i for i, o in enumerate(shown) if o.suggested), None)
            if suggested is not None:
                values["suggested"], values["suggested_label"] = shown[suggested].text, labels[suggested]
        elif self.uses == "items":
            values["items"] = option_lines([str(k + 1) for k in range(len(shown))], [i.text for i in shown])
        return values

    def _shows_entries(self, variant: Variant) -> bool:
        return any(self.uses in placeholder_names(turn) for turn in variant.turns) if self.uses else False

    def render(self, task: Task, variant: Variant, rng) -> Rendered:
        """Fill the placeholders; options and items appear in an order drawn from ``rng``."""
        entries = self._entries(variant)
        shuffle = bool(entries) and self._shows_entries(variant)
        order = [int(i) for i in rng.permutation(len(entries))] if shuffle else list(range(len(entries)))
        values = self._values(variant, order)
        turns = tuple(fill_placeholders(turn, values).strip() for turn in variant.turns)
        display = tuple(entries[i].id for i in order) if shuffle else ()
        return Rendered(turns, display)

    # -- score / simulate

    def score(self, task: Task, variant: Variant, rendered: Rendered, replies: Sequence[str | None]) -> Scored:
        raise NotImplementedError

    def simulate(self, task: Task, variant: Variant, messages: Sequence[Sequence[str]], level: float, rng) -> str:
        raise NotImplementedError

    @staticmethod
    def _last(rendered: Rendered, replies: Sequence[str | None]) -> str | None:
        """The reply to the last turn, or None when the conversation did not get that far."""
        if len(replies) < len(rendered.turns) or not replies:
            return None
        reply = replies[len(rendered.turns) - 1]
        return reply if reply is not None and reply.strip() else None

    @classmethod
    def _free_text(cls, rendered: Rendered, replies: Sequence[str | None]) -> tuple[str | None, Scored | None]:
        """(the last reply, None), or (None, the missing score it gets): ``empty``, or ``refusal`` for a
        short reply that declines (a long one that only disclaims is kept and scored)."""
        reply = cls._last(rendered, replies)
        if reply is None:
            return None, missing_score("empty")
        if is_short_refusal(reply):
            return None, missing_score("refusal")
        return reply, None
