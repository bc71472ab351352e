"""The ``constraints`` kind: the share of a variant's formatting checks a reply meets, and simulated
replies that meet or miss each check as planned."""

from __future__ import annotations

import re
from typing import Any

from psychometrics.behavior.kind_base import Kind, valid_score
from psychometrics.behavior.reading.checks import (
    CHECK_TYPES,
    FLAG_CHECKS,
    INT_CHECKS,
    REPEATABLE_CHECKS,
    TEXT_CHECKS,
    check_passes,
    word_used,
)
from psychometrics.behavior.reading.text import words_of
from psychometrics.behavior.simulated_replies import NEUTRAL_WORDS, normal_cdf
from psychometrics.behavior.task import TaskError, Variant


MIN_ATTEMPT_WORDS = 3  # "Okay." or "Done!" is no text; every shipped variant asks for a sentence or more
_LEAD_IN = re.compile(r"^[^\n]*:\s*$")  # "Sure! Here is a note for your neighbour:"


def attempted(own: str) -> bool:
    """Whether a reply holds an attempt at the text asked for: at least :data:`MIN_ATTEMPT_WORDS` words
    once lead-in lines ending in a colon are set aside."""
    body = [line for line in own.splitlines() if line.strip() and not _LEAD_IN.match(line.strip())]
    return len(words_of("\n".join(body))) >= MIN_ATTEMPT_WORDS


class ConstraintsKind(Kind):
    """Share of the variant's ``checks`` the reply satisfies; each check is verified by code.

    The measure is compliance, so a reply that does not attempt the writing asked for complies with
    nothing: a refusal (``refusals = "fail"``), a reply that only repeats the prompt, and one with no
    text of its own beyond a lead-in ("Sure! Here is the note:") or under :data:`MIN_ATTEMPT_WORDS`
    words ("Okay.") score 0, though they would pass "do not use X" or "no commas" by omission. A reply cut off at ``max_tokens`` (every
    shipped variant caps its length well below it) is judged as written: it did not stop as asked."""

    name = "constraints"
    uses = "checks"
    refusals = "fail"

    @staticmethod
    def parsed(variant: Variant) -> list[tuple[str, Any]]:
        return [next(iter(check.items())) for check in variant.checks or []]

    def check_variant(self, task, variant, where):
        fail = lambda problem: TaskError(task.source, where, problem)
        seen: dict[str, Any] = {}
        for number, check in enumerate(variant.checks, 1):
            if not isinstance(check, dict) or len(check) != 1:
                raise fail(f"field 'checks': check {number} must be one 'type: value' pair, e.g. {{max_words: 60}}")
            kind, value = next(iter(check.items()))
            if kind not in CHECK_TYPES:
                raise fail(f"field 'checks': unknown check '{kind}'; use one of {', '.join(CHECK_TYPES)}")
            if kind in INT_CHECKS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise fail(f"field 'checks': '{kind}' needs a whole number of at least 1, not {value!r}")
            if kind in TEXT_CHECKS and (not isinstance(value, str) or not value.strip()):
                raise fail(f"field 'checks': '{kind}' needs non-empty text, not {value!r}")
            if kind in FLAG_CHECKS and value is not True:
                raise fail(f"field 'checks': write '{kind}: true' (or remove the check), not {value!r}")
            if kind in seen and kind not in REPEATABLE_CHECKS:
                raise fail(f"field 'checks': '{kind}' appears twice; keep one")
            if kind in REPEATABLE_CHECKS and any(k == kind and str(v).casefold() == str(value).casefold()
                                                 for k, v in self.parsed(variant)[:number - 1]):
                raise fail(f"field 'checks': '{kind}: {value}' appears twice (it would count twice); keep one")
            if kind == "min_words" and value < 2:
                raise fail("field 'checks': 'min_words' must be at least 2 (any reply has one word)")
            seen.setdefault(kind, value)
        checks = self.parsed(variant)
        texts = {k: v for k, v in checks if k in ("starts_with", "ends_with")}
        includes = {v.casefold() for k, v in checks if k == "include"}
        problems = [
            ("min_words" in seen and "max_words" in seen and seen["min_words"] > seen["max_words"],
             "'min_words' is above 'max_words'"),
            (bool(includes & {v.casefold() for k, v in checks if k == "exclude"}), "a word is both included and excluded"),
            ("lowercase" in seen and any(ch.isupper() for k, v in checks if k in ("starts_with", "ends_with", "include")
                                         for ch in v), "'lowercase' conflicts with capital letters in another check"),
            ("lowercase" in seen and "all_caps_word" in seen, "'lowercase' conflicts with 'all_caps_word'"),
            ("no_commas" in seen and any("," in v for k, v in checks if k in TEXT_CHECKS), "'no_commas' conflicts with a comma in another check"),
            ("bullets" in seen and "sentences_max" in seen and seen["sentences_max"] < seen["bullets"],
             "'sentences_max' is below 'bullets' (each bullet line counts as a sentence)"),
            (any(word_used(v, t) for k, v in checks if k == "exclude" for t in texts.values()),
             "an excluded word is part of 'starts_with' or 'ends_with'"),
        ]
        for bad, problem in problems:
            if bad:
                raise fail(f"field 'checks': {problem}; the checks cannot all be met")

    def score(self, task, variant, rendered, replies):
        own, missing, refused = self._free_text(rendered, replies)
        if missing is not None and missing.outcome == "empty":
            return missing
        if missing is not None or refused or not attempted(own):
            why = "refusal" if refused else missing.detail.get("reason", missing.outcome) if missing else "no_text"
            return valid_score(0.0, passed=[], failed=[k for k, _ in self.parsed(variant)], not_attempted=why)
        reply = self._last(rendered, replies)
        passed, failed = [], []
        for kind, value in self.parsed(variant):
            (passed if check_passes(kind, value, reply) else failed).append(kind)
        return valid_score(len(passed) / (len(passed) + len(failed)), passed=passed, failed=failed)

    def simulate(self, task, variant, messages, level, rng):
        checks = self.parsed(variant)
        plan = [bool(rng.random() < normal_cdf(level + 0.5)) for _ in checks]
        best: tuple[int, str] | None = None
        for _ in range(16):
            text = self._compose(checks, plan, rng)
            agree = sum(check_passes(k, v, text) == want for (k, v), want in zip(checks, plan))
            if best is None or agree > best[0]:
                best = (agree, text)
            if agree == len(checks):
                break
        return best[1]

    @staticmethod
    def _compose(checks: list[tuple[str, Any]], plan: list[bool], rng) -> str:
        """A reply meant to pass the checks marked True in ``plan`` and fail the others."""
        want = {}
        for (kind, value), ok in zip(checks, plan):
            want.setdefault(kind, []).append((value, ok))
        one = lambda kind: want[kind][0] if kind in want else None
        inserts: list[str] = []
        for value, ok in want.get("include", []):
            if ok:
                inserts.append(value)
        for value, ok in want.get("exclude", []):
            if not ok:
                inserts.append(value)
        for value, ok in want.get("all_caps_word", []):
            inserts.append(value.upper() if ok else value.lower())
        start, end = one("starts_with"), one("ends_with")
        forced = sum(len(words_of(t)) for t in inserts)
        forced += len(words_of(start[0])) if start and start[1] else 0
        forced += len(words_of(end[0])) if end and end[1] else 0
        low, high = 1, 10**6
        if one("max_words"):
            value, ok = one("max_words")
            high, low = (min(high, value), low) if ok else (high, max(low, value + 1))
        if one("min_words"):
            value, ok = one("min_words")
            low, high = (max(low, value), high) if ok else (low, min(high, value - 1))
        if high == 10**6:
            high = max(low, forced) + 40
        low = min(max(low, forced + int(rng.integers(1, 12))), high)
        n_words = int(rng.integers(low, max(low, high) + 1))
        s_low, s_high = 1, 6
        if one("sentences_max"):
            value, ok = one("sentences_max")
            s_low, s_high = (1, value) if ok else (value + 1, value + 3)
        n_bullets = 0
        if one("bullets"):
            value, ok = one("bullets")
            n_bullets = value if ok else (value + 1 if rng.random() < 0.5 and value + 1 <= s_high else 0)
        n_sentences = max(int(rng.integers(s_low, max(s_low, s_high) + 1)), n_bullets)
        n_prose = n_sentences - n_bullets
        if start and start[1] and n_prose == 0:
            n_prose, n_sentences = 1, n_sentences + 1
        filler = max(n_sentences, n_words - forced)
        sizes = [filler // n_sentences + (1 if i < filler % n_sentences else 0) for i in range(n_sentences)]
        units = [[NEUTRAL_WORDS[int(i)] for i in rng.integers(0, len(NEUTRAL_WORDS), size=max(1, s))] for s in sizes]
        for word in inserts:
            target = units[int(rng.integers(0, len(units)))]
            target.insert(int(rng.integers(0, len(target) + 1)), word)
        lowercase = one("lowercase")
        no_commas = one("no_commas")
        if no_commas and not no_commas[1]:
            target = units[int(rng.integers(0, len(units)))]
            target[0] = target[0] + ","
        prose = [" ".join(u) for u in units[:n_prose]]
        prose = [p[0].upper() + p[1:] + "." for p in prose]
        bullets = ["- " + " ".join(u) for u in units[n_prose:]]
        if start:
            text_start = start[0] if start[1] else "Well"
            if prose:
                prose[0] = text_start + " " + prose[0][0].lower() + prose[0][1:]
            else:
                bullets.insert(0, text_start)
        parts = [" ".join(prose)] if prose else []
        text = "\n".join(parts + bullets)
        if end and end[1]:
            text = text.rstrip(".") + ("" if re.match(r"[^\w]", end[0]) else " ") + end[0]
        if lowercase:
            text = text.lower() if lowercase[1] else (text if any(c.isupper() for c in text) else "OK " + text)
            for value, ok in want.get("all_caps_word", []):
                if ok and not lowercase[1]:
                    text = text.replace(value.lower(), value.upper())
        return text
