"""Reading the number a reply gives.

A reply is read as a list of number *mentions* (digits, number words, percentages, fractions, ranges,
"all"/"nothing"), each with a *role* taken from the words around it: governed by the task's action verb
("pass 30"), the kept amount ("keep 70", "70 for me"), an alternative ("or maybe 40"), a bound ("up to
30"), negated ("I won't pass 100") or a rule restated ("you can move up to 40"). One value is chosen only when the mentions agree; competing
numbers, ranges and amounts that need a total the task does not declare are missing (``ambiguous``),
never a guessed value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace

from psychometrics.behavior.reading.text import plain_text

_NUMBER = re.compile(r"(?<![\w.,])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_ANSWER_CUE = re.compile(r"(?i)\banswer\s*(?:is\b|[:\-–])([^\n]*)")
_UNIT_WORDS = {w: i for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"))}
_TENS_WORDS = {w: 10 * i for i, w in enumerate(
    ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"), 2)}
_SCALE_WORDS = {"hundred": 100, "thousand": 1000}
_FRACTION_WORDS = {"half": 1 / 2, "halves": 1 / 2, "third": 1 / 3, "thirds": 1 / 3, "quarter": 1 / 4, "quarters": 1 / 4}
_ZERO_WORDS = frozenset(("none", "nothing", "nil"))
# "one" is mostly a pronoun ("the red one"): it counts as a number only after these words, before "of"/"out",
# or as the whole reply.
_ONE_CUES = frozenset(("a", "an", "is", "it's", "was", "just", "only", "exactly", "rolled", "roll", "got", "get",
                       "report", "answer", "number", "say", "said", "pick", "choose", "type", "enter", "write", "give",
                       "pass", "send", "return"))
_RANGE_JOINS = frozenset(("-", "–", "—", "to", "or"))
_TOKEN = re.compile(r"\d+(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[^\W\d_]+(?:['’][^\W\d_]+)*|[^\w\s]")
_KEPT_BEFORE = re.compile(
    r"\b(?:keep|keeps|keeping|kept|retain|retaining|hold(?:ing)? (?:on to|onto|back)|save|saving"
    r"|i(?:'d| would|'ll| will) (?:get|receive|have(?! to\b)|end up with|be left with|take home)"
    r"|i (?:get|end up with|am left with|take home)"
    r"|(?:leaves?|leaving|left) (?:me|myself)(?: with)?|(?:that|which|this) leaves|leaving|left with|for myself)"
    r"\b\W*(?:[^\W\d]+\W+){0,2}?$")
_KEPT_AFTER = re.compile(
    r"^\W*(?:[^\W\d]+\W+){0,2}?(?:for|to|with) (?:me|myself)\b|^\W*(?:[^\W\d]+\W+)?(?:left over|left|remaining)\b")
_RECIPIENT_BEFORE = re.compile(
    r"\b(?:they|he|she|them|other(?: \w+)?)\s+(?:would |will )?(?:get|gets|receive|receives)\s*$")
_RECIPIENT_AFTER = re.compile(r"^\W*(?:[^\W\d]+\W+){0,2}?(?:to|for) (?:them|him|her|the|that|this|my|each|their)\b")
_ALTERNATIVE_BEFORE = re.compile(r"\b(?:or|maybe|perhaps|possibly)\W+(?:[^\W\d]+\W+)?$")
_BOUND_BEFORE = re.compile(r"\b(?:more than|less than|fewer than|at least|at most|up to|no more than)\s*$")
_OPERAND_BEFORE = re.compile(r"(?:\bplus|\bminus|\btimes|[+×])\s*(?:[^\W\d]+\W+){0,2}?$")
_NEGATION_BEFORE = re.compile(r"(?:\bnot|\bnever|\bcannot|n['’]t)\W+(?:[^\W\d]+\W+){0,2}$")


@dataclass(frozen=True)
class _Token:
    text: str  # casefolded
    start: int
    end: int


@dataclass(frozen=True)
class _Mention:
    """A number in the text: ``value`` is the number, or the share of the total for ``percent``, ``fraction``,
    ``all`` and ``split``; ``form`` says which."""

    value: float
    start: int
    end: int
    form: str = "number"  # number, none, percent, fraction, all, split, range, ratio
    role: str = ""  # "", action, kept, alternative, bound, operand, negated
    high: float | None = None  # the upper end of a range


@dataclass(frozen=True)
class NumberReading:
    value: float | None
    method: str | None = None
    reason: str | None = None  # why nothing was read when numbers were there


def number_value(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def numbers_in(text: str) -> list[float]:
    return [float(m.group(0).replace(",", "")) for m in _NUMBER.finditer(text)]


def _number_text(text: str) -> str:
    """Reply text for number reading: NFKC (full-width digits, "½"), plain dashes and slashes, no markdown."""
    text = unicodedata.normalize("NFKC", plain_text(text))
    return text.replace("⁄", "/").replace("−", "-").replace("’", "'")


def _tokens(text: str) -> list[_Token]:
    return [_Token(m.group(0).casefold(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _word_number(toks: list[_Token], i: int) -> tuple[float, int] | None:
    """Number words from token ``i`` ("twenty-five", "two hundred and fifty", "a hundred") and the next index."""
    total, current, j, last = 0.0, 0.0, i, None
    if toks[i].text in ("a", "an") and i + 1 < len(toks) and toks[i + 1].text in _SCALE_WORDS:
        current, j, last = 1.0, i + 1, "unit"
    while j < len(toks):
        word = toks[j].text
        if word in _UNIT_WORDS and last in (None, "scale", "tens"):
            current, last = current + _UNIT_WORDS[word], "unit"
        elif word in _TENS_WORDS and last in (None, "scale"):
            current, last = current + _TENS_WORDS[word], "tens"
        elif word == "hundred" and last in ("unit", "tens"):
            current, last = current * 100, "scale"
        elif word == "thousand" and last in ("unit", "tens", "scale"):
            total, current, last = total + current * 1000, 0.0, "scale"
        elif word in ("-", "and") and last in ("tens", "scale") and _is_word(toks, j + 1, *_UNIT_WORDS):
            j += 1
            continue
        else:
            break
        j += 1
    return (total + current, j) if last is not None else None


def _number_at(toks: list[_Token], i: int) -> tuple[float, int] | None:
    """A number starting at token ``i``: digits (with "5k" or "2 hundred") or number words."""
    text = toks[i].text
    if not text[0].isdigit():
        return _word_number(toks, i)
    value, j = float(text.replace(",", "")), i + 1
    if j < len(toks) and toks[j].text == "k" and toks[j].start == toks[i].end:
        return value * 1000, j + 1
    if j < len(toks) and toks[j].text in _SCALE_WORDS:
        return value * _SCALE_WORDS[toks[j].text], j + 1
    signed = i > 0 and toks[i - 1].text == "-" and toks[i - 1].end == toks[i].start
    if signed and (i < 2 or not toks[i - 2].text[0].isdigit()):  # "-5", but not the "10" of "5-10"
        return -value, j
    return value, j


def _is_word(toks: list[_Token], j: int, *words: str) -> bool:
    return j < len(toks) and toks[j].text in words


def _fraction_at(toks: list[_Token], i: int) -> tuple[float, int] | None:
    """"half", "a third", "two thirds", "three quarters" from token ``i``."""
    if toks[i].text in ("half", "halves"):
        return 0.5, i + 1
    count, j = (1.0, i + 1) if toks[i].text in ("a", "an", "one") else (_word_number(toks, i) or (None, i))
    if count is not None and _is_word(toks, j, "-"):
        j += 1
    if count is not None and j < len(toks) and toks[j].text in _FRACTION_WORDS:
        return count * _FRACTION_WORDS[toks[j].text], j + 1
    return None


def _after_number(toks: list[_Token], i: int, value: float, j: int, total: float | None) -> tuple[_Mention | None, int]:
    """What follows a number decides its form: percent, "X/Y", a range, or a plain number."""
    start, end = toks[i].start, toks[j - 1].end
    if _is_word(toks, j, "%", "percent"):
        return _Mention(value / 100, start, toks[j].end, "percent"), j + 1
    if _is_word(toks, j, "per") and _is_word(toks, j + 1, "cent"):
        return _Mention(value / 100, start, toks[j + 1].end, "percent"), j + 2
    if _is_word(toks, j, "-") and j + 1 < len(toks) and toks[j + 1].text[0].isalpha() and toks[j].start == end:
        if toks[j + 1].text == "ish":
            return _Mention(value, start, toks[j + 1].end), j + 2
        if _number_at(toks, j + 1) is None:
            return None, j + 2  # "six-sided", "one-time": an adjective, not an amount
    joined = j + 1 < len(toks) and (toks[j].text in _RANGE_JOINS or toks[j].text == "/")
    other = _number_at(toks, j + 1) if joined else None
    if other is not None:
        second, k = other
        end = toks[k - 1].end
        if toks[j].text != "/":
            form = "split" if value == second and toks[j].text != "or" else "range"
            return _Mention(0.5 if form == "split" else value, start, end, form, high=second), k
        if second == total:
            return _Mention(value, start, end), k  # "4/5" of five items, "30/100" of 100 dollars
        if value == second and value > 0:
            return _Mention(0.5, start, end, "split"), k  # "50/50"
        if 0 <= value < second <= 12:
            return _Mention(value / second, start, end, "fraction"), k  # "1/2", "3/4"
        return _Mention(value, start, end, "ratio"), k  # "70/30": which side is whose?
    return _Mention(value, start, end), j


def _denominator(toks: list[_Token], j: int) -> tuple[float, int] | None:
    """The Y of "X out of Y" / "X of the Y" starting at token ``j``, and the index after it."""
    if _is_word(toks, j, "out") and _is_word(toks, j + 1, "of"):
        k = j + 2
    elif _is_word(toks, j, "of"):
        k = j + 1
    else:
        return None
    if _is_word(toks, k, "the", "my", "your", "all"):
        k += 1
    return _number_at(toks, k) if k < len(toks) else None


def _mention_at(toks: list[_Token], i: int, total: float | None) -> tuple[_Mention | None, int]:
    """The mention starting at token ``i`` (or None) and the index to continue from."""
    text = toks[i].text
    if text == "between" and i + 1 < len(toks) and (low := _number_at(toks, i + 1)) and _is_word(toks, low[1], "and"):
        high = _number_at(toks, low[1] + 1) if low[1] + 1 < len(toks) else None
        if high:
            return _Mention(low[0], toks[i].start, toks[high[1] - 1].end, "range", high=high[0]), high[1]
    if text in ("fifty", "50") and _is_word(toks, i + 1, "-", "/") and _is_word(toks, i + 2, "fifty", "50"):
        return _Mention(0.5, toks[i].start, toks[i + 2].end, "split"), i + 3
    fraction = _fraction_at(toks, i)
    if fraction:
        return _Mention(fraction[0], toks[i].start, toks[fraction[1] - 1].end, "fraction"), fraction[1]
    if text in _ZERO_WORDS:
        return _Mention(0.0, toks[i].start, toks[i].end, "none"), i + 1
    if text in ("all", "everything"):
        if _number_at(toks, i + 1) if i + 1 < len(toks) else None:
            return None, i + 1  # "all 4": the number says it
        j = i + 3 if _is_word(toks, i + 1, "of") and _is_word(toks, i + 2, "it", "them") else i + 1
        return _Mention(1.0, toks[i].start, toks[j - 1].end, "all"), j
    found = _number_at(toks, i)
    if found is None:
        return None, i + 1
    value, j = found
    if text == "one" and j == i + 1 and not _one_is_a_number(toks, i):
        return None, j
    over = _denominator(toks, j)
    if over is not None:
        if total is None or over[0] == total or not over[0]:
            return _Mention(value, toks[i].start, toks[over[1] - 1].end), over[1]
        return _Mention(value / over[0], toks[i].start, toks[over[1] - 1].end, "fraction"), over[1]
    return _after_number(toks, i, value, j, total)


def _one_is_a_number(toks: list[_Token], i: int) -> bool:
    words = [t for t in toks if t.text[0].isalnum()]
    return (len(words) == 1 or (i > 0 and toks[i - 1].text in _ONE_CUES)
            or _is_word(toks, i + 1, "of", "out", "dollar", "point", "pip", "euro", "pound", "credit", "token"))


def _mentions(text: str, total: float | None = None) -> list[_Mention]:
    toks, found, i = _tokens(text), [], 0
    while i < len(toks):
        mention, i = _mention_at(toks, i, total)
        if mention is not None:
            found.append(mention)
    return found


def _cue_pattern(words: Sequence[str]) -> re.Pattern | None:
    """Verbs (and their regular inflections) that govern the number after them, as one pattern ending at $."""
    forms = set()
    for phrase in words:
        head, _, rest = phrase.casefold().partition(" ")
        stems = {head, head + "s", head + "es", head + "ed", head + "d", head + "ing", head + head[-1:] + "ing",
                 head[:-1] + "ing"}
        forms |= {f"{stem} {rest}".strip() for stem in stems}
    if not forms:
        return None
    alternatives = "|".join(sorted((re.escape(f) for f in forms), key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b\W*(?:[^\W\d]+\W+){{0,4}}?$")


# A verb governs the respondent's answer only when the respondent (or, for a roll, the die) is its subject:
# it opens the reply or a clause, or follows one of these words or an adverb in -ly ("I'd pass 30", "so I
# roll a 4", "pass 30"). "They sent 10" and "my opponent set 9" describe someone else.
_OWN_VERB_BEFORE = frozenset((
    "i", "i'd", "i'll", "i'm", "i've", "we", "we'd", "we'll", "would", "will", "shall", "to", "and", "then", "so",
    "can", "could", "should", "might", "must", "just", "simply", "also", "now", "still", "rather", "instead",
    "let's", "me", "gonna", "do", "did", "it", "die",  # "the die shows 5", "it landed on 4"
))


def _own_verb(before_verb: str) -> bool:
    """Whether a verb whose preceding text is ``before_verb`` has the respondent as its subject."""
    if not before_verb.strip() or re.search(r"[.!?:;,(\n\-–—]\s*$", before_verb):
        return True
    last = before_verb.split()[-1].strip("\"'*")
    return last in _OWN_VERB_BEFORE or last.endswith("ly")


# The task's rule restated in the second person ("you can only move one", "you may pass 0 to 100"): what is
# allowed, not what the respondent does.
_RULE_BEFORE = re.compile(r"\byou\s+(?:can|could|may|might|are (?:allowed|able|free) to)\b(?:\s+[^\W\d]+){0,4}\W*$")


def _role(before: str, after: str, verbs: re.Pattern | None, marks: re.Pattern | None, split: bool) -> str:
    """The role of a number from the text just before and just after it (casefolded)."""
    if _RULE_BEFORE.search(before):
        return "rule"
    if split and _KEPT_AFTER.search(after):
        return "kept"
    if marks and marks.search(after):
        return "action"
    if split and (_RECIPIENT_AFTER.search(after) or _RECIPIENT_BEFORE.search(before)):
        return "action"
    if re.search(r"\bnot\W*$", before):
        return "negated"  # "30, not 50"
    if _BOUND_BEFORE.search(before):
        return "bound"
    if _OPERAND_BEFORE.search(before):
        return "operand"
    verb = verbs.search(before) if verbs else None
    cues = [(verb.start(), "action")] if verb and _own_verb(before[:verb.start()]) else []
    if split:
        cues += [(m.start(), "kept") for m in [_KEPT_BEFORE.search(before)] if m]
    if cues:
        at, role = max(cues)
        return "negated" if _NEGATION_BEFORE.search(before[:at]) else role
    return "alternative" if _ALTERNATIVE_BEFORE.search(before) else ""


def _with_roles(text: str, mentions: list[_Mention], verbs, marks, split: bool) -> list[_Mention]:
    """The mentions with their roles, each read from the text between it and its neighbours."""
    out = []
    for k, m in enumerate(mentions):
        before = text[max(mentions[k - 1].end if k else 0, m.start - 60):m.start].casefold()
        after = text[m.end:min(mentions[k + 1].start if k + 1 < len(mentions) else len(text), m.end + 40)].casefold()
        out.append(replace(m, role=_role(before, after, verbs, marks, split)))
    return out


def _amount(m: _Mention, total: float | None) -> tuple[float | None, str | None]:
    """A mention as an amount; shares need the task's total."""
    if m.form in ("number", "none"):
        return m.value, None
    if m.form in ("range", "ratio"):
        return None, m.form
    if total is None or not 0 <= m.value <= 1:
        return None, m.form
    return m.value * total, None


def _one_value(mentions: list[_Mention], total: float | None, method: str) -> NumberReading:
    amounts = [_amount(m, total) for m in mentions]
    missing = next((why for value, why in amounts if value is None), None)
    if missing:
        return NumberReading(None, reason=missing)
    values = {value for value, _ in amounts}
    return NumberReading(values.pop(), method) if len(values) == 1 else NumberReading(None, reason="several_numbers")


def _is_echo(m: _Mention, echoes: set[float]) -> bool:
    """A number (or range) copied from the prompt, such as the endowment or "from 0 to 100"."""
    if m.role:
        return False
    return (m.form == "number" and m.value in echoes) or (m.form == "range" and {m.value, m.high} <= echoes)


# A phrase that makes the number after it the respondent's pick, whatever the task's verbs: "I would go
# with 6", "I'd say 40", "my answer is 100" (not "the total is 100", which restates).
_CHOSEN_BEFORE = re.compile(
    r"(?:\b(?:i|i'd|i'll|i'm|we|we'd|would|will|to|just|so|then|let's)\s+(?:\w+ly\s+)?"
    r"(?:go(?:ing)? with|choose|choosing|pick|picking|select|opt for|settle on|decide on|say|make it)"
    r"|\b(?:my|our|the)\s+(?:final\s+)?(?:answer|choice|pick|decision|number)\s*(?:is|would be|will be|:)"
    r"|^\s*(?:go(?:ing)? with|choose|pick|select|say|make it))\W*(?:[^\W\d]+\W+){0,2}?$")


def _chosen(text: str, m: _Mention, previous_end: int) -> bool:
    """Whether the words just before mention ``m`` pick it ("I would go with 6")."""
    return bool(_CHOSEN_BEFORE.search(text[max(previous_end, m.start - 60):m.start].casefold()))


def _choose(mentions: list[_Mention], echoes: set[float], total: float | None, split: bool,
            bare: bool = False, opening: int = 0, chosen: frozenset[int] = frozenset()) -> NumberReading:
    """One value from the mentions, or the reason there is none. Numbers copied from the prompt count only
    when nothing else is there and the reply is little more than the number (``bare``: "100", "All 100
    dollars."), opens with it (at ``opening``: "0, no need to get back at them"), a verb governs it ("I
    pass 100") or a choosing phrase picks it (starts in ``chosen``: "I would go with 6"); "I now hold 30
    dollars" restates the task."""
    live = [m for m in mentions if m.role not in ("negated", "rule")]
    own = [m for m in live if not _is_echo(m, echoes)]
    if not own and live and not bare and not any(m.start == opening or m.start in chosen for m in live):
        return NumberReading(None, reason="echo")
    live = own or live
    if not live:
        return NumberReading(None)
    for role in ("bound", "operand"):
        if any(m.role == role for m in live):
            return NumberReading(None, reason=role)
    if any(m.role == "alternative" for m in live) and len({(m.form, m.value) for m in live}) > 1:
        return NumberReading(None, reason="alternatives")
    acted = [m for m in live if m.role == "action"]
    kept = [m for m in live if m.role == "kept"]
    if kept and split and total is not None:
        kept_reading = _one_value(kept, total, "kept")
        if kept_reading.value is None:
            return kept_reading
        remainder = NumberReading(total - kept_reading.value, "kept")
        others = acted or [m for m in live if not m.role]
        given = _one_value(others, total, "verb" if acted else "only") if others else remainder
        return given if given.value == remainder.value else NumberReading(None, reason="kept_conflict")
    if acted:
        return _one_value(acted, total, "verb")
    if kept:
        return NumberReading(None, reason="kept_amount")
    return _one_value(live, total, "only")


def ambiguity_detail(reading: NumberReading) -> dict:
    """Detail for a reply whose numbers could not be reduced to one: ``reason: ambiguous`` and which kind."""
    return {"reason": "ambiguous", "ambiguity": reading.reason} if reading.reason else {}


def read_number(reply: str, prompt: str, *, verbs: Sequence[str] = (), marks: Sequence[str] = (),
                 total: float | None = None, split: bool = False) -> NumberReading:
    """The number a reply gives, read from its mentions (see the module docstring).

    ``verbs`` govern the answer ("pass 30"), ``marks`` follow it ("4 right"); ``total`` turns percentages,
    fractions and "all" into amounts; ``split`` (the reply divides ``total`` between the respondent and
    someone else) reads a kept amount as the rest of the total. With an ``Answer:`` line, only numbers on
    the last such line count. Numbers copied from the prompt are ignored when others are there, and
    alone count only when governed or in a reply of a few words (else missing, reason ``echo``); an
    ungoverned "all" or "none" counts only in a reply of a few words or as its first word.
    """
    text = _number_text(reply)
    split = split and total is not None
    mentions = _with_roles(text, _mentions(text, total), _cue_pattern(verbs), _mark_pattern(marks), split)
    words = [t for t in _tokens(text) if t.text[0].isalnum()]
    if len(words) > 5:  # "all" and "none" in a longer reply count when governed or when they open it
        mentions = [m for m in mentions if m.role or m.form not in ("all", "none") or m.start == words[0].start]
    method = None
    for cue in reversed(list(_ANSWER_CUE.finditer(text))):
        on_line = [m for m in mentions if cue.start(1) <= m.start < cue.end(1)]
        if on_line:
            mentions, method = on_line, "answer_line"
            break
    echoes = {m.value for m in _mentions(_number_text(prompt)) if m.form == "number"}
    bare = method == "answer_line" or sum(not t.text[0].isdigit() for t in words) <= _BARE_WORDS
    chosen = frozenset(m.start for k, m in enumerate(mentions) if _chosen(text, m, mentions[k - 1].end if k else 0))
    reading = _choose(mentions, echoes, total, split, bare, words[0].start if words else 0, chosen)
    return NumberReading(reading.value, method) if reading.value is not None and method else reading


_BARE_WORDS = 2  # words besides digits: "100", "100 dollars.", "All 100 dollars": the number is the reply


def _mark_pattern(words: Sequence[str]) -> re.Pattern | None:
    """Words that mark the number just before them as the answer ("4 right", "3 correct")."""
    if not words:
        return None
    return re.compile(rf"^\W*(?:[^\W\d]+\W+){{0,1}}?(?:{'|'.join(map(re.escape, words))})\b")
