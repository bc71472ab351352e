"""Text helpers every reader uses: markdown stripped, normalised text, words, sentences, refusals."""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_REFUSAL = re.compile(
    r"\b(?:as an ai\b|as an artificial intelligence|as a (?:large )?language model|i(?:'m|’m| am) (?:just |only )?an ai\b"
    r"|i (?:do not|don't|don’t) have (?:personal|feelings|preferences|emotions|opinions|the ability|money|a body)"
    r"|i (?:cannot|can't|can’t|can not|am unable to|am not able to) "
    r"(?:answer|help|assist|comply|provide|respond|participate|engage|make (?:that|this|a|such|decisions?)|choose"
    r"|decide|do that|do this|fulfil|fulfill|play|pick|select|take part)"
    r"|i (?:won't|won’t|will not) (?:answer|help|assist|comply|provide|respond|engage|fulfil|fulfill)"
    r"|i(?:'m|’m| am) (?:not able|unable) to|i must decline to|not (?:comfortable|appropriate) for me)",
    re.IGNORECASE,
)


def plain_text(text: str) -> str:
    """Reply text without markdown emphasis and code marks."""
    return re.sub(r"\*\*|__|`", "", text).strip()


def normalized_text(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]|_", " ", text.casefold()).split())


def words_of(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences_of(text: str) -> list[str]:
    """Sentences, split at ``. ! ?`` followed by space and at line breaks."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", text.strip())
    return [part for part in parts if re.search(r"\w", part)]


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def is_short_refusal(text: str) -> bool:
    """A refusal phrase in a reply under 40 words: free-text kinds keep long replies that only disclaim."""
    return is_refusal(text) and len(words_of(text)) < 40


_COPY_MIN_WORDS = 4  # a shorter sentence ("Thank you.") may be the model's own words by chance


def without_copied(text: str, sources: Sequence[str]) -> str:
    """``text`` without the sentences and lines it copies from ``sources`` (the user's turns, or an earlier
    reply): a model that repeats the question, the task's rules or its previous turn has not answered with
    those words. A piece counts as copied when its normalised text occurs in a source and it has at least
    four words, or, in a reply that copies such a piece, any number ("Requirements:", "- no commas"); a
    short piece in a reply that copies nothing longer stays (it may be the model's own by chance)."""
    haystacks = [f" {normalized_text(s)} " for s in sources if s and s.strip()]
    if not haystacks:
        return text.strip()
    lines = [re.split(r"(?<=[.!?])\s+", line.strip()) for line in text.splitlines()]
    copying = any(_is_copied(p, haystacks, _COPY_MIN_WORDS) for pieces in lines for p in pieces)
    least = 1 if copying else _COPY_MIN_WORDS
    kept = []
    for line, pieces in zip(text.splitlines(), lines):
        own = [p for p in pieces if not _is_copied(p, haystacks, least)]
        if own:
            kept.append(" ".join(own) if len(own) < len(pieces) else line.strip())
    return "\n".join(kept).strip()


def _is_copied(piece: str, haystacks: list[str], least: int) -> bool:
    words = normalized_text(piece)
    return len(words.split()) >= least and any(f" {words} " in h for h in haystacks)


def repeats_turn(text: str, sources: Sequence[str]) -> bool:
    """Whether a reply only repeats ``sources`` (the prompt or an earlier turn): nothing with a word is left
    once the copied sentences are removed, though the reply had words."""
    return bool(words_of(text)) and not words_of(without_copied(text, sources))


def is_degenerate(text: str) -> bool:
    """A reply whose generation broke down into one word or phrase over and over ("sugar, sugar, sugar,
    ..."): twenty words or more, at most three of them different. It says nothing to score."""
    words = [w.casefold() for w in words_of(text)]
    return len(words) >= 20 and len(set(words)) <= 3
