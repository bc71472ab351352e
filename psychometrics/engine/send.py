"""Sending planned requests to a model and committing every answer as it arrives.

A fixed pool of ``concurrency`` workers pulls requests from the plan, so memory stays flat for plans
of millions of requests. Requests already answered in the store are skipped before anything is sent.
Each answer (or failure, with its reason) is written and committed before the worker takes its next
request: an interrupted run loses at most the requests in flight, and resuming sends only those.
Before sending, a worker claims the request in the store (:mod:`psychometrics.engine.claims`), so two
processes on one run directory share the plan instead of both sending it: requests another live
process has claimed (or answered, or failed, since this run started) are skipped and counted in
``claimed_elsewhere``.

Transient failures (rate limits, overload, timeouts, dropped connections) are retried with
exponential backoff and jitter, waiting at least as long as the server's Retry-After asks
(:func:`call_with_retries`, shared with behaviour runs). A timed-out request was probably received, so
its retry may be billed twice; such retries are counted (``timeouts_retried``). Every reply is made safe
to store on arrival (:meth:`~psychometrics.models.base.ModelReply.cleaned`), and a row SQLite still
refuses is stored as a failure with its reason, never taking other workers' answers down with it.
Invalid text replies can be re-asked in the same conversation (policy ``reask:N``); a re-ask that fails
keeps the reply before it, so a paid answer is never thrown away.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from psychometrics.engine.claims import CLAIMED
from psychometrics.design.plan import PlannedRequest, messages_hash
from psychometrics.models.base import Message, ModelBackend, ModelReply, ModelRequest, TransientModelError, clean_text
from psychometrics.engine.parse import ParsedReply, parse_many, parse_reply
from psychometrics.run.store import ResponseRow, RunStore

REASK_TEXT = "I could not read an answer in your reply. {rule}"
REASK_RULES = {
    True: 'Please answer again, one line per statement in the form "S1: <answer>", using only the option labels.',
    False: "Please answer again with only the label of one option: {labels}.",
}


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
    first_error: str | None = None  # the reason of this run's first failed request
    claimed_elsewhere: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    items_answered: int = 0

    @property
    def per_second(self) -> float:
        """Items answered per second of wall time in this run."""
        return self.items_answered / self.elapsed_s if self.elapsed_s > 0 else 0.0


def distribution_summary(logprobs: dict[str, float], choices: tuple[str, ...], values: tuple[int, ...]):
    """From label log-probabilities: (modal position, expected value, entropy in nats, mass on options).

    The distribution is renormalised over the displayed options; ``mass`` is their total probability
    before renormalising (how much the model put on valid answers at all). Computed stably, relative to
    the largest log-probability ``m``: ``p_k = exp(l_k - m) / sum_j exp(l_j - m)`` and
    ``log mass = m + log sum_j exp(l_j - m)``, so labels at -800 give a distribution rather than 0/0. The
    log-probabilities are those :func:`psychometrics.models.base.label_logprobs` checked (real, <= 0).
    """
    present = [logprobs[c] for c in choices if logprobs.get(c) is not None]
    top = max(present, default=-math.inf)
    if top == -math.inf:
        return None, None, None, 0.0
    weights = [math.exp(logprobs[c] - top) if logprobs.get(c) is not None else 0.0 for c in choices]
    total = sum(weights)
    mass = math.exp(top + math.log(total))
    normalized = [w / total for w in weights]
    expected = sum(p * v for p, v in zip(normalized, values))
    entropy = -sum(p * math.log(p) for p in normalized if p > 0)
    position = max(range(len(choices)), key=normalized.__getitem__)
    return position, expected, entropy, mass


def _base_row(planned: PlannedRequest, index: int, attempts: int) -> ResponseRow:
    prompt = planned.prompt
    return ResponseRow(
        request_id=planned.request_id,
        inventory=planned.inventory.id,
        item_id=planned.items[index].id,
        item_index=index,
        condition=planned.condition.as_dict(),
        messages_hash=messages_hash(prompt),
        choices=list(prompt.choices),
        position_values=list(prompt.position_values),
        mode=planned.request.mode,
        raw_reply=None,
        choice_logprobs=None,
        outcome="unparseable",
        attempts=attempts,
    )


def parse_items(planned: PlannedRequest, text: str | None) -> list[ParsedReply]:
    """Parse a text reply into one result per item of the request."""
    prompt = planned.prompt
    if len(planned.items) == 1:
        return [parse_reply(text, prompt.choices, planned.option_texts)]
    return parse_many(text, len(planned.items), prompt.choices, planned.option_texts)


def answer_rows(
    planned: PlannedRequest, reply: ModelReply, latency_s: float, attempts: int,
    parsed: list[ParsedReply] | None = None,
) -> list[ResponseRow]:
    """Classify a reply and build its stored rows (positions mapped back to response values)."""
    prompt = planned.prompt
    rows = []
    if planned.request.mode == "text" and parsed is None:
        parsed = parse_items(planned, reply.text)
    for index in range(len(planned.items)):
        row = _base_row(planned, index, attempts)
        row.raw_reply = reply.text
        row.choice_logprobs = reply.choice_logprobs
        row.latency_s = latency_s
        row.input_tokens, row.output_tokens = reply.input_tokens, reply.output_tokens
        if planned.request.mode == "probs":
            if reply.choice_logprobs:
                position, expected, entropy, mass = distribution_summary(
                    reply.choice_logprobs, prompt.choices, prompt.position_values
                )
                row.option_mass = mass
                if position is not None:
                    row.outcome, row.position = "valid", position
                    row.value, row.expected_value, row.entropy = expected, expected, entropy
        else:
            result = parsed[index]
            row.outcome, row.parse_method, row.position = result.outcome, result.method, result.position
            if result.outcome == "valid":
                row.value = float(prompt.position_values[result.position])
        rows.append(row)
    return rows


def failure_reason(error: BaseException) -> str:
    """``Type: message``, storable (no unpaired surrogates), at most 2000 characters."""
    return clean_text(f"{type(error).__name__}: {error}".strip().rstrip(":"))[:2000]


def failure_rows(planned: PlannedRequest, error: BaseException, latency_s: float, attempts: int) -> list[ResponseRow]:
    reason = failure_reason(error)
    rows = []
    for index in range(len(planned.items)):
        row = _base_row(planned, index, attempts)
        row.outcome, row.error, row.latency_s = "error", reason, latency_s
        rows.append(row)
    return rows


def pending(planned: Iterable[PlannedRequest], store: RunStore) -> tuple[list[PlannedRequest], int]:
    """The requests not yet answered (each id once), and how many of the plan were already answered."""
    answered = store.answered_ids()
    todo: dict[str, PlannedRequest] = {}
    done = 0
    for request in planned:
        if request.request_id in answered:
            done += 1
        else:
            todo.setdefault(request.request_id, request)
    return list(todo.values()), done


def _reask_request(planned: PlannedRequest, replies: list[str], round_: int) -> ModelRequest:
    """The conversation so far plus a follow-up asking for a readable answer."""
    request = planned.request
    many = len(planned.items) > 1
    rule = REASK_RULES[many].format(labels=", ".join(request.choices))
    messages = list(request.messages)
    for reply in replies:
        messages += [Message("assistant", reply), Message("user", REASK_TEXT.format(rule=rule))]
    seed = None if request.seed is None else (request.seed + 7919 * round_) & 0x7FFFFFFF
    return ModelRequest(tuple(messages), request.choices, request.mode, request.temperature, seed, request.max_tokens)


async def converse(complete, planned: PlannedRequest, reasks: int, failures: list | None = None):
    """Ask once; in text mode, re-ask in the same conversation while some item is invalid (up to
    ``reasks`` times), keeping the first valid answer of each item.

    Returns (first reply, final reply text, earlier reply texts, parsed items or None). A failing re-ask
    raises, unless ``failures`` is a list: then the exception is appended to it and the replies so far
    are returned (the final text being the last reply received).
    """
    reply = (await complete(planned.request)).cleaned()
    if planned.request.mode != "text" or reasks == 0:
        return reply, reply.text, [], None
    parsed = parse_items(planned, reply.text)
    history: list[str] = []
    final_text = reply.text
    for round_ in range(1, reasks + 1):
        if all(p.outcome == "valid" for p in parsed):
            break
        history.append(final_text or "")
        try:
            again = (await complete(_reask_request(planned, history, round_))).cleaned()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller decides (see failures)
            if failures is None:
                raise
            failures.append(exc)
            history.pop()  # final_text is that reply again
            break
        final_text = again.text
        for index, result in enumerate(parse_items(planned, again.text)):
            if parsed[index].outcome != "valid" and result.outcome == "valid":
                parsed[index] = result
    return reply, final_text, history, parsed


class TurnBatch:
    """Calls ``many(items)`` once per turn of the event loop with every item submitted during that turn:
    the answers (or claims) of all workers that got there together go into one SQLite transaction, one
    commit instead of one each, which at hundreds of answers a second is most of the time the loop
    would spend in SQLite. Each caller waits for its own result, so a worker's answer is committed
    before it takes another request. If the batch fails, each item is tried again on its own, so one
    bad item fails only its own caller."""

    def __init__(self, many: Callable[[list], list]):
        self.many = many
        self._pending: list[tuple[object, asyncio.Future]] = []

    async def __call__(self, item):
        loop = asyncio.get_running_loop()
        result = loop.create_future()
        self._pending.append((item, result))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)  # after the callbacks already ready: the items of this turn
        return await result

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            results = self.many([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - one item at a time: only the bad one fails
            if len(batch) == 1:
                _settle(batch[0][1], error=exc)
                return
            for item, result in batch:
                try:
                    _settle(result, self.many([item])[0])
                except Exception as one:  # noqa: BLE001 - handed to the caller of that item
                    _settle(result, error=one)
            return
        except BaseException as exc:  # noqa: BLE001 - an interrupt: every waiting caller sees it
            for _, result in batch:
                _settle(result, error=exc)
            return
        for (_, result), value in zip(batch, results):
            _settle(result, value)


def _settle(future: asyncio.Future, value=None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def call_with_retries(
    backend: ModelBackend, request: ModelRequest, *, timeout_s: float | None, retry: RetryPolicy, stats: RunStats,
    jitter: random.Random,
) -> ModelReply:
    """One model call, retrying transient failures (:class:`RetryPolicy`); the reply made safe to store.

    Counts retries in ``stats.retries``, and those after a timeout also in ``stats.timeouts_retried``.
    Used for questionnaire requests and behaviour turns alike."""
    for attempt in range(retry.max_retries + 1):
        try:
            if timeout_s:
                reply = await asyncio.wait_for(backend.complete(request), timeout_s)
            else:
                reply = await backend.complete(request)
            return reply.cleaned()
        except (TransientModelError, asyncio.TimeoutError) as exc:
            if not isinstance(exc, TransientModelError):
                exc = TransientModelError(f"no answer within {timeout_s:g} s", timed_out=True)
            if attempt == retry.max_retries:
                raise exc from None
            if exc.retry_after is not None and exc.retry_after > retry.max_retry_after_s:
                raise TransientModelError(
                    f"{exc}; the server asks to wait {exc.retry_after:g} s, longer than the "
                    f"{retry.max_retry_after_s:g} s psytest waits: re-run later"
                ) from None
            stats.retries += 1
            stats.timeouts_retried += bool(exc.timed_out)
            await asyncio.sleep(retry.wait(attempt, exc.retry_after, jitter))
    raise AssertionError("unreachable")


async def run_requests(
    backend: ModelBackend,
    planned: list[PlannedRequest],
    store: RunStore,
    *,
    concurrency: int = 4,
    timeout_s: float | None = None,
    retry: RetryPolicy = RetryPolicy(),
    reasks: int = 0,
    on_answer: Callable[[list[ResponseRow]], None] | None = None,
    lease_s: float | None = None,
) -> RunStats:
    """Send every unanswered request in ``planned`` that no other process has claimed; commit each
    answer as it arrives. ``lease_s``: how long a claim of this run outlives it if it dies on another
    host (a dead process on this host frees its claims at once)."""
    claims = store.claims(since=time.time(), lease_s=lease_s)
    todo, done = pending(planned, store)
    tried = store.failed_attempts()  # attempts of earlier failures, counted on in this run
    stats = RunStats(planned=len(planned), already_answered=done)
    queue = iter(todo)
    started = time.perf_counter()
    jitter = random.Random()

    async def call(request: ModelRequest) -> ModelReply:
        return await call_with_retries(backend, request, timeout_s=timeout_s, retry=retry, stats=stats, jitter=jitter)

    async def answer(planned_request: PlannedRequest, attempts: int) -> list[ResponseRow]:
        t0 = time.perf_counter()
        reask_failures: list[BaseException] = []
        try:
            reply, final_text, history, parsed = await converse(call, planned_request, reasks, reask_failures)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure is recorded, not fatal
            return failure_rows(planned_request, exc, time.perf_counter() - t0, attempts)
        stats.reasks += len(history)
        rows = answer_rows(planned_request, reply, time.perf_counter() - t0, attempts, parsed)
        note = None
        if reask_failures:  # the replies before it were paid for: kept, as parsed, and not sent again
            stats.reasks_failed += 1
            note = f"re-ask {len(history) + 1} failed, reply before it kept: {failure_reason(reask_failures[0])}"
        if history or note:
            for row in rows:
                row.raw_reply, row.reasks, row.reask_replies, row.note = final_text, len(history), history or None, note
        return rows

    claim = TurnBatch(claims.claim_many)
    commit = TurnBatch(lambda batch: store.write_and_claim(batch, claims))

    async def worker() -> None:
        planned_request = next(queue, None)  # a shared iterator: each request goes to exactly one worker
        status = await claim(planned_request.request_id) if planned_request is not None else None
        while planned_request is not None:
            if status != CLAIMED:
                stats.claimed_elsewhere += 1
                planned_request = next(queue, None)
                status = await claim(planned_request.request_id) if planned_request is not None else None
                continue
            attempts = tried.get(planned_request.request_id, 0) + 1
            rows = await answer(planned_request, attempts)
            prompt = [[m.role, m.content] for m in planned_request.prompt.messages]
            following = next(queue, None)
            # this answer committed, and the next request claimed, in one transaction before going on
            status = await commit((rows, prompt, following.request_id if following is not None else None))
            stats.sent += 1
            if rows[0].error is not None:  # failed, or (rows changed by the store) could not be stored
                stats.failed += 1
                stats.first_error = stats.first_error or rows[0].error
            for row in rows:
                stats.outcomes[row.outcome] = stats.outcomes.get(row.outcome, 0) + 1
            stats.items_answered += sum(row.error is None for row in rows)
            if on_answer is not None:
                on_answer(rows)
            planned_request = following

    async with claims.keep_alive():
        workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(todo) or 1)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            stats.elapsed_s = time.perf_counter() - started
    return stats
