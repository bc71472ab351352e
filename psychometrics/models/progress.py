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

One timer per clock watches the oldest waiting request; an answer only moves ``last_event`` (nothing
wakes), and a request is awaited in its caller's task (no task, event or ``asyncio.wait`` of its own), so
the clock costs O(1) per request however many are in flight (at 256 in flight, waking every waiter on
each answer had made it a fifth of the client's CPU).

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


class _Waiting:
    """A request being timed: when it started, its limit, the task awaiting it, whether the clock gave it up."""

    __slots__ = ("started", "timeout_s", "task", "given_up", "cancelling")

    def __init__(self, started: float, timeout_s: float, task: asyncio.Task):
        self.started, self.timeout_s, self.task, self.given_up = started, timeout_s, task, False
        self.cancelling = 0  # the task's pending cancellations before the clock gave it up


class ProgressClock:
    """When a backend last saw progress (an answer, or a request given up) and which requests are
    waiting, oldest first; :meth:`run` times a request against it."""

    def __init__(self) -> None:
        self.last_event = time.monotonic()
        self._waiting: dict[int, _Waiting] = {}  # ticket -> request, in start order
        self._tickets = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._suspect: int | None = None  # the ticket found past its time once (given up if still so after a grace)

    def answered(self) -> None:
        """An answer arrived: the server is making progress (the timer, when it fires, sees it)."""
        self.last_event = time.monotonic()

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Look again at ``deadline`` (monotonic seconds) in ``loop``."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer_loop = loop
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), self._look)

    def _look(self) -> None:
        """The timer: decide after the callbacks already waiting (answers read from sockets in this same
        turn of the loop, a late timer on a loaded machine, are counted first)."""
        self._timer = None
        assert self._timer_loop is not None  # armed before it can fire
        self._timer_loop.call_soon(self._check)

    def _check(self) -> None:
        """Give up the oldest waiting request once its time has passed since it started and since the last
        progress (which restarts the others' clocks), seen twice a short grace apart (what arrived in
        between is counted: a loop that was held up by the machine has answers to read before it judges);
        then watch the next deadline."""
        if self._timer is not None:
            return  # re-armed meanwhile (a request of another loop)
        now = time.monotonic()
        loop = self._timer_loop
        assert loop is not None  # a check is only ever scheduled by an armed timer
        while self._waiting:
            ticket, oldest = next(iter(self._waiting.items()))
            deadline = max(oldest.started, self.last_event) + oldest.timeout_s
            if deadline > now:
                self._suspect = None
                self._arm(loop, deadline)
                return
            if self._suspect != ticket:  # past its time: look once more after a grace
                self._suspect = ticket
                self._arm(loop, now + min(0.1, max(0.01, oldest.timeout_s / 20)))
                return
            self._suspect = None
            del self._waiting[ticket]
            self.last_event = now  # the next oldest starts its timeout_s afresh
            if oldest.task.get_loop() is self._timer_loop and not oldest.task.done():
                oldest.given_up, oldest.cancelling = True, oldest.task.cancelling()
                oldest.task.cancel()

    async def run(self, call: Awaitable[T], timeout_s: float | None) -> T:
        """``await call``, cancelled with :class:`QueueTimeout` once this request is the oldest waiting
        and ``timeout_s`` has passed since it started and since the last progress; no limit when
        ``timeout_s`` is None."""
        if not timeout_s:
            return await call
        task = asyncio.current_task()
        assert task is not None  # awaited inside a task
        loop = task.get_loop()
        ticket = next(self._tickets)
        waiting = _Waiting(time.monotonic(), timeout_s, task)
        first = not self._waiting
        self._waiting[ticket] = waiting
        if first or self._timer is None or self._timer_loop is not loop:
            self._arm(loop, max(waiting.started, self.last_event) + timeout_s if first
                       else time.monotonic())  # a timer of another loop never fires: look now
        try:
            reply = await call
        except BaseException as exc:
            if not waiting.given_up:
                raise
            task.uncancel()  # the clock's cancel, taken back: this call ends as a QueueTimeout
            if isinstance(exc, asyncio.CancelledError) and task.cancelling() > waiting.cancelling:
                raise  # cancelled by someone else as well (the run is being stopped)
            raise QueueTimeout(f"no answer within {timeout_s:g} s of the last progress") from None
        finally:
            self._waiting.pop(ticket, None)
        if waiting.given_up:  # the call swallowed the clock's cancel and answered: keep the answer
            task.uncancel()
        return reply
