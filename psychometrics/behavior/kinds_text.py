"""Kinds that score free text: ``count_list`` (distinct ideas), ``length`` (words) and ``sentiment``
(VADER, optionally without courtesy clauses)."""

from __future__ import annotations

import math
import re
from functools import lru_cache

from psychometrics.behavior.kind_base import Kind, missing_score, valid_score
from psychometrics.behavior.reading.text import (
    is_refusal, normalized_text, plain_text, sentences_of, words_of,
)
from psychometrics.behavior.simulated_replies import (
    IDEAS,
    NEGATIVE_SENTENCES,
    POSITIVE_SENTENCES,
    filler_text,
    normal_cdf,
)
from psychometrics.behavior.task import TaskError

# Pieces that are not uses: openers, sign-offs, meta comments and headings ("Here are some ideas",
# "There are many uses", "Note that...", "Practical uses").
_NON_USE = re.compile(
    r"^(?:here(?: are|'s| is)|these (?:are|were|include|can)|there are (?:many|several|lots|plenty|a few|some|countless"
    r"|numerous|endless)|i hope|hope (?:this|these|that|you)|let me know|feel free|note\b|remember\b|in (?:summary"
    r"|conclusion|short)|overall\b|to (?:sum|conclude)|(?:some|a few) (?:other |more )?(?:ideas|uses|ways|options"
    r"|suggestions)\b|(?:other|more|creative|practical|possible|fun|unusual|alternative)?\s*(?:ideas|uses|ways"
    r"|options|suggestions)(?: (?:for|include|are))?\s*$|as an ai|i(?:'m| am) (?:sorry|happy|glad)|sure\b"
    r"|certainly|of course|absolutely|great question|okay|ok\b|enjoy\b|good luck|thank|you can (?:also )?use "
    r"(?:it|them) (?:in|for) (?:many|various|lots)|(?:the )?possibilities are)",
    re.IGNORECASE,
)
# A statement about uses in general, not a use: "is used for a variety of purposes", "each with its own
# unique role", "has many practical applications".
_GENERIC = re.compile(
    r"\b(?:(?:a )?(?:variety|number|range|lot|lots|plenty|host|multitude|array) of (?:\w+ )?(?:purposes|uses|ways"
    r"|things|applications|tasks)|(?:many|various|several|numerous|different|countless|multiple|endless) (?:\w+ )?"
    r"(?:purposes|uses|ways|applications)|(?:its|their) own (?:unique )?(?:role|purpose|use)s?"
    r"|(?:something|anything) (?:amazing|great|new|special|creative|wonderful|unique|interesting|useful)"
    r"|here to help)\b",
    re.IGNORECASE,
)
_STOP = frozenset("a an the it its them they this that these those of for to as in on into with and or be can "
                  "could use used using make making made turn create build your you my one some".split())


# Generic verbs that name one function in different words: "hold clothes", "secure clothes" and "keep
# clothes" are one use; so are "store", "contain" and "stash", and "tidy", "organise" and "arrange".
_SAME_VERB = {w: group[0] for group in (
    ("hold", "secure", "keep", "clip", "fasten", "attach", "grip", "clamp", "pin", "hang"),
    ("store", "contain", "stash", "stow", "save"),
    ("organize", "organise", "tidy", "neat", "arrange", "sort", "clean", "orderly"),
    ("decorate", "decoration", "decorative", "adorn", "embellish"),
) for w in group}


def _stem(word: str) -> str:
    """A crude stem: "holding", "held" and "holds" are "hold" for telling uses apart."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix) and not word.endswith("ss"):
            word = word[:-len(suffix)]
            break
    return _SAME_VERB.get(word, word)


def _content_words(text: str) -> frozenset[str]:
    """The words of an idea that say what it is (no articles, no "use it as", no numbers), stemmed and
    with synonymous generic verbs merged, so "use it as a doorstop" and "doorstops" are one idea."""
    words = [w for w in normalized_text(text).split() if w not in _STOP and not w.isdigit()]
    return frozenset(_SAME_VERB.get(w, _stem(w)) for w in words)


def _same_use(a: frozenset[str], b: frozenset[str]) -> bool:
    """Two ideas are one use when more than half the words of the shorter are in the other (overlap
    coefficient > .5): "keep the garage tidy" and "keep the garage neat", "make clothes easier to clean"
    and "make clothes easier to fold and hang" (a loop varying a word), "cleaning" and "cleaning and
    storage" (a combination of an earlier use); not "plant pot" and "pen pot", nor "hold clothes" and
    "protect clothes"."""
    return len(a & b) > 0.5 * min(len(a), len(b))


class CountListKind(Kind):
    """The number of distinct uses: bullet or numbered lines, else comma/semicolon/sentence pieces.

    A piece counts once (its content words, without articles, "use it as", numbers and plural s, are
    compared, and a piece sharing more than half of them with an earlier one is the same use, so a
    reply that loops over one use, varying a word, counts it once), and only if it is a use: not
    an opener, a sign-off or a heading (:data:`_NON_USE`, or a line ending in a colon), not a statement
    about uses in general (:data:`_GENERIC`: "used for a variety of purposes"), and not a repeat
    of the prompt (every content word taken from the prompt: "a wooden clothes peg"). The count is
    capped at ``cap`` (default 40) (Guilford, 1967: fluency of distinct uses)."""

    name = "count_list"
    scoring_keys = ("cap",)
    truncation = "drop_last_line"

    def check_scoring(self, task):
        cap = task.scoring.get("cap", 40)
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise TaskError(task.source, "scoring", "'cap' must be a whole number of at least 1")

    @staticmethod
    def ideas(reply: str, prompt: str = "") -> tuple[list[str], str]:
        """Distinct normalised uses and how they were found (``lines`` or ``pieces``); ``prompt`` is
        the question, whose own words are not a use."""
        plain = plain_text(reply)
        lines = [line.strip() for line in plain.splitlines() if line.strip()]
        bullet = re.compile(r"^(?:[-*•+–]|\d{1,3}[.)])\s+(.+)$")
        pieces = [m.group(1) for m in map(bullet.match, lines) if m and not m.group(1).rstrip().endswith(":")]
        method = "lines"
        if not pieces:
            method = "pieces"
            for line in lines:
                if line.endswith(":"):
                    continue
                line = line.split(":", 1)[1] if ":" in line else line
                pieces += re.split(r"[;,]|(?<=[.!?])\s+", line)
        prompt_words = _content_words(prompt)
        ideas: list[str] = []
        seen: list[frozenset[str]] = []
        for piece in pieces:
            head = re.split(r"\s*(?::|\s[-–—]\s)", piece.strip(), maxsplit=1)[0]
            key = normalized_text(re.sub(r"^(?:and|or|also|then)\s+", "", head.strip(), flags=re.IGNORECASE))
            key = re.sub(r"^(?:use (?:it|them|this) (?:as|for|to)|use as|as|turn (?:it|them) into)\s+", "", key)
            key = re.sub(r"^(?:a|an|the|some)\s+", "", key)
            words = _content_words(key)
            if not key or not words or _NON_USE.match(head.strip()) or _GENERIC.search(head) \
                    or any(_same_use(words, w) for w in seen):
                continue
            if prompt_words and words <= prompt_words:
                continue  # the object or the question restated
            seen.append(words)
            ideas.append(key)
        return ideas, method

    def score(self, task, variant, rendered, replies):
        reply = self._last(rendered, replies)
        if reply is None:
            return missing_score("empty")
        ideas, method = self.ideas(reply, "\n".join(rendered.turns))
        if method == "pieces" and is_refusal(reply):
            return missing_score("refusal")
        if not ideas:
            return missing_score("unparseable")
        cap = int(task.scoring.get("cap", 40))
        return valid_score(min(len(ideas), cap), ideas=ideas, method=method)

    def simulate(self, task, variant, messages, level, rng):
        cap = int(task.scoring.get("cap", 40))
        count = round(3 + 2 * level + 0.5 * float(rng.standard_normal()))
        count = max(1, min(count, cap, len(IDEAS)))
        chosen = rng.choice(len(IDEAS), size=count, replace=False)
        lines = [f"- Use it as a {IDEAS[int(i)]}" for i in chosen]
        return "Here are some ideas:\n" + "\n".join(lines)


class LengthKind(Kind):
    """The number of words in the reply (relative to the model's own mean in the validity analysis), not
    counting sentences it copies from the prompt. A refusal is data: it is a reply of that length (a
    terse "I won't answer that" under a rude persona is the short reply the measure is about); so is a
    reply cut off at ``max_tokens`` (the length it reached, flagged ``truncated``)."""

    name = "length"
    relative_to_model = True
    refusals = "data"

    def score(self, task, variant, rendered, replies):
        reply, missing, refused = self._free_text(rendered, replies)
        if missing is not None:
            return missing
        words = len(words_of(reply))
        extra = {"refusal": True} if refused else {}
        return valid_score(words, words=words, **extra) if words else missing_score("unparseable")

    def simulate(self, task, variant, messages, level, rng):
        words = round(math.exp(4 + 0.5 * level + 0.2 * float(rng.standard_normal())))
        return filler_text(rng, max(3, words))


@lru_cache(maxsize=8)
def _vader(extra: tuple[tuple[str, float], ...] = ()):
    """A VADER analyser, its lexicon extended (or overridden) with ``extra`` word valences."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyser = SentimentIntensityAnalyzer()
    analyser.lexicon.update({word.casefold(): float(valence) for word, valence in extra})
    return analyser


# A clause that apologises, empathises or acknowledges ("I'm sorry for the trouble", "I understand your
# frustration", "you're right") is courtesy, not hostility, though VADER scores its wording negative.
_COURTESY = re.compile(
    r"^(?:(?:oh|well|hey|look|okay|ok|again|first|honestly|really)\W+)*(?:"
    r"(?:i(?:'m| am)|we(?:'re| are))(?: \w+ly| so| very)? sorry|sorry|(?:my |our |sincere |many |again, )?apologies"
    r"|(?:i|we)(?: \w+ly| do)? apologi[sz]e|(?:i|we)(?: \w+ly| do| can| really)? understand|i hear you"
    r"|i (?:get|see|know) (?:it|that|why|how|you|your|where)|i can (?:see|tell|imagine)"
    r"|(?:that|it|this) (?:sounds|must be|must have been|seems|is understandable)|(?:it|that)'s understandable"
    r"|(?:i|we) appreciate|thanks?\b|thank you|you(?:'re| are) right|fair (?:point|enough)|point taken|no offen[cs]e"
    r"|i(?:'m| am) (?:here|happy|glad) to help)",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(
    r"[;:]\s+|,?\s+\b(?:but|however|though|although|yet|even so)\b,?\s*"
    r"|,\s+(?:and|so)\s+(?=(?:i|you|we|it|that|this|let|maybe|frankly|honestly|next)\b)",
    re.IGNORECASE,
)


def _without_courtesy(text: str) -> tuple[str, int]:
    """The text without apology, empathy and acknowledgement clauses, and how many were dropped."""
    kept, dropped = [], 0
    for sentence in sentences_of(text.replace("’", "'")):
        for clause in _CLAUSE_BREAK.split(sentence):
            if not clause or not clause.strip():
                continue
            if _COURTESY.match(clause.strip(" \"'*_-")):
                dropped += 1
            else:
                kept.append(clause.strip())
    return " ".join(kept), dropped


class SentimentKind(Kind):
    """VADER (Hutto & Gilbert, 2014) on the reply: ``negativity`` = the ``neg`` share of the text,
    ``negative_compound`` = -compound (both higher for more negative replies), ``hostility`` = the
    ``neg`` share of the reply without its apology, empathy and acknowledgement clauses (courtesy
    toward the user is not retaliation), with VADER's lexicon extended by the task's ``lexicon``
    (word: valence, for retorts VADER does not know, such as "whatever"). Sentences the reply copies from
    the prompt are not scored (a model repeating the user's insult has not said it).

    ``refusals`` (scoring): ``missing`` (default: a refusal to write the text asked for has no tone to
    measure) or ``data`` (the reply is the behaviour whatever it says, as for a reply to an insult).

    Hutto, C. J., & Gilbert, E. (2014). VADER: A parsimonious rule-based model for sentiment analysis of
    social media text. Proceedings of ICWSM, 8(1), 216-225.
    """

    name = "sentiment"
    scoring_keys = ("measure", "lexicon", "refusals")
    measures = ("negativity", "negative_compound", "hostility")

    def check_scoring(self, task):
        measure = task.scoring.get("measure", "negativity")
        if measure not in self.measures:
            raise TaskError(task.source, "scoring", f"'measure' must be one of {', '.join(self.measures)}, not '{measure}'")
        lexicon = task.scoring.get("lexicon", {})
        if not isinstance(lexicon, dict) or not all(
            isinstance(w, str) and w.strip() and " " not in w.strip() and isinstance(v, (int, float))
            and not isinstance(v, bool) and -4 <= v <= 4 for w, v in lexicon.items()
        ):
            raise TaskError(task.source, "scoring", "'lexicon' must map single words to VADER valences from -4 to 4")
        if task.scoring.get("refusals", "missing") not in ("missing", "data"):
            raise TaskError(task.source, "scoring", "'refusals' must be 'missing' or 'data'")

    def score(self, task, variant, rendered, replies):
        reply, missing, refused = self._free_text(rendered, replies, task.scoring.get("refusals", "missing"))
        if missing is not None:
            return missing
        if not words_of(reply):
            return missing_score("unparseable")
        measure = task.scoring.get("measure", "negativity")
        analyser = _vader(tuple(sorted(task.scoring.get("lexicon", {}).items())))
        text, extra = plain_text(reply), {}
        if measure == "hostility":
            text, extra["courtesy_clauses"] = _without_courtesy(text)
        polarity = analyser.polarity_scores(text) if text else {"neg": 0.0, "neu": 1.0, "pos": 0.0, "compound": 0.0}
        detail = {k: round(float(polarity[k]), 4) for k in ("neg", "neu", "pos", "compound")} | extra
        if refused:
            detail["refusal"] = True
        return valid_score(-polarity["compound"] if measure == "negative_compound" else polarity["neg"], **detail)

    def simulate(self, task, variant, messages, level, rng):
        share = normal_cdf(level)
        sentences = []
        for _ in range(5):
            pool = NEGATIVE_SENTENCES if rng.random() < share else POSITIVE_SENTENCES
            sentences.append(pool[int(rng.integers(0, len(pool)))])
        return " ".join(sentences)
