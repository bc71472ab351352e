"""Sending planned requests to a model and committing every answer as it arrives.

A fixed pool of ``concurrency`` workers pulls requests from the plan, so memory stays flat for plans
of millions of requests. Requests already answered in the store are skipped before anything is sent.
Each answer (or failure, with its reason) is written and committed before the worker takes its next
request: an interrupted run loses at most the requests in flight, and resuming sends only those.
Before sending, a worker claims the request in the store (:mod:`psychometrics.claims`), so two
processes on one run directory share the plan instead of both sending it: requests another live
process has claimed (or answered, or failed, since this run started) are skipped and counted in
``claimed_elsewhere``.

Transient failures (rate limits, overload, timeouts, dropped connections) are retried with
exponential backoff and jitter, waiting at least as long as the server's Retry-After asks. Invalid text
replies can be re-asked in the same conversation (policy ``reask:N``).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from psychometrics.claims import CLAIMED
from psychometrics.design import PlannedRequest, messages_hash
from psychometrics.models.base import Message, ModelBackend, ModelReply, ModelRequest, TransientModelError
from psychometrics.parse import ParsedReply, parse_many, parse_reply
from psychometrics.store import ResponseRow, RunStore

REASK_TEXT = "I could not read an answer in your reply. {rule}"
_REASK_RULE = {
    True: 'Please answer again, one line per statement in the form "S1: <answer>", using only the option labels.',
    False: "Please answer again with only the label of one option: {labels}.",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient failures: ``max_retries`` more tries, waits ``base_s * 2**k`` (with jitter),
    at least the server's Retry-After, at most ``cap_s``."""

    max_retries: int = 5
    base_s: float = 1.0
    cap_s: float = 120.0

    def wait(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = min(self.cap_s, self.base_s * 2**retry) * (0.5 + rng.random() / 2)
        if retry_after is not None:
            return min(self.cap_s, max(retry_after, backoff))
        return backoff


@dataclass
class RunStats:
    planned: int = 0
    already_answered: int = 0
    sent: int = 0
    failed: int = 0
    retries: int = 0
    reasks: int = 0
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
    before renormalising (how much the model put on valid answers at all).
    """
    probabilities = [math.exp(logprobs[c]) if logprobs.get(c) is not None else 0.0 for c in choices]
    mass = sum(probabilities)
    if mass <= 0:
        return None, None, None, 0.0
    normalized = [p / mass for p in probabilities]
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


def failure_rows(planned: PlannedRequest, error: BaseException, latency_s: float, attempts: int) -> list[ResponseRow]:
    reason = f"{type(error).__name__}: {error}".strip().rstrip(":")
    rows = []
    for index in range(len(planned.items)):
        row = _base_row(planned, index, attempts)
        row.outcome, row.error, row.latency_s = "error", reason[:2000], latency_s
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
    rule = _REASK_RULE[many].format(labels=", ".join(request.choices))
    messages = list(request.messages)
    for reply in replies:
        messages += [Message("assistant", reply), Message("user", REASK_TEXT.format(rule=rule))]
    seed = None if request.seed is None else (request.seed + 7919 * round_) & 0x7FFFFFFF
    return ModelRequest(tuple(messages), request.choices, request.mode, request.temperature, seed, request.max_tokens)


async def converse(complete, planned: PlannedRequest, reasks: int):
    """Ask once; in text mode, re-ask in the same conversation while some item is invalid (up to
    ``reasks`` times), keeping the first valid answer of each item.

    Returns (first reply, final reply text, earlier reply texts, parsed items or None).
    """
    reply = await complete(planned.request)
    if planned.request.mode != "text" or reasks == 0:
        return reply, reply.text, [], None
    parsed = parse_items(planned, reply.text)
    history: list[str] = []
    final_text = reply.text
    for round_ in range(1, reasks + 1):
        if all(p.outcome == "valid" for p in parsed):
            break
        history.append(final_text or "")
        again = await complete(_reask_request(planned, history, round_))
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
    before it takes another request."""

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
        except BaseException as exc:  # noqa: BLE001 - every waiting caller sees the failure
            for _, result in batch:
                if not result.done():
                    result.set_exception(exc)
            return
        for (_, result), value in zip(batch, results):
            if not result.done():
                result.set_result(value)


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
    stats = RunStats(planned=len(planned), already_answered=done)
    queue = iter(todo)
    started = time.perf_counter()
    jitter = random.Random()

    async def call(request: ModelRequest) -> ModelReply:
        for attempt in range(retry.max_retries + 1):
            try:
                if timeout_s:
                    return await asyncio.wait_for(backend.complete(request), timeout_s)
                return await backend.complete(request)
            except (TransientModelError, asyncio.TimeoutError) as exc:
                if attempt == retry.max_retries:
                    if isinstance(exc, asyncio.TimeoutError):
                        raise TransientModelError(f"no answer within {timeout_s:g} s") from None
                    raise
                stats.retries += 1
                await asyncio.sleep(retry.wait(attempt, getattr(exc, "retry_after", None), jitter))
        raise AssertionError("unreachable")

    async def answer(planned_request: PlannedRequest, attempts: int) -> list[ResponseRow]:
        t0 = time.perf_counter()
        try:
            reply, final_text, history, parsed = await converse(call, planned_request, reasks)
            stats.reasks += len(history)
            rows = answer_rows(planned_request, reply, time.perf_counter() - t0, attempts, parsed)
            if history:
                for row in rows:
                    row.raw_reply, row.reasks, row.reask_replies = final_text, len(history), history
            return rows
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure is recorded, not fatal
            stats.failed += 1
            return failure_rows(planned_request, exc, time.perf_counter() - t0, attempts)

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
            attempts = store.previous_attempts(planned_request.request_id) + 1
            rows = await answer(planned_request, attempts)
            prompt = [[m.role, m.content] for m in planned_request.prompt.messages]
            following = next(queue, None)
            # this answer committed, and the next request claimed, in one transaction before going on
            status = await commit((rows, prompt, following.request_id if following is not None else None))
            stats.sent += 1
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
