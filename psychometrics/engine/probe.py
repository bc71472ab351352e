"""Capability probing: one request before a run that needs what not every server gives.

A probability-mode run needs the option labels' log-probabilities, and servers that lack them say so in
different ways: an error that names them (HTTP 400 from most providers; HTTP 500 "logprobs is not
supported ..." from llama.cpp's server started without ``logits_all``, which a client would otherwise
retry as an outage), or a reply without them. Without a probe every request of the run finds out on its
own, after its retries. :func:`probe_logprobs` sends the run's first pending probability request once,
without retries, and stops the run with one line when log-probabilities are missing. Otherwise the probe
is the run's first send of that request: :class:`Prefetched` hands its reply, or the error it ended
with (a bad reply, a refused key), to the run when the run sends that request, so nothing is paid twice
and the run records it as it records every request. After a transient failure (an outage, a timeout, a
rate limit) the run sends the request again as a retry would: after the backoff or the server's
Retry-After, counted in the run's retries.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import replace
from typing import Awaitable, Callable

from psychometrics.engine.pool import RetryPolicy, RunStats, call_with_retries
from psychometrics.errors import PsytestError
from psychometrics.models.base import InvalidReplyError, ModelBackend, ModelReply, ModelRequest, TransientModelError

__all__ = ["LOGPROB_WORDS", "MISSING_WORDS", "Prefetched", "names_missing_logprobs", "probe_before_run",
           "probe_logprobs"]

#: How servers name log-probabilities in an error ("logprobs", "top_logprobs", "log-probabilities", ...).
LOGPROB_WORDS = re.compile(r"log[-_ ]?prob", re.IGNORECASE)
#: How they say a feature is missing ("is not supported", "unsupported parameter", "does not support",
#: "gives no log-probabilities", "not enabled", ...); with :data:`LOGPROB_WORDS`, a missing capability.
MISSING_WORDS = re.compile(r"\b(not|un)[- ]?supported\b|\bdo(es)?(n't| not) support|\bno log[-_ ]?prob|"
                           r"\bnot (enabled|available|allowed)\b|\bdisabled\b", re.IGNORECASE)


def names_missing_logprobs(message: str) -> bool:
    """Whether an error message says log-probabilities are not available (not that a value was bad)."""
    return bool(LOGPROB_WORDS.search(message)) and bool(MISSING_WORDS.search(message))
REASON_CHARS = 300


def _no_logprobs(backend: ModelBackend, reason: str) -> PsytestError:
    reason = " ".join(reason.split())
    reason = reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 3] + "..."
    return PsytestError(f"--mode: {backend.name} gives no log-probabilities ({reason}), so the options "
                        "cannot be scored; use --mode text for this model or server")


async def probe_logprobs(backend: ModelBackend, request: ModelRequest, *,
                         timeout_s: float | None) -> ModelReply | Exception:
    """Send ``request`` (a ``probs`` request) once. Raises :class:`PsytestError` when the server does not
    give log-probabilities (an error that says so, or a reply without any). Otherwise returns the reply
    (made safe to store) or the error the request ended with (a timeout as a transient one)."""
    try:
        answer = backend.complete(request)
        reply = await (asyncio.wait_for(answer, timeout_s) if timeout_s else answer)
        reply = reply.cleaned()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - only a missing capability is the probe's to report
        # llama.cpp says it with HTTP 500, which is otherwise an outage: the words decide, not the status
        if not isinstance(exc, InvalidReplyError) and names_missing_logprobs(str(exc)):
            raise _no_logprobs(backend, str(exc)) from None
        if isinstance(exc, asyncio.TimeoutError):
            return TransientModelError(f"no answer within {timeout_s:g} s", timed_out=True)
        return exc  # a bad reply (a log-probability above 0, ...), a refused key, an outage: for the run
    if not reply.choice_logprobs:
        raise _no_logprobs(backend, "its reply to a request for them had none")
    return reply


class Prefetched:
    """Outcomes already received for requests a run will send (a probe's reply, or the error it ended
    with): :meth:`wrap` makes a call that gives each such request's outcome once from here instead of
    sending it."""

    def __init__(self, retry: RetryPolicy | None = None, backend: ModelBackend | None = None,
                 timeout_s: float | None = None) -> None:
        self._replies: list[tuple[ModelRequest, ModelReply | Exception]] = []
        self.retry = retry or RetryPolicy()
        self.backend, self.timeout_s = backend, timeout_s
        self._stats = RunStats()  # the retries after a transient probe
        #: probes that failed transiently and whose request the run sent again: each counts as a retry
        self.retried = 0
        self.timeouts_retried = 0

    def add(self, request: ModelRequest, outcome: ModelReply | Exception) -> None:
        self._replies.append((request, outcome))

    def __len__(self) -> int:
        return len(self._replies)

    def wrap(self, call: Callable[[ModelRequest], Awaitable[ModelReply]]) -> Callable[[ModelRequest], Awaitable[ModelReply]]:
        if not self._replies:
            return call

        async def answered_first(request: ModelRequest) -> ModelReply:
            for index, (known, outcome) in enumerate(self._replies):
                if known == request:
                    del self._replies[index]
                    if (isinstance(outcome, TransientModelError) and self.retry.max_retries > 0
                            and self.backend is not None
                            and (outcome.retry_after or 0.0) <= self.retry.max_retry_after_s):
                        # the probe was the first try: wait as a retry would, then the tries left
                        jitter = random.Random()
                        await asyncio.sleep(self.retry.wait(0, outcome.retry_after, jitter))
                        self.retried += 1
                        self.timeouts_retried += bool(outcome.timed_out)
                        fewer = replace(self.retry, max_retries=self.retry.max_retries - 1)
                        return await call_with_retries(self.backend, request, timeout_s=self.timeout_s, retry=fewer,
                                                       stats=self._stats, jitter=jitter)
                    if isinstance(outcome, Exception):
                        raise outcome
                    return outcome
            return await call(request)

        return answered_first

    def count_into(self, stats) -> None:
        """Add the probe's retries to the run's statistics (:class:`~psychometrics.engine.pool.RunStats`)."""
        stats.retries += self.retried + self._stats.retries
        stats.timeouts_retried += self.timeouts_retried + self._stats.timeouts_retried


def probe_before_run(backend: ModelBackend, requests, timeout_s: float | None,
                     answered: set[str] | None = None, retry: RetryPolicy | None = None) -> Prefetched:
    """Probe with the first ``probs`` request of ``requests`` (pairs of request id and
    :class:`ModelRequest`, in plan order) not in ``answered``, before anything of the run is written, so
    that a refused run leaves no directory to be told apart from the next try. Returns the probe's
    reply as a :class:`Prefetched` for the run (empty when there was nothing to probe)."""
    prefetched = Prefetched(retry, backend, timeout_s)
    answered = answered or set()
    first = next((request for request_id, request in requests
                  if request.mode == "probs" and request_id not in answered), None)
    if first is None:
        return prefetched

    async def probe() -> ModelReply | Exception:
        try:
            return await probe_logprobs(backend, first, timeout_s=timeout_s)
        finally:
            await backend.aclose()  # inside the loop: HTTP clients are bound to it

    prefetched.add(first, asyncio.run(probe()))
    return prefetched
