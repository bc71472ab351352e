"""A timeout that does not count time spent queued behind the run's own requests.

A server with fewer generation slots than the run's ``--concurrency`` queues the rest: at concurrency 8
on a one-slot server the eighth request waits for seven answers before its own generation starts. A
timeout counted from sending would fail it (and disconnecting makes the server throw away the work it
queued, and the retry joins the back of the queue again). So a request here times out only when it has
waited ``timeout_s`` since it was sent *and* since the server last finished one of this backend's
requests, whichever is later: while answers keep arriving the server is working through the queue, and
the request keeps its place; when nothing at all has finished for ``timeout_s``, the request being
generated has taken too long (or the server has stalled), and every waiting request gives up.

Connecting is timed separately (the backend's connect timeout): a server that accepts no connection
fails fast and counts towards the run's circuit breaker (:class:`psychometrics.engine.pool.Breaker`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, TypeVar

T = TypeVar("T")


class QueueTimeout(Exception):
    """No answer to this request, and none to any other of the backend's requests, for ``timeout_s``."""


class ProgressClock:
    """When a backend last received an answer; :meth:`run` times a request against it."""

    def __init__(self) -> None:
        self.last_answer = time.monotonic()

    def answered(self) -> None:
        """An answer arrived: the server is making progress."""
        self.last_answer = time.monotonic()

    async def run(self, call: Awaitable[T], timeout_s: float | None) -> T:
        """``await call``, cancelled with :class:`QueueTimeout` once ``timeout_s`` has passed since it
        started and since the last answer (:meth:`answered`); no limit when ``timeout_s`` is None."""
        if not timeout_s:
            return await call
        task = asyncio.ensure_future(call)
        started = time.monotonic()
        try:
            while True:
                remaining = max(started, self.last_answer) + timeout_s - time.monotonic()
                if remaining <= 0:
                    raise QueueTimeout(f"no answer within {timeout_s:g} s, and no other request answered meanwhile")
                done, _ = await asyncio.wait({task}, timeout=remaining)
                if done:
                    return task.result()
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - the cancelled call's own ending is of no interest
                    pass
