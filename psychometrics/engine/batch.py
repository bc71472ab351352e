"""``--batch``: a run's pending requests sent through the provider's batch API, resumable at any point.

Batch APIs answer within a day, usually at half the price. The run is a loop over the ``batches``
table of the run store (:mod:`psychometrics.batch.ledger`), each step recorded and committed before it
talks to the provider, so a process killed anywhere resumes from the table without submitting a
request twice:

1. Submissions a killed run left unfinished are taken up where they stopped: an input file that may
   have been uploaded is looked up by its name before being uploaded again; a batch that may have
   been created is looked up by its submission key before being created again.
2. Pending requests (not answered, not in a live batch) are submitted in batches of at most the
   provider's size (``max_requests`` per batch).
3. Live batches are polled every ``poll_s`` seconds, the wait growing 1.5x per quiet round up to 10x
   (reset when a batch ends). An ended batch's result lines are committed as they arrive, as the rows
   the direct engine builds (:func:`~psychometrics.engine.send.answer_rows`,
   :func:`~psychometrics.engine.send.failure_rows`), so truncation, tokens, served model and cost columns
   are filled the same way; a line committed already is left as it is (answers are never replaced).
   Only then is the batch marked ended.
4. Requests of an ended batch left without an answer for a reason a new try can fix (expired,
   cancelled, a transient server error, a batch that failed as a whole) are submitted again in a new
   batch, counted (``resubmitted``), while each has been submitted at most ``1 + retry.max_retries``
   times; rejected requests are stored as failures and, like the direct engine's, tried again by the
   next run.

Re-asking unreadable replies needs a conversation per request, so ``--invalid reask:N`` is refused
with ``--batch``. A run directory with live batches is not sent directly either
(:func:`refuse_direct_send`): collecting them is cheaper than paying again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

from psychometrics.batch.ledger import Ledger, Submission, live_count
from psychometrics.design.plan import PlannedRequest
from psychometrics.engine.pool import RetryPolicy, RunStats, pending
from psychometrics.errors import PsytestError

#: How many times longer than ``--batch-poll`` the wait between polls may grow while nothing ends.
POLL_GROWTH_CAP = 10.0


@dataclass
class BatchStats(RunStats):
    """:class:`RunStats` of a batch run: ``sent``, ``failed`` and ``outcomes`` count each request whose result
    was committed in this run once, by its last result (a request that expired and was answered on
    resubmission is answered, not failed)."""

    batches_created: int = 0
    batches_resumed: int = 0  # live batches of an earlier, interrupted run taken up by this one
    requests_submitted: int = 0
    requests_resubmitted: int = 0  # of those, requests submitted before (expired, failed, transient error)
    polls: int = 0

    def batch_summary(self) -> dict:
        """The batch counts a run summary shows."""
        return {"batches_created": self.batches_created, "batches_resumed": self.batches_resumed,
                "requests_submitted": self.requests_submitted, "requests_resubmitted": self.requests_resubmitted,
                "polls": self.polls}


def batch_api_for(backend, retry: RetryPolicy):
    """The batch API of ``backend``'s provider; a one-line error for a model no batch API serves."""
    name = getattr(backend, "name", "")
    if name.startswith("openai/"):
        from psychometrics.batch.openai_api import OpenAIBatches

        return OpenAIBatches.for_backend(backend, retry)
    if name.startswith("anthropic/"):
        from psychometrics.batch.anthropic_api import AnthropicBatches

        return AnthropicBatches.for_backend(backend, retry)
    raise PsytestError(f"--batch: {name} has no batch API psytest speaks; use it with openai/NAME (OpenAI, or an "
                       "OpenAI-compatible server with /v1/batches via --api-base) or anthropic/NAME, or run without "
                       "--batch")


def check_batchable(design) -> None:
    """A one-line error for design settings a batch cannot carry out."""
    if design.reasks:
        raise PsytestError("--batch: re-asking unreadable replies (--invalid reask:N) needs a conversation per "
                           "request; use --invalid missing or drop with --batch")
    if design.longer_reasks:
        raise PsytestError("--batch: asking cut-off replies again (--on-truncated reask:N) needs a conversation per "
                           "request; give a larger --max-tokens instead with --batch")


def refuse_direct_send(store) -> None:
    """A one-line error when the store holds live batches and the run would send directly."""
    batches, requests = live_count(store.conn)
    if batches:
        raise PsytestError(f"{store.path}: the run has {batches} submitted batch(es) with {requests} request(s) not "
                           "collected yet; re-run with --batch to collect them instead of paying for them again")


def _chunks(planned: list, api, max_requests: int) -> list[tuple[list, list[bytes]]]:
    """``planned`` cut into batches within the provider's request and byte limits: (requests, lines)."""
    chunks: list[tuple[list, list[bytes]]] = []
    current: list = []
    lines: list[bytes] = []
    size = 0
    for p in planned:
        line = api.line(p)
        if current and (len(current) >= max_requests or size + len(line) > api.max_bytes):
            chunks.append((current, lines))
            current, lines, size = [], [], 0
        current.append(p)
        lines.append(line)
        size += len(line)
    if current:
        chunks.append((current, lines))
    return chunks


class BatchRun:
    """One ``--batch`` run over a run store (see the module docstring)."""

    def __init__(self, api, planned: list, store, *, poll_s: float, retry: RetryPolicy,
                 max_requests: int | None = None, on_answer: Callable[[list], None] | None = None,
                 on_event: Callable[[str], None] | None = None, price=None):
        self.api = api
        self.price = price  # prices each answer at the batch price (psychometrics.cost)
        self.store = store
        self.ledger = Ledger(store.conn)
        self.by_id: dict[str, PlannedRequest] = {}
        for p in planned:
            self.by_id.setdefault(p.request_id, p)
        self.poll_s = poll_s
        self.retry = retry
        self.max_requests = min(max_requests or api.max_requests, api.max_requests)
        self.on_answer = on_answer
        self.on_event = on_event or (lambda message: None)
        self.stats = BatchStats(planned=len(planned))
        self.tried = store.failed_attempts()
        from psychometrics.engine.claims import new_owner

        self.owner = new_owner()

    # -- submitting -----------------------------------------------------------------------------------
    async def submit(self, requests: list) -> None:
        """Submit ``requests`` in batches within the provider's limits, each recorded before it is sent.

        Which requests go, and their submissions, are decided in one write transaction that first drops
        requests answered or live meanwhile: two processes batching one run never submit one request twice."""
        if not requests:
            return
        subs = []
        self.store.conn.execute("BEGIN IMMEDIATE")
        try:
            answered = self.store.answered_ids()
            live = {rid for sub in self.ledger.live() for rid in sub.request_ids}
            chosen = [p for p in requests if p.request_id not in answered and p.request_id not in live]
            before = self.ledger.times_submitted()
            state = "uploading" if self.api.needs_upload else "creating"
            for chunk, lines in _chunks(chosen, self.api, self.max_requests):
                again = sum(1 for p in chunk if before.get(p.request_id))
                sub = self.ledger.begin(self.api.provider, self.api.endpoint, [p.request_id for p in chunk], again,
                                        state, self.owner)
                subs.append((sub, lines))
                self.stats.requests_submitted += len(chunk)
                self.stats.requests_resubmitted += again
        except BaseException:
            self.store.conn.execute("ROLLBACK")
            raise
        self.store.conn.execute("COMMIT")
        for sub, lines in subs:
            await self.advance(sub, lines)

    async def advance(self, sub: Submission, lines: list[bytes] | None = None, *, resumed: bool = False) -> None:
        """Take ``sub`` from its recorded state to ``submitted``. A submission an earlier run left (``resumed``)
        may have its file uploaded or its batch created already: those are looked up before being made.
        Creating a batch is never retried blindly: after a failed try, the batch is looked up first."""
        from psychometrics.batch.http import BatchAPIError, TransientBatchError

        if lines is None:
            lines = [self.api.line(self.by_id[rid]) for rid in sub.request_ids if rid in self.by_id]
        if sub.state == "uploading":
            file_id = await self.api.find_upload(sub.submission) if resumed else None
            if file_id is None:
                file_id = await self.api.upload(sub.submission, lines)
            self.ledger.update(sub, file_id=file_id, state="creating")
        if sub.state != "creating":
            return
        batch_id = None
        for attempt in range(self.retry.max_retries + 1):
            if resumed or attempt:
                batch_id = await self._find_batch(sub)
                if batch_id is not None:
                    break
            try:
                batch_id = await self.api.create(sub.submission, sub.file_id if self.api.needs_upload else lines)
            except TransientBatchError as exc:
                if attempt == self.retry.max_retries:
                    raise BatchAPIError(f"creating a batch at {self.api.endpoint} keeps failing ({exc}); the "
                                        "submission is stored: re-run the same command later to go on") from None
                await self.api.http.pause(attempt, exc)
                continue
            except PsytestError as exc:
                self.ledger.update(sub, state="refused", error=str(exc)[:2000])
                raise
            self.stats.batches_created += 1
            self.on_event(f"submitted batch {batch_id} ({len(sub.request_ids)} requests)")
            break
        self.ledger.update(sub, batch_id=batch_id, state="submitted")

    async def _take_up(self) -> None:
        """Take each abandoned, unfinished submission (its process gone) through its remaining steps."""
        for sub in self.ledger.live():
            if sub.state != "submitted" and sub.owner != self.owner and sub.abandoned() and self.ledger.take(sub, self.owner):
                await self.advance(sub, resumed=True)

    async def _find_batch(self, sub: Submission) -> str | None:
        known = {s.batch_id for s in self.ledger.all() if s.batch_id}
        if self.api.provider == "anthropic":
            return await self.api.find_batch(sub.submission, known, sub.created_at, len(sub.request_ids))
        return await self.api.find_batch(sub.submission, known)

    # -- collecting -----------------------------------------------------------------------------------
    async def collect(self, sub: Submission, state) -> None:
        """Commit every result line of the ended batch ``sub`` as it arrives, then fail what has none."""
        seen: set[str] = set()
        requests = {rid: self.by_id[rid] for rid in sub.request_ids if rid in self.by_id}
        for path in state.result_paths:
            async for group in self.api.http.lines(path):
                results = [r for r in (self.api.read(raw, requests) for raw in group if raw.strip()) if r is not None]
                self._commit(sub, results, seen)
        missing = [rid for rid in requests if rid not in seen]
        if missing:
            from psychometrics.batch.results import LineResult
            from psychometrics.models.base import TransientModelError

            # A batch that failed as a whole has no results: its requests are submitted again. One that
            # ended without a line for a request is the provider's anomaly: failed, tried by the next run.
            reason = (f"batch {sub.batch_id} {state.status}: {state.error}" if state.error
                      else f"batch {sub.batch_id} {state.status} without a result for this request")
            self._commit(sub, [LineResult(rid, error=TransientModelError(reason), retryable=bool(state.error))
                               for rid in missing], seen)
        self.ledger.update(sub, state="ended", provider_status=state.status)

    def _commit(self, sub: Submission, results: list, seen: set[str]) -> None:
        """Store ``results`` in one transaction (answers kept, earlier failures replaced), count them."""
        from psychometrics.engine.send import answer_rows, failure_rows

        items = []
        for result in results:
            if result.custom_id in seen:
                continue
            seen.add(result.custom_id)
            planned = self.by_id[result.custom_id]
            attempts = self.tried.get(result.custom_id, 0) + 1
            if result.reply is not None:
                result.reply.extra["batch"] = True  # answered at the provider's batch price
                if self.price is not None:
                    from psychometrics.cost.actual import reply_cost

                    result.reply.cost = reply_cost(self.price, result.reply)
                rows = answer_rows(planned, result.reply, 0.0, attempts)
            else:
                rows = failure_rows(planned, result.error, 0.0, attempts)
                self.tried[result.custom_id] = attempts  # a resubmission is the next attempt
                if result.retryable:
                    self.retryable.add(result.custom_id)
            for row in rows:
                row.latency_s = None  # a batch has no per-request latency
            items.append((rows, [[m.role, m.content] for m in planned.prompt.messages]))
        if not items:
            return
        stored = self.store.write_many(items)
        self.ledger.update(sub, results_committed=sub.results_committed + len(items))
        for (rows, _), was_stored in zip(items, stored):
            if not was_stored:  # answered already (an earlier, interrupted collection): not counted again
                continue
            self.final[rows[0].request_id] = rows
            if self.on_answer is not None and rows[0].error is None:
                self.on_answer(rows)  # failures are shown at the end: most are answered on resubmission

    def _count(self) -> None:
        """Fill the statistics from the last rows committed for each request in this run: a request that
        failed in one batch and was answered in the next counts once, as answered."""
        stats = self.stats
        stats.sent = len(self.final)
        for rows in self.final.values():
            if rows[0].error is not None:
                stats.failed += 1
                stats.first_error = stats.first_error or rows[0].error
                if self.on_answer is not None:
                    self.on_answer(rows)
            for row in rows:
                stats.outcomes[row.outcome] = stats.outcomes.get(row.outcome, 0) + 1
            stats.items_answered += sum(row.error is None for row in rows)

    # -- the loop -------------------------------------------------------------------------------------
    async def run(self) -> BatchStats:
        from psychometrics.engine.claims import _LIVE_IN_THIS_PROCESS

        started = time.perf_counter()
        self.retryable: set[str] = set()
        self.final: dict[str, list] = {}
        _LIVE_IN_THIS_PROCESS.add(self.owner)  # another run in this process sees this one as alive
        try:
            self.stats.batches_resumed = len(self.ledger.live())  # of an earlier (or another) run
            await self._take_up()
            todo, done = pending(list(self.by_id.values()), self.store)
            self.stats.already_answered = done
            await self.submit(todo)
            wait = self.poll_s
            while True:
                live = self.ledger.live()
                if not live:
                    break
                ended = 0
                for sub in live:
                    if sub.state != "submitted":  # another live process is submitting it
                        continue
                    state = await self._status(sub)
                    self.stats.polls += 1
                    if sub.provider_status != state.status and not state.ended:
                        self.ledger.update(sub, provider_status=state.status)
                    if state.ended:
                        await self.collect(sub, state)
                        ended += 1
                if ended:
                    await self.submit(self._to_resubmit())
                    wait = self.poll_s
                    continue
                await asyncio.sleep(wait)
                wait = min(wait * 1.5, self.poll_s * POLL_GROWTH_CAP)
                await self._take_up()  # a submission whose process died meanwhile
        finally:
            _LIVE_IN_THIS_PROCESS.discard(self.owner)
            self._count()
            self.stats.retries = self.api.http.retries
            self.stats.elapsed_s = time.perf_counter() - started
        return self.stats

    async def _status(self, sub: Submission):
        """The polled state of ``sub``'s batch; an error naming where it was submitted when it is not found."""
        from psychometrics.batch.http import BatchAPIError

        try:
            return await self.api.status(sub.batch_id)
        except BatchAPIError as exc:
            moved = sub.endpoint != self.api.endpoint
            raise BatchAPIError(f"batch {sub.batch_id} (submitted to {sub.endpoint}"
                                + (f", now asked at {self.api.endpoint}" if moved else "") + f"): {exc}"
                                + ("; give the --api-base it was submitted to" if moved else "")) from None

    def _to_resubmit(self) -> list:
        """Unanswered requests of ended batches that failed for a reason a new try can fix, within the limit."""
        if not self.retryable:
            return []
        answered = self.store.answered_ids()
        times = self.ledger.times_submitted()
        live = {rid for sub in self.ledger.live() for rid in sub.request_ids}
        chosen = [self.by_id[rid] for rid in sorted(self.retryable)
                  if rid not in answered and rid not in live and times.get(rid, 0) < 1 + self.retry.max_retries]
        self.retryable.clear()
        return chosen


async def run_batch(
    backend, planned: list, store, *, poll_s: float = 60.0, retry: RetryPolicy = RetryPolicy(),
    max_requests: int | None = None, on_answer: Callable[[list], None] | None = None,
    on_event: Callable[[str], None] | None = None, price=None,
) -> BatchStats:
    """Send every unanswered request of ``planned`` through the batch API of ``backend``'s provider and
    commit the results to ``store`` (see the module docstring); ``max_requests`` caps a batch's size
    below the provider's limit; ``price`` (:class:`psychometrics.cost.prices.Price`) prices each answer at
    the provider's batch price."""
    api = batch_api_for(backend, retry)
    if hasattr(api, "check"):
        api.check(planned)
    try:
        return await BatchRun(api, planned, store, poll_s=poll_s, retry=retry, max_requests=max_requests,
                              on_answer=on_answer, on_event=on_event, price=price).run()
    finally:
        await api.aclose()
