"""Waiting in tests for events, not for the clock.

A test that needs something to have happened (answers committed, a process gone, a server listening)
polls for that event and goes on the moment it happens, however slow the machine. The only time
limit is a hang guard, :data:`HANG_GUARD_S`: far beyond what a loaded machine needs, so it is reached
only when the event can never happen, and then the test fails saying that it hung, not that it was
slow. Subprocesses the tests start get the same guard as their ``timeout``.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

#: Seconds after which a wait (or a subprocess) counts as hung. Not a deadline: nothing in the suite
#: comes near it on a loaded machine; only a wait for an event that will never come reaches it.
HANG_GUARD_S = 1200.0


class HangGuardError(AssertionError):
    """A wait reached the hang guard: the event it waited for never happened."""


def _hung(what: str, guard_s: float) -> HangGuardError:
    return HangGuardError(f"hang guard: {what} did not happen in {guard_s:.0f} s (a limit only a hung test "
                          "reaches: what it waits for can no longer happen)")


def wait_for(event: Callable[[], T], what: str, *, poll_s: float = 0.02, guard_s: float = HANG_GUARD_S) -> T:
    """Call ``event`` every ``poll_s`` seconds until it returns something truthy, and return that.

    ``event`` may raise (an assertion that the thing waited on is still alive, say) to end the wait at
    once. ``what`` names the event for the hang guard's message."""
    started = time.monotonic()
    while True:
        result = event()
        if result:
            return result
        if time.monotonic() - started > guard_s:
            raise _hung(what, guard_s)
        time.sleep(poll_s)


async def wait_for_async(event: Callable[[], T], what: str, *, poll_s: float = 0.01,
                         guard_s: float = HANG_GUARD_S) -> T:
    """:func:`wait_for` inside an event loop: polls without blocking the loop's other tasks."""
    import asyncio

    started = time.monotonic()
    while True:
        result = event()
        if result:
            return result
        if time.monotonic() - started > guard_s:
            raise _hung(what, guard_s)
        await asyncio.sleep(poll_s)
