"""The one interface every model backend implements: a prompt in, text or option probabilities out.

A :class:`ModelRequest` is what a chat model receives (messages) plus what the caller needs back: in
``text`` mode the reply text, in ``probs`` mode the log-probability of each answer label as it is
displayed (``choices``, in display order). Backends never see which item or semantic option is
behind a label: mapping positions back to meaning is the caller's job, so permuted option orders can
be compared.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

if TYPE_CHECKING:
    from psychometrics.inventories.model import Inventory
    from psychometrics.design.personas import PersonaSet

AnswerMode = Literal["text", "probs"]


class TransientModelError(Exception):
    """A failure worth retrying (rate limit, overload, timeout, dropped connection).

    ``retry_after`` is the server's requested wait in seconds (from a Retry-After header), if any.
    ``timed_out`` marks a request that got no answer in time: the server probably received it, so a
    retry may be billed twice. Any other exception from :meth:`ModelBackend.complete` is final for that
    request and is recorded.
    """

    def __init__(self, message: str, retry_after: float | None = None, *, timed_out: bool = False,
                 unreachable: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.timed_out = timed_out
        #: no connection could be made (refused, no route, unknown host, connect timeout): the server never
        #: saw the request. Several in a row stop the run (:class:`psychometrics.engine.pool.Breaker`).
        self.unreachable = unreachable


class EndpointRefused(Exception):
    """A failure every request to this endpoint will have: a rejected key, an unknown model, a URL that
    serves no chat completions, a parameter the server does not support. Retrying, or sending the next
    request, cannot fix it; a few in a row stop the run (:class:`psychometrics.engine.pool.Breaker`).
    The message says what to change."""


class InvalidReplyError(Exception):
    """A reply that is not a possible answer: content that is not text, or label log-probabilities that
    are not a probability distribution. It is never stored as the model's answer: the request is
    recorded as failed with this reason, and sent again on the next run."""


#: Log-probabilities come rounded (or in float32): a value up to this far above 0 is read as 0, and
#: probabilities may sum to this much above 1. Anything further is not a distribution.
LOGPROB_TOLERANCE = 1e-3


def check_label_logprobs(logprobs: dict[str, float]) -> dict[str, float]:
    """``logprobs`` (label -> log-probability) checked to be a distribution over distinct labels:
    every value a finite number at most 0 (up to :data:`LOGPROB_TOLERANCE`; a slightly positive one
    becomes 0), ``-inf`` meaning probability 0 (dropped), and the labels' total probability at most 1
    (same tolerance). :class:`InvalidReplyError` otherwise: a positive or repeated log-probability
    would give an option mass above 1 and an expected value outside the scale."""
    checked: dict[str, float] = {}
    for label, value in logprobs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value == float("inf"):
            raise InvalidReplyError(f"the log-probability of label {label!r} is {value!r}, not a number at most 0")
        if value == float("-inf"):
            continue
        if value > LOGPROB_TOLERANCE:
            raise InvalidReplyError(f"the log-probability of label {label!r} is {value:g}, above 0 (a probability "
                                    "above 1)")
        checked[label] = min(float(value), 0.0)
    total = sum(math.exp(v) for v in checked.values())
    if total > 1 + LOGPROB_TOLERANCE:
        raise InvalidReplyError(f"the labels' probabilities sum to {total:.4g}, more than 1 (repeated or invalid "
                                "log-probabilities)")
    return checked


def clean_text(text: str) -> str:
    """``text`` with every unpaired UTF-16 surrogate (half an emoji, as gateways that cut text send:
    JSON ``"\\ud83d"``) replaced by U+FFFD, so it can be encoded as UTF-8 (and stored in SQLite)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class MalformedReply(InvalidReplyError):
    """A reply that breaks the protocol, e.g. a log-probability that is not one. Not retried: that request
    is recorded as failed with this reason (and sent again by the next run), the run goes on."""


#: A log-probability above 0 by at most this much is float rounding (p = 1), taken as 0.
LOGPROB_ROUNDING = LOGPROB_TOLERANCE


def label_logprobs(raw: object) -> dict[str, float]:
    """Label log-probabilities as a backend or a server gave them, checked where they enter psytest:
    a mapping of labels (made text) to real numbers, none NaN, +inf or above 0 (beyond
    :data:`LOGPROB_ROUNDING`); ``-inf`` is probability 0. Anything else (800, ``"abc"``, ``{}``, ``True``,
    an integer no float holds) raises :class:`MalformedReply` naming the label and the value, so the one
    request fails with that reason instead of the arithmetic on it failing the run."""
    import math
    from numbers import Real

    if not isinstance(raw, dict):
        raise MalformedReply(f"label log-probabilities must be a mapping of labels to numbers, got {type(raw).__name__}")
    checked = {}
    for label, value in raw.items():
        if value is None:  # a label left out
            continue
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        if not isinstance(value, Real) or isinstance(value, bool):
            raise MalformedReply(f"the log-probability of label {str(label)[:40]!r} is {shown}, not a number")
        try:
            number = float(value)
        except (OverflowError, ValueError, TypeError):
            number = math.nan
        if math.isnan(number) or number == math.inf:
            raise MalformedReply(f"the log-probability of label {str(label)[:40]!r} is {shown}, not a number at most 0")
        if number > LOGPROB_ROUNDING:
            raise MalformedReply(f"the log-probability of label {str(label)[:40]!r} is {shown}, above 0 (a "
                                 "log-probability is at most 0)")
        checked[clean_text(str(label))] = min(number, 0.0)
    return checked


def _clean_label(value: object) -> str | None:
    """A short label from a server (finish reason, model name, fingerprint) as text of at most 200
    characters, else None: it is untrusted and stored beside every answer."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = clean_text(str(value)).strip()
    return text[:200] or None


def _clean_count(value: object) -> int | None:
    """A token count as SQLite can store it (a non-negative 64-bit integer), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class ModelRequest:
    """One call to a model.

    Attributes
    ----------
    messages : the chat transcript sent to the model.
    choices : the answer labels shown to the model, in display order ("1".."5", "A".."E", or the
        option words); in ``probs`` mode the backend scores exactly these.
    mode : ``text`` (generate a reply) or ``probs`` (score the choices).
    temperature, seed : sampling settings; the seed is derived per request by the caller.
    max_tokens : generation limit in ``text`` mode.
    inventory : the id of the inventory whose items the prompt asks (None for any other prompt). Never
        sent to a model and not part of the request's identity; a simulated respondent keys the items
        as this inventory keys them (the same item text can be keyed differently elsewhere).
    """

    messages: tuple[Message, ...]
    choices: tuple[str, ...]
    mode: AnswerMode = "text"
    temperature: float = 0.0
    seed: int | None = None
    max_tokens: int = 16
    inventory: str | None = None


@dataclass
class ModelReply:
    """What came back. ``choice_logprobs`` maps each label to its log-probability; the labels' total
    probability may be below 1 when the model puts mass on other tokens (that share is recorded).

    What the server says about the reply is kept beside it: ``finish_reason`` (``stop``, ``length`` for a
    reply cut at ``max_tokens``, ...), ``served_model`` and ``system_fingerprint`` (the model that
    actually answered, which an endpoint may change under one name), ``cached_input_tokens`` (prompt
    tokens the provider served from its prompt cache) and ``cost`` (what the call cost, in the currency
    of the price map, when known)."""

    text: str | None = None
    choice_logprobs: dict[str, float] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    served_model: str | None = None
    system_fingerprint: str | None = None
    cached_input_tokens: int | None = None
    cost: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def cleaned(self) -> "ModelReply":
        """This reply made safe to store, whatever the backend: text without unpaired surrogates, token
        counts that fit SQLite (others dropped), label log-probabilities checked one by one
        (:func:`label_logprobs`) and as a distribution (:func:`check_label_logprobs`); an
        :class:`InvalidReplyError` when they are not. Changes it in place."""
        if isinstance(self.text, str):
            self.text = clean_text(self.text)
        elif self.text is not None:
            self.text = clean_text(str(self.text))
        self.input_tokens, self.output_tokens = _clean_count(self.input_tokens), _clean_count(self.output_tokens)
        self.cached_input_tokens = _clean_count(self.cached_input_tokens)
        self.finish_reason, self.served_model, self.system_fingerprint = (
            _clean_label(v) for v in (self.finish_reason, self.served_model, self.system_fingerprint))
        if self.cost is not None and (isinstance(self.cost, bool) or not isinstance(self.cost, (int, float))
                                      or not 0 <= self.cost < float("inf")):
            self.cost = None
        if self.choice_logprobs is not None:
            self.choice_logprobs = check_label_logprobs(label_logprobs(self.choice_logprobs)) or None
        top = self.extra.get("top_logprobs")
        if isinstance(top, list):
            self.extra["top_logprobs"] = [[clean_text(str(t)), lp] for t, lp in top]
        return self


class ModelBackend(ABC):
    """A model that answers :class:`ModelRequest` objects asynchronously."""

    #: The model string the user gave (e.g. ``sim/extraversion=1``); part of every request id.
    name: str
    #: Where the model is served (a URL without credentials), or None: recorded in the manifest, never
    #: part of request ids or the run's identity (an endpoint may move; the served model is what matters).
    endpoint: str | None = None
    #: How the endpoint was given (``--api-base``, ``OPENAI_BASE_URL``, a router file), or None.
    endpoint_source: str | None = None
    #: True when :meth:`complete` applies the run's timeout itself (HTTP backends time a request from
    #: when the server could start on it, :mod:`psychometrics.models.progress`); else the engine does.
    times_own_requests: bool = False

    @property
    def params(self) -> dict[str, Any]:
        """Backend settings that change answers; recorded in the run manifest and in request ids."""
        return {}

    def prepare(self, inventories: Sequence["Inventory"], persona_set: "PersonaSet | None" = None) -> None:
        """Called once before a run with the inventories (and persona set) to be administered
        (simulated respondents learn what they mean; other backends may warm up). Default: nothing."""

    def prepare_tasks(self, tasks: Sequence[Any]) -> None:
        """Called once before a behaviour run with its tasks (simulated respondents learn to recognise
        them). Default: nothing."""

    @abstractmethod
    async def complete(self, request: ModelRequest) -> ModelReply:
        """Answer one request."""

    async def aclose(self) -> None:
        """Release resources (connections, loaded weights)."""
