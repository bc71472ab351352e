"""The send engine: every unit of a plan sent at most once, each result committed before the next is awaited.

One engine sends questionnaire requests (``administer``), behaviour conversations (``behave``) and the
re-sent requests of ``reproduce --rerun``. What differs is handed to it:

* a *unit* is one thing to send, named by its ``request_id`` (a planned request, a planned conversation);
* a *work* (:class:`Work`) does one unit: it talks to the model through the ``call`` it is given and
  returns the unit's rows (a failure is rows saying why, never an exception);
* a *sink* (:class:`Sink`) is where results go: the run store, the behaviour store, or a comparison.

The engine owns the rest. Units the sink has answered are skipped before anything is sent; earlier
failures are sent again, their attempts counted on (``failed_attempts``). A fixed pool of ``concurrency``
workers shares one iterator over the rest, so memory stays flat for millions of units. A worker claims
a unit in the store before sending it (:mod:`psychometrics.engine.claims`), so two processes on one run
directory share the plan instead of both paying for it: units another process has claimed (or answered,
or failed, since this run started) are skipped and counted in ``claimed_elsewhere``. A unit's rows are
committed, and the worker's next unit claimed, in one transaction (``write_and_claim``) before the worker
goes on: an interrupted run loses at most the units in flight, and resuming sends only those. Claims and
commits that arrive together share one transaction (:class:`TurnBatch`). A sink that says so
(``commits_in_thread``: the run store) is written by a thread of its own (:class:`StoreThread`), so the
event loop keeps sending while SQLite commits (and, on a disk, checkpoints): what arrives while one
transaction commits goes into the next, and a worker still goes on only once its answer is committed.

Transient failures (rate limits, overload, timeouts, dropped connections) are retried with exponential
backoff and jitter, waiting at least as long as the server's Retry-After asks (:func:`call_with_retries`).
A timed-out request was probably received, so its retry may be billed twice; such retries are counted
(``timeouts_retried``). Every reply is made safe to store on arrival (:meth:`ModelReply.cleaned`).

A circuit breaker (:class:`Breaker`) stops the run when the endpoint, not the request, is at fault:
a few refusals every request would get in a row (rejected key, unknown model, a URL without ``/v1``,
an unsupported parameter), a few connections in a row that could not be made (nothing listening), or
the first few requests of a run all failing the same permanent way. No new request is sent after it
trips; requests already in flight finish and are committed (a paid answer is never thrown away), and
:func:`send_all` raises the breaker's one line (:class:`EndpointStopped` or :class:`EndpointDown`).
Everything committed stays; the same command resumes the run.
"""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Protocol

from psychometrics.engine.claims import CLAIMED
from psychometrics.errors import EndpointDown, EndpointStopped, PsytestError
from psychometrics.models.base import (
    EndpointRefused, ModelBackend, ModelReply, ModelRequest, TransientModelError, clean_text,
)


class Breaker:
    """When to stop sending: the endpoint, not one request, is at fault.

    * ``refusals`` :class:`~psychometrics.models.base.EndpointRefused` failures in a row (no answer between):
      every request would be refused the same way (key, model name, URL, unsupported parameter);
    * ``unreachable`` attempts in a row whose connection could not be made: nothing is listening. If the
      endpoint has answered in this run, the failures must also have lasted ``grace_s`` (a server
      restarting for a few seconds does not stop a long run);
    * ``stalls`` timed-out attempts in a row (no answer between; with the same ``grace_s`` once it has
      answered): the server has stopped answering, or ``--timeout`` is shorter than any answer takes. An
      HTTP backend gives up one waiting request per ``--timeout`` when nothing progresses
      (:mod:`psychometrics.models.progress`), so this is ``stalls`` x ``--timeout`` of silence;
    * ``first_failures`` permanent failures (not transient ones that ran out of retries) before the run's
      first answer: whatever the reason, a run whose first requests are all refused is not worth sending.

    Counts are over all workers, so at concurrency ``c`` at most about ``c`` requests are sent after the
    endpoint went wrong. :attr:`stopped` is the exception :func:`send_all` raises."""

    def __init__(self, refusals: int = 3, unreachable: int = 3, first_failures: int = 5, grace_s: float = 60.0,
                 stalls: int = 3):
        self.limits = (refusals, unreachable, first_failures, stalls)
        self.grace_s = grace_s
        self.answered_any = False
        self.refused = self.unreachable = self.failed = self.stalled = 0
        self.unreachable_since: float | None = None
        self.stalled_since: float | None = None
        self.stopped: PsytestError | None = None
        self._tripped: asyncio.Event | None = None
        self._in_flight: set[asyncio.Task] = set()  # tasks awaiting a call (race)
        self._cancelled: set[asyncio.Task] = set()  # those the breaker cancelled

    @property
    def tripped(self) -> asyncio.Event:
        if self._tripped is None:
            self._tripped = asyncio.Event()
        return self._tripped

    def answer(self) -> None:
        """A reply arrived: the endpoint works."""
        self.answered_any = True
        self.refused = self.unreachable = self.failed = self.stalled = 0
        self.unreachable_since = self.stalled_since = None

    def attempt_failed(self, exc: BaseException) -> None:
        """A transient failure of one attempt (to be retried): counts when no connection was made, or
        when no answer came in time."""
        if getattr(exc, "timed_out", False):
            now = time.monotonic()
            self.stalled += 1
            self.stalled_since = self.stalled_since or now
            if self.stalled >= self.limits[3] and (not self.answered_any or now - self.stalled_since >= self.grace_s):
                self._trip(EndpointDown(f"{exc}; stopped after {self.stalled} requests in a row timed out with no "
                                        "answer between: the server has stopped answering, or --timeout is shorter "
                                        "than one answer takes; check the server or raise --timeout, then re-run "
                                        "the same command to resume"))
            return
        if not getattr(exc, "unreachable", False):
            return
        now = time.monotonic()
        self.unreachable += 1
        self.unreachable_since = self.unreachable_since or now
        lasted = now - self.unreachable_since
        if self.unreachable >= self.limits[1] and (not self.answered_any or lasted >= self.grace_s):
            self._trip(EndpointDown(f"{exc}; stopped after {self.unreachable} failed connections in a row: start the "
                                    "server or correct --api-base, then re-run the same command to resume"))

    def request_failed(self, exc: BaseException) -> None:
        """A request failed for good (after its retries, or at once for a refusal)."""
        if isinstance(exc, EndpointRefused):
            self.refused += 1
            if self.refused >= self.limits[0]:
                self._trip(EndpointStopped(f"{exc} (stopped after {self.refused} requests refused alike; fix that, "
                                           "then re-run the same command to resume)"))
            return
        if isinstance(exc, TransientModelError):
            return  # overload or rate limits are no fault of the endpoint's set-up; no connection: counted per attempt
        if not self.answered_any:
            self.failed += 1
            if self.failed >= self.limits[2]:
                self._trip(EndpointStopped(f"the first {self.failed} requests all failed; the last: {failure_reason(exc)}; "
                                           "fix that, then re-run the same command to resume"))

    def _trip(self, error: PsytestError) -> None:
        if self.stopped is None:
            self.stopped = error
            self.tripped.set()
            if isinstance(error, EndpointDown) and self._in_flight:  # nothing will answer those in flight: end them
                for task in self._in_flight - {asyncio.current_task()}:
                    self._cancelled.add(task)
                    task.cancel()

    async def race(self, call: Awaitable[ModelReply]) -> ModelReply:
        """``await call`` in the caller's task, unless the breaker trips because the endpoint is down (nothing
        answers, or it has stalled): then the call is cancelled and the breaker's error raised, instead of
        each request in flight waiting out its own timeout. A refusal does not cancel calls in flight (they
        end at once, and an answer among them is kept). The call is not made a task of its own: a router
        picks a deployment as the call starts, in the order the workers ask."""
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            return await call
        except asyncio.CancelledError:
            if task not in self._cancelled:
                raise
            self._cancelled.discard(task)
            task.uncancel()
            raise self.stopped from None  # type: ignore[misc]
        finally:
            self._in_flight.discard(task)

    def check(self) -> None:
        """Raise the breaker's error if it has tripped (before an attempt: nothing more is sent)."""
        if self.stopped is not None:
            raise self.stopped

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a retry's backoff), or until the breaker trips; then :meth:`check`."""
        if self.stopped is None:
            try:
                await asyncio.wait_for(self.tripped.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        self.check()


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient failures: ``max_retries`` more tries. Our own backoff waits ``base_s * 2**k``
    (with jitter, at most ``cap_s``); a server's Retry-After is waited in full, however long, up to
    ``max_retry_after_s``: a longer one ends the request as failed (retried on the next run), never sooner."""

    max_retries: int = 5
    base_s: float = 1.0
    cap_s: float = 120.0
    max_retry_after_s: float = 3600.0

    def wait(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = min(self.cap_s, self.base_s * 2 ** min(retry, 64)) * (0.5 + rng.random() / 2)
        return backoff if retry_after is None else max(retry_after, backoff)


@dataclass
class RunStats:
    planned: int = 0
    already_answered: int = 0
    sent: int = 0
    failed: int = 0
    retries: int = 0
    timeouts_retried: int = 0  # retries after a timeout: the server probably got the first send (billed twice?)
    reasks: int = 0
    reasks_failed: int = 0  # re-asks that failed after retries (the reply before each is kept)
    first_error: str | None = None  # the reason of this run's first failed unit
    cut_off: int = 0  # units whose reply was cut off at max_tokens and so not read (outcome or flag truncated)
    claimed_elsewhere: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    items_answered: int = 0

    @property
    def per_second(self) -> float:
        """Items answered per second of wall time in this run."""
        return self.items_answered / self.elapsed_s if self.elapsed_s > 0 else 0.0


def failure_reason(error: BaseException) -> str:
    """``Type: message``, storable (no unpaired surrogates), at most 2000 characters."""
    return clean_text(f"{type(error).__name__}: {error}".strip().rstrip(":"))[:2000]


async def call_with_retries(
    backend: ModelBackend, request: ModelRequest, *, timeout_s: float | None, retry: RetryPolicy, stats: RunStats,
    jitter: random.Random, breaker: Breaker | None = None,
) -> ModelReply:
    """One model call, retrying transient failures (:class:`RetryPolicy`); the reply made safe to store.

    ``timeout_s`` is applied here unless the backend times its own requests (HTTP backends count from
    when the server could start on a request, :mod:`psychometrics.models.progress`). ``breaker`` sees
    every reply and failure, and once it has tripped no further attempt is made (its error is raised).
    Counts retries in ``stats.retries``, and those after a timeout also in ``stats.timeouts_retried``."""
    breaker = breaker or Breaker()
    for attempt in range(retry.max_retries + 1):
        breaker.check()
        try:
            if timeout_s and not backend.times_own_requests:
                reply = await breaker.race(asyncio.wait_for(backend.complete(request), timeout_s))
            else:
                reply = await breaker.race(backend.complete(request))
            breaker.answer()
            return reply.cleaned()
        except (TransientModelError, asyncio.TimeoutError) as exc:
            if not isinstance(exc, TransientModelError):
                exc = TransientModelError(f"no answer within {timeout_s:g} s", timed_out=True)
            breaker.attempt_failed(exc)
            if attempt == retry.max_retries:
                breaker.request_failed(exc)
                raise exc from None
            if exc.retry_after is not None and exc.retry_after > retry.max_retry_after_s:
                raise TransientModelError(
                    f"{exc}; the server asks to wait {exc.retry_after:g} s, longer than the "
                    f"{retry.max_retry_after_s:g} s psytest waits: re-run later"
                ) from None
            breaker.check()
            stats.retries += 1
            stats.timeouts_retried += bool(exc.timed_out)
            await breaker.sleep(retry.wait(attempt, exc.retry_after, jitter))
        except Exception as exc:  # a permanent failure of this request (a refusal counts towards stopping)
            breaker.request_failed(exc)
            raise
    raise AssertionError("unreachable")


class StoreThread:
    """The one thread that does a sink's SQLite work during a run: its commits and claims (through
    :class:`TurnBatch`), claim renewals and releases. One thread, so the connection is used by one thread
    at a time and in the order the work was handed over; :meth:`close` waits for what was handed over."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="psytest-store")

    def submit(self, function: Callable, *args):
        """Start ``function(*args)`` in the thread; a :class:`concurrent.futures.Future` of its result."""
        return self._executor.submit(function, *args)

    async def run(self, function: Callable, *args):
        """``function(*args)`` in the thread, awaited."""
        return await asyncio.wrap_future(self.submit(function, *args))

    def close(self) -> None:
        """Wait for everything handed over (a commit in progress is finished, never cut), then end the thread."""
        self._executor.shutdown(wait=True)


class TurnBatch:
    """Calls ``many(items)`` with every item submitted during one turn of the event loop: the answers (or
    claims) of all workers that got there together go into one SQLite transaction, one commit instead of
    one each, which at hundreds of answers a second is most of the time the loop would spend in SQLite.
    Each caller waits for its own result, so a worker's answer is committed before it takes another
    unit. If the batch fails, each item is tried again on its own, so one bad item fails only its own
    caller.

    With ``thread`` (a :class:`StoreThread`), ``many`` runs there: the loop goes on sending while a batch
    commits, and what arrives meanwhile is the next batch (group commit: the busier the run, the larger
    the batches); each caller is answered once its batch has committed."""

    def __init__(self, many: Callable[[list], list], thread: StoreThread | None = None):
        self.many = many
        self.thread = thread
        self._pending: list[tuple[object, asyncio.Future]] = []
        self._busy = False  # a batch is in the thread

    async def __call__(self, item):
        loop = asyncio.get_running_loop()
        result = loop.create_future()
        self._pending.append((item, result))
        if len(self._pending) == 1 and not self._busy:
            loop.call_soon(self._flush)  # after the callbacks already ready: the items of this turn
        return await result

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        items = [item for item, _ in batch]
        if self.thread is None:
            self._settle_all(batch, self._outcomes(items))
            return
        self._busy = True
        loop = asyncio.get_running_loop()
        done = self.thread.submit(self._outcomes, items)
        done.add_done_callback(lambda _: loop.call_soon_threadsafe(self._committed, batch, done))

    def _committed(self, batch: list, done) -> None:
        """Back in the loop: answer the callers of a batch the thread has done; hand over the next."""
        self._busy = False
        try:
            outcomes = done.result()
        except BaseException as exc:  # noqa: BLE001 - the thread itself failed: every caller sees it
            outcomes = [(None, exc)] * len(batch)
        self._settle_all(batch, outcomes)
        if self._pending:
            self._flush()  # what arrived while that batch committed

    def _outcomes(self, items: list) -> list[tuple[object, BaseException | None]]:
        """(result, None) or (None, error) for each item: the batch at once, else (it failed) one by one."""
        try:
            return [(value, None) for value in self.many(items)]
        except Exception as exc:  # noqa: BLE001 - one item at a time: only the bad one fails
            if len(items) == 1:
                return [(None, exc)]
            outcomes: list[tuple[object, BaseException | None]] = []
            for item in items:
                try:
                    outcomes.append((self.many([item])[0], None))
                except Exception as one:  # noqa: BLE001 - handed to the caller of that item
                    outcomes.append((None, one))
            return outcomes
        except BaseException as exc:  # noqa: BLE001 - an interrupt: every waiting caller sees it
            return [(None, exc)] * len(items)

    @staticmethod
    def _settle_all(batch: list, outcomes: list) -> None:
        for (_, result), (value, error) in zip(batch, outcomes):
            _settle(result, value, error)


def _settle(future: asyncio.Future, value=None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


@dataclass
class Result:
    """What one unit produced: its ``rows`` (each with ``outcome`` and ``error``, None when answered; the
    sink stores them and ``on_answer`` receives them) and ``extra``, stored with them (a request's prompt)."""

    rows: list
    extra: Any = None


Call = Callable[[ModelRequest], Awaitable[ModelReply]]


class Work(Protocol):
    """How to do one unit: ``await work(unit, attempts, call, stats)``. ``attempts`` counts this try
    (earlier failed tries plus one); ``call`` sends one model request with retries; ``stats`` is the run's,
    for counts only the work knows (re-asks). A failure comes back as rows saying why, never raised."""

    def __call__(self, unit: Any, attempts: int, call: Call, stats: RunStats) -> Awaitable[Result]: ...


class Sink(Protocol):
    """Where the engine commits results (:class:`~psychometrics.run.store.RunStore`,
    :class:`~psychometrics.behavior.store.BehaviorStore`, or a sink that only compares)."""

    def answered_ids(self) -> set[str]:
        """Units answered already (never sent again)."""

    def failed_attempts(self) -> dict[str, int]:
        """Attempts so far of every unit stored as a failure."""

    def claims(self, *, since: float | None = None, lease_s: float | None = None):
        """Claims of this run (:class:`~psychometrics.engine.claims.Claims`, or :class:`Unshared`)."""

    #: True when ``write_and_claim`` and the claims may run in a thread of their own (:class:`StoreThread`):
    #: nothing else uses the sink's connection while the engine runs. Read with ``getattr`` (default False).
    commits_in_thread: bool

    def write_and_claim(self, items: list[tuple[list, Any, str | None]], claims) -> list[str | None]:
        """Commit each (rows, extra, next unit id) and claim each next unit, in one transaction; the
        claims' statuses (None where there is no next unit). Rows that cannot be stored are stored as a
        failure saying why, and changed in place to match."""


class Unshared:
    """Claims for a sink no other process works on (a comparison): every unit is this run's to send."""

    def claim_many(self, request_ids: list[str]) -> list[str]:
        return [CLAIMED] * len(request_ids)

    def claim_in_transaction(self, request_id: str) -> str:
        return CLAIMED

    def release(self, request_id: str) -> None:
        pass

    @asynccontextmanager
    async def keep_alive(self, run=None) -> AsyncIterator["Unshared"]:
        yield self


def pending(units: Iterable, sink: Sink) -> tuple[list, int]:
    """The units not yet answered (each id once, first of each kept), and how many were already answered."""
    answered = sink.answered_ids()
    todo: dict[str, Any] = {}
    done = 0
    for unit in units:
        if unit.request_id in answered:
            done += 1
        else:
            todo.setdefault(unit.request_id, unit)
    return list(todo.values()), done


async def send_all(
    units: list,
    sink: Sink,
    work: Work,
    *,
    backend: ModelBackend,
    concurrency: int = 4,
    timeout_s: float | None = None,
    retry: RetryPolicy = RetryPolicy(),
    on_answer: Callable[[list], None] | None = None,
    lease_s: float | None = None,
) -> RunStats:
    """Send every unit of ``units`` that ``sink`` has not answered and no other process has claimed, with
    ``work`` and at most ``concurrency`` at once; commit each result to ``sink`` as it arrives, then call
    ``on_answer(rows)``. ``lease_s``: how long a claim of this run outlives it if it dies on another host
    (a dead process on this host frees its claims at once). Cancelling it cancels the units in flight
    (their claims are released; nothing of theirs is stored)."""
    claims = sink.claims(since=time.time(), lease_s=lease_s)
    todo, done = pending(units, sink)
    tried = sink.failed_attempts()  # attempts of earlier failures, counted on in this run
    stats = RunStats(planned=len(units), already_answered=done)
    queue = iter(todo)
    started = time.perf_counter()
    jitter = random.Random()
    breaker = Breaker()

    async def call(request: ModelRequest) -> ModelReply:
        return await call_with_retries(backend, request, timeout_s=timeout_s, retry=retry, stats=stats, jitter=jitter,
                                       breaker=breaker)

    thread = StoreThread() if getattr(sink, "commits_in_thread", False) else None
    claim = TurnBatch(claims.claim_many, thread)
    commit = TurnBatch(lambda batch: sink.write_and_claim(batch, claims), thread)

    async def in_store_thread(function: Callable, *args):
        return function(*args) if thread is None else await thread.run(function, *args)

    async def worker() -> None:
        unit = next(queue, None)  # a shared iterator: each unit goes to exactly one worker
        status = await claim(unit.request_id) if unit is not None else None
        while unit is not None:
            if breaker.stopped is not None:  # nothing more is sent; this claimed, unsent unit is freed
                if status == CLAIMED:
                    await in_store_thread(claims.release, unit.request_id)
                return
            if status != CLAIMED:
                stats.claimed_elsewhere += 1
                unit = next(queue, None)
                status = await claim(unit.request_id) if unit is not None else None
                continue
            result = await work(unit, tried.get(unit.request_id, 0) + 1, call, stats)
            following = next(queue, None)
            # this result committed, and the next unit claimed, in one transaction before going on
            status = await commit((result.rows, result.extra, following.request_id if following is not None else None))
            rows = result.rows
            stats.sent += 1
            if rows[0].error is not None:  # failed, or (rows changed by the sink) could not be stored
                stats.failed += 1
                stats.first_error = stats.first_error or rows[0].error
            for row in rows:
                stats.outcomes[row.outcome] = stats.outcomes.get(row.outcome, 0) + 1
            stats.items_answered += sum(row.error is None for row in rows)
            if on_answer is not None:
                on_answer(rows)
            unit = following

    try:
        async with claims.keep_alive(in_store_thread):
            workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(todo) or 1)))]
            try:
                await asyncio.gather(*workers)
            finally:
                for task in workers:
                    task.cancel()
                stats.elapsed_s = time.perf_counter() - started
    finally:
        if thread is not None:
            thread.close()  # a commit in progress (of a cancelled worker's answer) is finished, never cut
    if breaker.stopped is not None:
        if stats.timeouts_retried:  # the note a finished run prints, which this one line must carry instead
            raise type(breaker.stopped)(f"{breaker.stopped}; {stats.timeouts_retried} timed-out requests were sent "
                                        "again, and the server may have received, and billed, both")
        raise breaker.stopped
    return stats
