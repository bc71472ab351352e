"""The ``number`` kind: the number a reply gives, divided by a scale and checked against its range."""

from __future__ import annotations

from typing import ClassVar

from psychometrics.behavior.kind_base import Kind, missing_score, valid_score
from psychometrics.behavior.reading.numbers import (
    ambiguity_detail, number_value, NumberReading, numbers_in, read_number,
)
from psychometrics.behavior.reading.text import is_refusal, plain_text, repeats_turn
from psychometrics.behavior.simulated_replies import normal_cdf
from psychometrics.behavior.task import Task, TaskError, Variant


class NumberKind(Kind):
    """A number in the reply; ``score = number / divide_by``; outside ``[low, high]`` is out of range.

    Optional scoring: ``verbs``, the task's action verbs ("pass", "roll"), whose number is the answer when
    a reply has several; ``total`` (a number or param), the amount the reply splits between the
    respondent and someone else, so that "keep 70" reads as ``total - 70`` and "50%" or "half" as a share
    of it. A reply whose numbers compete (ranges, alternatives, two amounts) is ``unparseable`` with the
    reason in ``detail``; so is a reply that only repeats the prompt or an earlier reply (``repeats_turn``:
    in a multi-turn task, the previous answer copied is not a new one).
    """

    name = "number"
    scoring_keys: ClassVar[tuple[str, ...]] = ("low", "high", "divide_by", "verbs", "total")

    def check_scoring(self, task: Task) -> None:
        self._scoring_number(task, "low", required=True)
        self._scoring_number(task, "high", required=True)
        self._scoring_number(task, "divide_by", required=False, nonzero=True)
        self._scoring_number(task, "total", required=False, nonzero=True)
        verbs = task.scoring.get("verbs", [])
        if not isinstance(verbs, list) or not all(isinstance(v, str) and v.strip() for v in verbs):
            raise TaskError(task.source, "scoring", "'verbs' must be a list of words, e.g. [pass, give]")
        for variant in task.variants:
            low, high = self._resolve(task, variant, "low"), self._resolve(task, variant, "high")
            if not low < high:
                raise TaskError(task.source, f"variant '{variant.id}'", f"scoring: low ({low}) must be below high ({high})")

    def read(self, task: Task, variant: Variant, reply: str, prompt: str) -> NumberReading:
        total = self._resolve(task, variant, "total")
        return read_number(reply, prompt, verbs=task.scoring.get("verbs", ()),
                            total=float(total) if total is not None else None, split=total is not None)

    def score(self, task, variant, rendered, replies):
        reply = self._last(rendered, replies)
        if reply is None:
            return missing_score("empty")
        prompt = rendered.turns[-1]
        if repeats_turn(reply, [*rendered.turns, *(r for r in replies[:len(rendered.turns) - 1] if r)]):
            return missing_score("unparseable", reason="repeats_turn")
        reading = self.read(task, variant, reply, prompt)
        value, method = reading.value, reading.method
        if value is None:
            if is_refusal(reply):
                return missing_score("refusal")
            return missing_score("unparseable", **ambiguity_detail(reading))
        if is_refusal(reply) and method != "answer_line" and set(numbers_in(plain_text(reply))) <= set(numbers_in(prompt)):
            return missing_score("refusal", numbers=[number_value(n) for n in numbers_in(plain_text(reply))])
        low, high = self._resolve(task, variant, "low"), self._resolve(task, variant, "high")
        detail = {"number": number_value(value), "method": method}
        if not low <= value <= high:
            return missing_score("out_of_range", **detail)
        divisor = self._resolve(task, variant, "divide_by", 1) or 1
        return valid_score(value / divisor, **detail)

    def simulate(self, task, variant, messages, level, rng):
        low, high = float(self._resolve(task, variant, "low")), float(self._resolve(task, variant, "high"))
        value = low + (high - low) * normal_cdf(level + 0.3 * float(rng.standard_normal()))
        text = str(round(value)) if low.is_integer() and high.is_integer() else f"{value:.2f}"
        form = ("{}", "Answer: {}", "I would go with {}.", "{}")[int(rng.integers(0, 4))]
        return form.format(text)
