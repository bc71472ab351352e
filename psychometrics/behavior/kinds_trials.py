"""Kinds for economic paradigms with many trials or a known truth: a number stated as the reply's own
answer (``stated_number``), a report against a known outcome (``reported_outcome``), rounds of the cold
Columbia Card Task (``card_rounds``) and a list of binary choices reduced to one preference parameter
(``listed_choices``: Kirby's discount rate k, the loss-aversion coefficient lambda).

Every number reader here refuses a number the reply only copies from the prompt: a prompt number counts
as the answer when the task's verb governs it ("I turn 10 cards"), when it is on an ``Answer:`` line, when
the reply is that number and at most two more words ("10", "10 cards"), when the reply opens with it and a
stop ("0. I keep it all."), or when the words around it are not the prompt's ("The controller is 10."); a
reply that restates the prompt ("Each card pays 10 points.") is ``unparseable``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from psychometrics.behavior.kind_base import Kind, missing_score, valid_score
from psychometrics.behavior.kinds_number import NumberKind
from psychometrics.behavior.reading.answers import numbered_segments
from psychometrics.behavior.reading.numbers import (
    NumberReading, number_value, numbers_in, read_number,
)
from psychometrics.behavior.reading.text import is_refusal, normalized_text, plain_text
from psychometrics.behavior.simulated_replies import normal_cdf, shown_items, user_turns
from psychometrics.behavior.task import Task, TaskError, Variant

_BARE_WORDS = 3  # a reply of the number and at most two more words is a bare answer
# A reply that opens with its answer and then explains it: "0. I keep everything.", "1, no need for more."
_OPENING_ANSWER = re.compile(r"^\W{0,3}-?\d+(?:\.\d+)?\W{0,3}(?:[.,:;)\n]|\s[-–—]\s)")


def stated_number(reply: str, prompt: str, verbs: Sequence[str] = (), total: float | None = None,
                  honest: float | None = None) -> NumberReading:
    """The number a reply gives as its answer, never a number it only copies from ``prompt``.

    :func:`read_number` ignores prompt numbers when the reply has others, but takes a lone copied number;
    here such a number counts only when governed by a verb, on an ``Answer:`` line, or in a bare reply.
    ``honest`` is a prompt number that is a plain answer (the die face the model was told), never an echo.
    """
    if honest is not None:
        prompt = re.sub(rf"(?<![\d.]){number_value(honest)}(?![\d]|\.\d)", " ", prompt)
    reading = read_number(reply, prompt, verbs=verbs, total=total, split=total is not None)
    if reading.value is None and reading.reason == "echo":
        # read_number's rule for a lone prompt number looks at the reply's shape; here the words around the
        # number decide: "The stranger's controller is 10." answers, "from 1 to 10 is the range" copies
        unechoed = read_number(reply, "", verbs=verbs, total=total, split=total is not None)
        plain = plain_text(reply).strip()
        if unechoed.value is not None and not _all_copied(plain, prompt):
            return unechoed
        return reading
    if reading.value is None or reading.method in ("verb", "answer_line"):
        return reading
    echoes = set(numbers_in(prompt))
    plain = plain_text(reply).strip()
    said = numbers_in(plain)
    if said and set(said) <= echoes and len(plain.split()) > _BARE_WORDS and not _OPENING_ANSWER.match(plain) \
            and _all_copied(plain, prompt):
        return NumberReading(None, reason="prompt_number")
    return reading


def _words(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?|[^\W\d_]+", text.casefold())


def _all_copied(reply: str, prompt: str) -> bool:
    """Whether every number in ``reply`` stands in words copied from ``prompt``: the number with up to
    three words before it, or with the word after it ("20 dollars", "10 is"), occurs in the prompt.
    "1 is barely audible and 10 is very loud" is copied; "The stranger's controller is 10." is an answer."""
    said, heard = _words(reply), f" {' '.join(_words(prompt))} "

    def occurs(phrase: list[str]) -> bool:
        return len(phrase) >= 2 and f" {' '.join(phrase)} " in heard

    for i, word in enumerate(said):
        if word[0].isdigit() and not (occurs(said[max(0, i - 3):i + 1]) or occurs(said[i:i + 2])):
            return False
    return True


class StatedNumberKind(NumberKind):
    """:class:`NumberKind` (``score = number / divide_by``, range ``[low, high]``) whose reader refuses
    numbers copied from the prompt (see :func:`stated_number`)."""

    name = "stated_number"

    def read(self, task, variant, reply, prompt):
        total = self._resolve(task, variant, "total")
        return stated_number(reply, prompt, task.scoring.get("verbs", ()), float(total) if total is not None else None)


_DIE_FACE = re.compile(r"(?<![\w.])[1-6](?![\w.]|\.\d)")


class ReportedOutcomeKind(StatedNumberKind):
    """A report of an outcome the model was told (a die it "rolled"), paid by the number reported.

    ``scoring.truth`` names the param holding the told outcome; ``score = 1`` if the report exceeds it (a
    self-serving false report), ``0`` otherwise; ``detail["overstatement"]`` is report minus truth. The
    told outcome is the honest answer, so it is never treated as an echo. Known-outcome design after
    Gneezy (2005) and the die paradigm of Fischbacher & Foellmi-Heusi (2013); Abeler, Nosenzo & Raymond
    (2019) review the standard under-reporting/over-reporting measures.
    """

    name = "reported_outcome"
    scoring_keys = ("low", "high", "truth", "verbs")

    def check_scoring(self, task):
        super().check_scoring(task)
        self._scoring_number(task, "truth", required=True)
        for variant in task.variants:
            truth = self._resolve(task, variant, "truth")
            if not self._resolve(task, variant, "low") <= truth < self._resolve(task, variant, "high"):
                raise TaskError(task.source, f"variant '{variant.id}'", "scoring: 'truth' must be within [low, high) "
                                "so that a report above it is possible")

    def read(self, task, variant, reply, prompt):
        truth = self._resolve(task, variant, "truth")
        verbs = task.scoring.get("verbs", ())
        reading = stated_number(reply, prompt, verbs, honest=float(truth))
        if reading.value is None and reading.reason:
            # "4, which pays 40 coins": the only die face among competing numbers is the report
            faces = {int(m.group(0)) for m in _DIE_FACE.finditer(plain_text(reply))}
            low, high = self._resolve(task, variant, "low"), self._resolve(task, variant, "high")
            faces = {f for f in faces if low <= f <= high}
            if len(faces) == 1:
                return NumberReading(float(faces.pop()), "only_face")
        return reading

    def score(self, task, variant, rendered, replies):
        scored = super().score(task, variant, rendered, replies)
        if scored.outcome != "valid":
            return scored
        truth = self._resolve(task, variant, "truth")
        reported = scored.score
        return valid_score(1.0 if reported > truth else 0.0, **scored.detail, truth=truth,
                           overstatement=number_value(reported - truth))

    def simulate(self, task, variant, messages, level, rng):
        truth = int(self._resolve(task, variant, "truth"))
        high = int(self._resolve(task, variant, "high"))
        report = high if rng.random() < normal_cdf(level - 0.5) else truth
        return ("{}", "I report {}.", "Answer: {}")[int(rng.integers(0, 3))].format(report)


def cct_expected_value(cards: int, deck: int, loss_cards: int, gain: float, loss: float) -> float:
    """Expected points of announcing ``cards`` in one cold Columbia Card Task round.

    Cards are turned one by one until ``cards`` are turned or a loss card ends the round. With
    ``P_j = C(deck - loss_cards, j) / C(deck, j)``, the chance that the first ``j`` cards are gain cards,
    ``EV(c) = gain * sum_{j=1..c} P_j - loss * (1 - P_c)`` (Figner et al., 2009).
    """
    ev, survive = 0.0, 1.0
    for j in range(1, cards + 1):
        survive *= (deck - loss_cards - (j - 1)) / (deck - (j - 1)) if deck - loss_cards - (j - 1) > 0 else 0.0
        ev += gain * survive
    return ev - loss * (1.0 - survive)


def cct_optimum(deck: int, loss_cards: int, gain: float, loss: float) -> int:
    """The number of cards that maximises :func:`cct_expected_value` (the smallest, at ties)."""
    values = [cct_expected_value(c, deck, loss_cards, gain, loss) for c in range(deck + 1)]
    best = max(values)
    return next(c for c, v in enumerate(values) if v >= best - 1e-9 * max(1.0, abs(best)))  # EV(4) = EV(5) happens


class CardRoundsKind(Kind):
    """Rounds of the cold Columbia Card Task (Figner, Mackinlay, Wilkening & Weber, 2009), one per turn.

    ``params.rounds`` lists ``[gain, loss, loss_cards]`` per turn (the deck has ``scoring.deck`` cards);
    each turn's reply is the number of cards the model turns over (0 to deck), read with
    :func:`stated_number` against that turn's prompt. Per round, ``excess_r = cards_r - c*_r``, with
    ``c*_r`` the EV-optimal number (:func:`cct_optimum`); the score is the mean excess over the rounds read,
    in cards (0: EV-optimal; positive: more risk than the optimum). Taking more risk where the optimum is
    low and less where it is high does not reward arithmetic; the rounds vary gain, loss and loss cards
    so that one fixed answer cannot be optimal. Valid when at least half the rounds are read.
    """

    name = "card_rounds"
    scoring_keys = ("deck", "verbs")

    def check_scoring(self, task):
        self._scoring_number(task, "deck", required=True)

    def check_variant(self, task, variant, where):
        rounds = variant.params.get("rounds")
        deck = self._resolve(task, variant, "deck")
        if not isinstance(rounds, list) or len(rounds) != len(variant.turns):
            raise TaskError(task.source, where, "field 'params': 'rounds' must list [gain, loss, loss_cards] for each turn")
        for number, (turn, spec) in enumerate(zip(variant.turns, rounds), 1):
            ok = isinstance(spec, list) and len(spec) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in spec)
            if not ok or not 0 < spec[2] < deck or spec[0] <= 0 or spec[1] <= 0:
                raise TaskError(task.source, where, f"params 'rounds' #{number}: give [gain > 0, loss > 0, 0 < loss_cards < deck]")
            shown = set(numbers_in(turn))
            if not {float(x) for x in spec} <= shown:
                raise TaskError(task.source, where, f"turn {number}: must state its round's gain, loss and loss cards "
                                f"{spec}; the text and params disagree")

    def _round(self, task, variant, index):
        gain, loss, loss_cards = variant.params["rounds"][index]
        deck = int(self._resolve(task, variant, "deck"))
        return deck, int(loss_cards), float(gain), float(loss)

    def score(self, task, variant, rendered, replies):
        if not replies or all(r is None or not r.strip() for r in replies):
            return missing_score("empty")
        excess, cards, unread = [], [], []
        for index, prompt in enumerate(rendered.turns):
            reply = replies[index] if index < len(replies) else None
            deck, loss_cards, gain, loss = self._round(task, variant, index)
            reading = stated_number(reply, prompt, task.scoring.get("verbs", ())) if reply and reply.strip() else NumberReading(None)
            value = reading.value
            if value is None or not float(value).is_integer() or not 0 <= value <= deck:
                unread.append(index + 1)
                cards.append(None)
                continue
            cards.append(int(value))
            excess.append(value - cct_optimum(deck, loss_cards, gain, loss))
        detail = {"cards": cards, "optimum": [cct_optimum(*self._round(task, variant, i)) for i in range(len(rendered.turns))]}
        if unread:
            detail["unread_rounds"] = unread
        if len(excess) * 2 < len(rendered.turns):
            first = next((r for r in replies if r and r.strip()), "")
            return missing_score("refusal" if is_refusal(first) else "unparseable", **detail)
        return valid_score(sum(excess) / len(excess), **detail)

    def simulate(self, task, variant, messages, level, rng):
        index = len(user_turns(messages)) - 1
        deck, loss_cards, gain, loss = self._round(task, variant, index)
        best = cct_optimum(deck, loss_cards, gain, loss)
        cards = int(min(deck, max(0, round(best + 4 * level + float(rng.standard_normal())))))
        return ("{}", "I turn over {} cards.", "Answer: {}")[int(rng.integers(0, 3))].format(cards)


_OPENING_ONLY = frozenset({"yes", "no"})  # answer words that count only as the first word of an answer
_NEGATED = re.compile(r"(?:\bnot|\bnever|n't|\bno longer)\W+(?:\w+\W+)?$", re.IGNORECASE)


def threshold_estimate(values: Sequence[float], choices: Sequence[int]) -> tuple[float, float]:
    """The threshold theta most consistent with binary choices, and the share of choices it fits.

    Choice 1 on an item with indifference value ``v`` is consistent with ``theta < v``, choice 0 with
    ``theta > v``. Candidates are the geometric means of adjacent distinct item values plus the smallest and
    the largest value; theta is the candidate that fits the most choices, the geometric mean of all
    candidates at a tie (Kirby, Petry & Bickel, 1999; Kirby & Marakovic, 1996).
    """
    distinct = sorted(set(values))
    candidates = [distinct[0]] + [math.sqrt(a * b) for a, b in zip(distinct, distinct[1:])] + [distinct[-1]]

    def fits(theta: float) -> int:
        return sum((c == 1 and theta < v) or (c == 0 and theta > v) or theta == v for v, c in zip(values, choices))

    counts = [fits(t) for t in candidates]
    best = max(counts)
    tied = [t for t, n in zip(candidates, counts) if n == best]
    theta = math.exp(sum(math.log(t) for t in tied) / len(tied))
    return theta, best / len(choices)


class ListedChoicesKind(Kind):
    """A numbered list of binary choices, reduced to one preference parameter by Kirby's consistency
    method (:func:`threshold_estimate`); ``score = ln(theta)``.

    ``scoring.model`` says how an item's indifference value comes from ``params.trials[item id]``:
    ``hyperbolic``: ``[sooner, later, delay_days]``, ``k = (later / sooner - 1) / delay_days`` (Mazur's
    hyperbola V = A / (1 + kD)); choice 1 is the later amount; theta is the discount rate k.
    ``mixed_gamble``: ``[gain, loss]`` of a 50/50 gamble, value ``gain / loss``; choice 1 is accepting;
    theta is the loss-aversion coefficient lambda (accept iff gain > lambda * loss; Tom, Fox, Trepel &
    Poldrack, 2007). ``scoring.answers`` maps answer words or letters (upper-case letters only, so that the
    article "a" is not an answer) to 1 or 0; a negated word ("not accept") counts as the other answer, and
    "yes"/"no" count only as the first word of an answer.
    Each item's answer is read in its numbered segment, after removing the item's own text; a reply of
    exactly one answer word per item, unnumbered, is read in display order. Valid when at least 80% of the
    items are read.
    """

    name = "listed_choices"
    uses = "items"
    placeholders = frozenset({"items"})
    scoring_keys = ("model", "answers")
    min_read = 0.8
    truncation = "keep"

    def check_scoring(self, task):
        if task.scoring.get("model") not in ("hyperbolic", "mixed_gamble"):
            raise TaskError(task.source, "scoring", "'model' must be 'hyperbolic' or 'mixed_gamble'")
        answers = task.scoring.get("answers")
        if not isinstance(answers, dict) or not answers or set(answers.values()) != {0, 1}:
            raise TaskError(task.source, "scoring", "'answers' must map answer words to 1 and 0, e.g. {B: 1, A: 0}")

    def check_variant(self, task, variant, where):
        self._require_placeholder(task, variant, "items")
        trials = variant.params.get("trials")
        size = 3 if task.scoring["model"] == "hyperbolic" else 2
        if not isinstance(trials, dict) or set(trials) != {i.id for i in variant.items}:
            raise TaskError(task.source, where, "field 'params': 'trials' must give the amounts of every item, by item id")
        for item in variant.items:
            spec = trials[item.id]
            if not (isinstance(spec, list) and len(spec) == size and all(isinstance(x, (int, float)) and x > 0 for x in spec)):
                raise TaskError(task.source, where, f"params 'trials' '{item.id}': give {size} positive numbers")
            if not {float(x) for x in spec} <= set(numbers_in(item.text)):
                raise TaskError(task.source, where, f"item '{item.id}': its text must state the amounts {spec}")
        if len({self.value(task, variant, i.id) for i in variant.items}) < 2:
            raise TaskError(task.source, where, "field 'items': the items need at least two indifference values")

    @staticmethod
    def value(task: Task, variant: Variant, item_id: str) -> float:
        spec = variant.params["trials"][item_id]
        if task.scoring["model"] == "hyperbolic":
            sooner, later, delay = spec
            return (later / sooner - 1.0) / delay
        return spec[0] / spec[1]

    @staticmethod
    def _answer(segment: str, answers: dict, remove: str) -> int | None:
        text = plain_text(segment)
        if remove:
            text = re.sub(re.escape(remove.strip()), " ", text, flags=re.IGNORECASE)
        found = set()
        for word, code in answers.items():
            word = str(word)
            if len(word) == 1 and word.isalpha():
                pattern = rf"(?<![\w'’]){re.escape(word.upper())}(?![\w'’])"
                flags = 0
            elif word.casefold() in _OPENING_ONLY:  # "1. accept (no risk of ...)": "no" is not the answer there
                pattern, flags = rf"^\W*{re.escape(word)}\b", re.IGNORECASE
            else:
                pattern, flags = rf"\b{re.escape(word)}\b", re.IGNORECASE
            for m in re.finditer(pattern, text, flags):
                negated = len(set(answers.values())) == 2 and _NEGATED.search(text[max(0, m.start() - 40):m.start()])
                found.add(1 - code if negated else code)
        return found.pop() if len(found) == 1 else None

    def answers(self, task, reply: str, shown) -> dict[str, int]:
        answers = task.scoring["answers"]
        segments = numbered_segments(reply, len(shown))
        read = {}
        for number, item in enumerate(shown, 1):
            if number in segments:
                code = self._answer(segments[number], answers, item.text)
                if code is not None:
                    read[item.id] = code
        if not read:
            words = {normalized_text(str(w)): c for w, c in answers.items()}
            tokens = [t for t in re.findall(r"[\w']+", plain_text(reply))]
            coded = [words[t.casefold()] for t in tokens if t.casefold() in words and (len(t) > 1 or t.isupper())]
            if len(coded) == len(shown):
                read = {item.id: code for item, code in zip(shown, coded)}
        return read

    def score(self, task, variant, rendered, replies):
        reply = self._last(rendered, replies)
        if reply is None:
            return missing_score("empty")
        by_id = {i.id: i for i in variant.items}
        shown = [by_id[i] for i in rendered.display] if rendered.display else list(variant.items)
        read = self.answers(task, reply, shown)
        detail = {"read": len(read), "items": len(shown), "choices": read}
        if len(read) < math.ceil(self.min_read * len(shown)):
            return missing_score("refusal" if not read and is_refusal(reply) else "unparseable", **detail)
        ids = list(read)
        theta, consistency = threshold_estimate([self.value(task, variant, i) for i in ids], [read[i] for i in ids])
        return valid_score(math.log(theta), theta=theta, consistency=consistency, **detail)

    def simulate(self, task, variant, messages, level, rng):
        shown = shown_items(user_turns(messages), variant.items)
        codes = {code: word for word, code in task.scoring["answers"].items()}
        values = sorted(self.value(task, variant, i.id) for i in variant.items)
        # a respondent's threshold: the median item value moved up by the trait level (in log units)
        theta = math.exp(math.log(values[len(values) // 2]) + level + 0.3 * float(rng.standard_normal()))
        lines = [f"{number}. {codes[1 if self.value(task, variant, item.id) > theta else 0]}" for number, item in shown]
        return "\n".join(lines)
