"""A timeout that does not count time spent queued behind the run's own requests.

A server with fewer generation slots than the run's ``--concurrency`` queues the rest: at concurrency 8
on a one-slot server the eighth request waits for seven answers before its own generation starts. A
timeout counted from sending would fail it (and disconnecting makes the server throw away the work it
queued, and the retry joins the back of the queue again). So the clock of a request starts when it is
sent, and starts again whenever one of this backend's requests is answered or given up: while answers
keep arriving the server is working through the queue, and the request keeps its place. When nothing has
happened for ``timeout_s``, only the *oldest* waiting request is given up (on a queueing server the one
being generated, which took too long), and that restarts the others' clocks. A stalled server so loses
one request per ``timeout_s``, not all of them at once; a request waits at most about (requests ahead of
it + 1) x ``timeout_s``.

Connecting is timed separately (the backend's connect timeout): a server that accepts no connection
fails fast and counts towards the run's circuit breaker (:class:`psychometrics.engine.pool.Breaker`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Awaitable, TypeVar

T = TypeVar("T")


class QueueTimeout(Exception):
    """The oldest waiting request, with no answer (to it or any other request) for ``timeout_s``."""


class ProgressClock:
    """When a backend last saw progress (an answer, or a request given up) and which requests are
    waiting, oldest first; :meth:`run` times a request against it."""

    def __init__(self) -> None:
        self.last_event = time.monotonic()
        self._waiting: dict[int, float] = {}  # ticket -> start, in start order
        self._tickets = itertools.count()
        self._changed: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def answered(self) -> None:
        """An answer arrived: the server is making progress."""
        self._event()

    def _event(self) -> None:
        self.last_event = time.monotonic()
        self._wake()

    def _wake(self) -> None:
        """Let waiting requests look again (progress, or the oldest left)."""
        if self._changed is not None:
            self._changed[1].set()
            self._changed = None

    def _change(self) -> asyncio.Event:
        """The event the next change sets, made in the running loop (events belong to one loop)."""
        loop = asyncio.get_running_loop()
        if self._changed is None or self._changed[0] is not loop:
            self._changed = (loop, asyncio.Event())
        return self._changed[1]

    async def run(self, call: Awaitable[T], timeout_s: float | None) -> T:
        """``await call``, cancelled with :class:`QueueTimeout` once this request is the oldest waiting
        and ``timeout_s`` has passed since it started and since the last progress; no limit when
        ``timeout_s`` is None."""
        if not timeout_s:
            return await call
        task = asyncio.ensure_future(call)
        ticket = next(self._tickets)
        started = time.monotonic()
        self._waiting[ticket] = started
        try:
            while True:
                remaining = max(started, self.last_event) + timeout_s - time.monotonic()
                if remaining <= 0 and next(iter(self._waiting)) == ticket:
                    del self._waiting[ticket]
                    self._event()  # the next oldest starts its timeout_s afresh
                    raise QueueTimeout(f"no answer within {timeout_s:g} s of the last progress")
                changed = asyncio.ensure_future(self._change().wait())
                try:
                    # past its time but not the oldest: wait for an event (the oldest ending), then look again
                    done, _ = await asyncio.wait({task, changed}, timeout=remaining if remaining > 0 else None,
                                                 return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                if task in done:
                    return task.result()
        finally:
            if self._waiting.pop(ticket, None) is not None:
                self._wake()  # if it was the oldest, the next one is now
            if not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - the cancelled call's own ending is of no interest
                    pass
            elif not task.cancelled():
                task.exception()  # looked at: a call that ended as this one was cancelled is not a lost error
