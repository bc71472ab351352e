"""Sending planned requests to a model and committing every answer as it arrives.

A fixed pool of ``concurrency`` workers pulls requests from the plan, so memory stays flat for plans
of millions of requests. Requests already answered in the store are skipped before anything is sent.
Each answer (or failure, with its reason) is written and committed before the worker takes its next
request: an interrupted run loses at most the requests in flight, and resuming sends only those.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from psychometrics.design import PlannedRequest, messages_hash
from psychometrics.models.base import ModelBackend, ModelReply
from psychometrics.parse import parse_reply
from psychometrics.store import ResponseRow, RunStore


@dataclass
class RunStats:
    planned: int = 0
    already_answered: int = 0
    sent: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def per_second(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def distribution_summary(logprobs: dict[str, float], choices: tuple[str, ...], values: tuple[int, ...]):
    """From label log-probabilities: (modal position, expected value, entropy in nats, mass on options).

    The distribution is renormalised over the displayed options; ``mass`` is their total probability
    before renormalising (how much the model put on valid answers at all).
    """
    probabilities = [math.exp(logprobs[c]) if c in logprobs and logprobs[c] is not None else 0.0 for c in choices]
    mass = sum(probabilities)
    if mass <= 0:
        return None, None, None, 0.0
    normalized = [p / mass for p in probabilities]
    expected = sum(p * v for p, v in zip(normalized, values))
    entropy = -sum(p * math.log(p) for p in normalized if p > 0)
    position = max(range(len(choices)), key=normalized.__getitem__)
    return position, expected, entropy, mass


def answer_row(planned: PlannedRequest, reply: ModelReply, latency_s: float, attempts: int) -> ResponseRow:
    """Classify a reply and build its stored row (positions mapped back to response values)."""
    prompt = planned.prompt
    row = ResponseRow(
        request_id=planned.request_id,
        inventory=planned.inventory.id,
        item_id=planned.item.id,
        condition=planned.condition.as_dict(),
        messages_hash=messages_hash(prompt),
        choices=list(prompt.choices),
        position_values=list(prompt.position_values),
        mode=planned.request.mode,
        raw_reply=reply.text,
        choice_logprobs=reply.choice_logprobs,
        outcome="unparseable",
        latency_s=latency_s,
        input_tokens=reply.input_tokens,
        output_tokens=reply.output_tokens,
        attempts=attempts,
    )
    if planned.request.mode == "probs":
        if reply.choice_logprobs:
            position, expected, entropy, mass = distribution_summary(
                reply.choice_logprobs, prompt.choices, prompt.position_values
            )
            row.option_mass = mass
            if position is not None:
                row.outcome, row.position = "valid", position
                row.value, row.expected_value, row.entropy = expected, expected, entropy
        return row
    parsed = parse_reply(reply.text, prompt.choices, planned.option_texts)
    row.outcome, row.parse_method, row.position = parsed.outcome, parsed.method, parsed.position
    if parsed.outcome == "valid":
        row.value = float(prompt.position_values[parsed.position])
    return row


def failure_row(planned: PlannedRequest, error: BaseException, latency_s: float, attempts: int) -> ResponseRow:
    reason = f"{type(error).__name__}: {error}".strip().rstrip(":")
    return ResponseRow(
        request_id=planned.request_id,
        inventory=planned.inventory.id,
        item_id=planned.item.id,
        condition=planned.condition.as_dict(),
        messages_hash=messages_hash(planned.prompt),
        choices=list(planned.prompt.choices),
        position_values=list(planned.prompt.position_values),
        mode=planned.request.mode,
        raw_reply=None,
        choice_logprobs=None,
        outcome="error",
        latency_s=latency_s,
        error=reason[:2000],
        attempts=attempts,
    )


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


async def run_requests(
    backend: ModelBackend,
    planned: list[PlannedRequest],
    store: RunStore,
    *,
    concurrency: int = 4,
    timeout_s: float | None = None,
    on_answer: Callable[[ResponseRow], None] | None = None,
) -> RunStats:
    """Send every unanswered request in ``planned``; commit each answer as it arrives."""
    todo, done = pending(planned, store)
    stats = RunStats(planned=len(planned), already_answered=done)
    queue = iter(todo)
    started = time.perf_counter()

    async def worker() -> None:
        for request in queue:  # a shared iterator: each request goes to exactly one worker
            attempts = store.previous_attempts(request.request_id) + 1
            t0 = time.perf_counter()
            try:
                if timeout_s:
                    reply = await asyncio.wait_for(backend.complete(request.request), timeout_s)
                else:
                    reply = await backend.complete(request.request)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any backend failure is recorded, not fatal
                row = failure_row(request, exc, time.perf_counter() - t0, attempts)
                stats.failed += 1
            else:
                row = answer_row(request, reply, time.perf_counter() - t0, attempts)
            store.save_prompt(row.messages_hash, [[m.role, m.content] for m in request.prompt.messages])
            store.write(row)
            stats.sent += 1
            stats.outcomes[row.outcome] = stats.outcomes.get(row.outcome, 0) + 1
            if on_answer is not None:
                on_answer(row)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(todo) or 1)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        stats.elapsed_s = time.perf_counter() - started
    return stats
