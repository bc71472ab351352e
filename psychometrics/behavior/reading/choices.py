"""Reading which displayed option a reply chooses: a label, a choosing phrase, a bold label or the
option's text, negated mentions left out (see :func:`read_choice`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from psychometrics.behavior.reading.text import is_refusal, normalized_text, plain_text

_STRICT = re.compile(
    r"^[\s\"'“”(\[]*(?:(?i:option|choice|answer)\s*[:\-–]?\s*)?[(\[]?([A-Za-z])[)\]]?(?:[.):\-–,]+|\s+|$)\s*(.*?)[\s\"'”\].!]*$",
    re.DOTALL,
)
_CUE = re.compile(
    r"(?i:\b(?:i(?:'d|’d|'ll|’ll| would| will| shall)?(?:\s+(?:definitely|probably|rather|still|now|instead|also))?"
    r"\s+(?:choose|chose|pick|select|go with|opt for|take|prefer|stick with|stay with|keep|vote for"
    r"|change (?:my answer )?to|switch to)"
    r"|i(?:'m|’m| am) (?:going with|choosing|picking|selecting|sticking with|staying with)"
    r"|(?:my|the)\s+(?:final\s+|correct\s+|best\s+|updated\s+|revised\s+|right\s+)?"
    r"(?:answer|choice|pick|selection|decision|option)\s*(?:is|would be|remains|stays|will be|:)(?:\s+still)?"
    r"|(?:final\s+)?(?:answer|choice|decision)\s*:))"
    r"\s*[:\-–]?\s*(?:(?i:option|choice)\s+)?[(\[]?([A-Z])(?![\w’'])"
)
_BOLD = re.compile(r"\*\*\s*(?:(?i:option|choice)\s+)?[(\[]?([A-Z])(?![\w’'])")
_LONE_LABEL = re.compile(r"(?<![\w’'])([A-Z])(?![\w’'])")
_LABEL_FOLLOWERS = frozenset((
    "or", "and", "is", "was", "would", "seems", "looks", "gives", "offers", "means", "vs", "versus", "over",
    "then", "if", "because", "since",
))


@dataclass(frozen=True)
class ChoiceReading:
    outcome: str
    index: int | None = None
    method: str | None = None
    named: tuple[int, ...] = ()


def _strict_choice(text: str, labels: Sequence[str], texts: Sequence[str]) -> int | None:
    """The option a reply names when it is only a label, optionally with that option's text or a reason."""
    match = _STRICT.match(text.strip())
    if not match:
        return None
    label, rest = match.group(1), normalized_text(match.group(2))
    if label not in labels:
        if label.upper() in labels and not rest:  # a bare lowercase letter
            label = label.upper()
        else:
            return None
    index = labels.index(label)
    others = re.sub(re.escape(texts[index]), " ", match.group(2), flags=re.IGNORECASE)
    if any(m.group(1) in labels and m.group(1) != label for m in _LONE_LABEL.finditer(others)):
        return None  # "A. ... but B is better"
    if not rest or rest.startswith(normalized_text(texts[index])) or rest.split()[0] in ("because", "since", "as"):
        return index
    return None


_STOPWORDS = frozenset((
    "a", "an", "the", "of", "and", "or", "to", "in", "on", "for", "at", "by", "with", "it", "is", "are", "be", "i",
    "my", "your",
))


def distinctive_words(options: Sequence) -> list[set[str]]:
    """Per option (text or Option), its words that no other option contains, minus stopwords."""
    words = [set(normalized_text(o if isinstance(o, str) else o.text).split()) - _STOPWORDS for o in options]
    return [own - set().union(*(w for j, w in enumerate(words) if j != i)) for i, own in enumerate(words)]


_NEGATIONS = frozenset(("not", "never", "t", "nor", "neither", "without"))  # "t": don't, won't after _norm


def _negated(before: str) -> bool:
    """Whether normalised text ending just before a mention negates it ("would not take", "rather than")."""
    tokens = before.split()
    return any(t in _NEGATIONS for t in tokens[-2:]) or bool(tokens and tokens[-1] in ("than", "over"))


def negated_in_clause(before: str) -> bool:
    """Whether the text before a mention, from its last clause break on, negates it ("Oxygen, not CO2")."""
    clause = re.split(r"[,;:(\[–—]|\s-\s", before)[-1]
    return _negated(normalized_text(clause))


@dataclass(frozen=True)
class _Named:
    """One mention of an option in a reply: which option, and the normalised text around it."""

    index: int
    before: str
    after: str
    alone: bool = False  # a label standing as its own sentence ("... Paris is the capital. B.")


_ASSERTING = frozenset(("is", "are", "was", "s", "remains", "still", "be", "answer", "indeed", "definitely"))
_ASSERTED_AFTER = re.compile(r"^\s*(?:is|remains) (?:still )?(?:correct|right|the (?:correct |right )?answer)\b")
_REJECTED_AFTER = re.compile(r"^\s*(?:is|was|would be) (?:not|wrong|incorrect)\b|^\s*(?:isn|wasn) t\b")
_OFFER_ITEMS = (r"(?:it|this|that|this one|the (?:\w+ )?(?:bet|toss|offer|gamble|wager|chance|risk|deal|round|draw|game"
                r"|quest|spin|flip|guess|ticket|envelope))")
_ACCEPT = re.compile(r"\b(?:(?:take|accept|play|do|try|join|spin|flip|roll|open|start|risk|go for|go ahead with) "
                     rf"{_OFFER_ITEMS}|i accept|i m in|count me in|let s do it|let s play|i ll play|go for it)\b")
_DECLINE = re.compile(rf"\b(?:decline|refuse|reject|skip|pass(?: on {_OFFER_ITEMS})?|turn {_OFFER_ITEMS} down|turn down"
                      rf"|sit {_OFFER_ITEMS} out|sit out|stay out|no thanks|no thank you|not interested|rather not"
                      r"|walk away)\b")


def _option_mentions(plain: str, labels: Sequence[str], texts: Sequence[str]) -> list[_Named]:
    """Every mention of an option's text or of a standalone label, with the text around it."""
    named: list[_Named] = []
    original = haystack = f" {normalized_text(plain)} "
    for i in sorted(range(len(texts)), key=lambda i: -len(texts[i])):
        phrase = f" {normalized_text(texts[i])} "
        if not phrase.strip():
            continue
        for m in re.finditer(re.escape(phrase), haystack):
            named.append(_Named(i, original[: m.start() + 1], original[m.end() - 1:]))
        haystack = haystack.replace(phrase, " " * len(phrase))  # "take the coin toss" in "do not take the coin toss"
    for m in _LONE_LABEL.finditer(plain):
        if m.group(1) not in labels:
            continue
        at_start = m.start() == 0 or re.search(r"[.!?:]\s*$|\n\s*$", plain[: m.start()])
        following = re.match(r"\s+([a-z]+)", plain[m.end():])
        if m.group(1) == "A" and at_start and following and following.group(1) not in _LABEL_FOLLOWERS:
            continue  # the article "A ..." opening a sentence
        alone = bool(at_start) and bool(re.match(r"[\s.!)\]]*$", plain[m.end():]))
        before, after = f" {normalized_text(plain[: m.start()])} ", f" {normalized_text(plain[m.end():])} "
        named.append(_Named(labels.index(m.group(1)), before, after, alone))
    return named


def _is_rejected(mention: _Named) -> bool:
    """A mention that negates the option ("not Lyon", "Lyon is not the capital")."""
    return _negated(mention.before) or bool(_REJECTED_AFTER.match(mention.after))


def _is_asserted(mention: _Named) -> bool:
    """A mention that states the option as the answer ("the capital is Paris", "Paris is correct")."""
    tokens = mention.before.split()
    return mention.alone or bool(tokens and tokens[-1] in _ASSERTING) or bool(_ASSERTED_AFTER.match(mention.after))


def _short_option_words(plain: str, texts: Sequence[str]) -> set[int]:
    """Short options named by a word only they contain ("the Atlantic" for "The Atlantic Ocean")."""
    found, tokens = set(), normalized_text(plain).split()
    for i, own in enumerate(distinctive_words(texts)):
        if len(normalized_text(texts[i]).split()) <= 3 and any(
            t in own and not _negated(" ".join(tokens[:k])) for k, t in enumerate(tokens)
        ):
            found.add(i)
    return found


def _offer_answer(plain: str, n_options: int, decline: int | None) -> int | None:
    """With two options, one of which means turning the offer down: the option that a reply taking or
    turning down the offer in its own words means ("I'd take it", "I'll pass", "No, I won't take the bet")."""
    if decline is None or n_options != 2:
        return None
    accept = 1 - decline
    text = f" {normalized_text(plain)} "
    if re.fullmatch(r"\s*(?:yes|yeah|sure)(?: please)?\s*", text):
        return accept
    if re.fullmatch(r"\s*(?:no|nope)(?: thanks| thank you)?\s*", text):
        return decline
    meant = set()
    for pattern, means, other in ((_ACCEPT, accept, decline), (_DECLINE, decline, accept)):
        for m in pattern.finditer(text):
            meant.add(other if _negated(text[: m.start()]) else means)
    return meant.pop() if len(meant) == 1 else None


def read_choice(reply: str | None, labels: Sequence[str], texts: Sequence[str], decline: int | None = None) -> ChoiceReading:
    """Which displayed option a reply chooses.

    Strict: the whole reply (or its first line, when no other line names another option) is a label,
    optionally with the option's text. Then a label after a choosing phrase ("I would choose B", "the
    answer is still B"), then a bold label. Then refusals. Lenient: standalone labels and option texts
    anywhere, negated mentions ("not Lyon") left out; exactly one option must be named, or exactly one
    of those named must be stated as the answer ("The capital is Paris. Lyon is the third-largest
    city."). With two options, rejecting one means the other, and when ``decline`` (the index of the
    option that turns an offer down) is given, "I'll pass" or "I'd take it" say which.
    """
    if reply is None or not reply.strip():
        return ChoiceReading("empty")
    plain = plain_text(reply)
    index = _strict_choice(plain, labels, texts) if "\n" not in plain else None
    if index is not None:
        return ChoiceReading("valid", index, "strict")
    bare = plain.strip(" .)(*:\"'\n\t")
    if re.fullmatch(r"[A-Z]", bare) and bare not in labels:
        return ChoiceReading("out_of_range")
    lines = [line for line in plain.splitlines() if line.strip()]
    if len(lines) > 1:
        first = _strict_choice(lines[0], labels, texts)
        hits = {i for i in (_strict_choice(line, labels, texts) for line in lines) if i is not None}
        if first is not None and hits == {first}:
            return ChoiceReading("valid", first, "first_line")
    for method, pattern, text in (("cue", _CUE, plain), ("bold", _BOLD, reply)):
        found = {labels.index(m.group(1)) for m in pattern.finditer(text) if m.group(1) in labels}
        if len(found) == 1:
            return ChoiceReading("valid", found.pop(), method)
    if is_refusal(plain):
        return ChoiceReading("refusal")
    named = _option_mentions(plain, labels, texts)
    found = {n.index for n in named if not _is_rejected(n)}
    rejected = {n.index for n in named} - found
    if not found:
        found = _short_option_words(plain, texts)
    if len(found) == 1:
        return ChoiceReading("valid", found.pop(), "lenient")
    if found:
        asserted = {n.index for n in named if n.index in found and _is_asserted(n) and not _is_rejected(n)}
        if len(asserted) == 1:
            return ChoiceReading("valid", asserted.pop(), "asserted")
        return ChoiceReading("unparseable", named=tuple(sorted(found)))
    offer = _offer_answer(plain, len(texts), decline)
    if offer is not None:
        return ChoiceReading("valid", offer, "offer")
    if len(texts) == 2 and len(rejected) == 1:
        return ChoiceReading("valid", 1 - rejected.pop(), "other_rejected")
    return ChoiceReading("unparseable")
