"""The questionnaire's unit of work: one planned request conversed with a model and classified into rows.

:class:`RequestWork` is what ``administer`` (and ``reproduce --rerun``) hands to the send engine
(:mod:`psychometrics.engine.pool`), which owns skipping answered requests, claims, group commit, retries,
statistics and progress. A reply becomes one row per item (:func:`answer_rows`): text is parsed to an
option, log-probabilities are summarised (:func:`distribution_summary`). Invalid text replies can be
re-asked in the same conversation (policy ``reask:N``, :func:`converse`); a re-ask that fails keeps the
reply before it, so a paid answer is never thrown away. A failed request is stored as rows with its
reason (:func:`failure_rows`) and sent again on the next run.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace
from typing import Callable

from psychometrics.design.plan import PlannedRequest, messages_hash
from psychometrics.engine.parse import ParsedReply, parse_many, parse_reply
from psychometrics.engine.pool import Call, Result, RetryPolicy, RunStats, failure_reason, send_all
from psychometrics.models.base import Message, ModelBackend, ModelReply, ModelRequest
from psychometrics.run.store import ResponseRow, RunStore

__all__ = ["REASK_RULES", "REASK_TEXT", "RequestWork", "answer_rows", "converse", "distribution_summary",
           "failure_rows", "parse_items", "run_requests"]

REASK_TEXT = "I could not read an answer in your reply. {rule}"
REASK_RULES = {
    True: 'Please answer again, one line per statement in the form "S1: <answer>", using only the option labels.',
    False: "Please answer again with only the label of one option: {labels}.",
}


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
        row.finish_reason, row.served_model = reply.finish_reason, reply.served_model
        row.system_fingerprint, row.cached_input_tokens, row.cost = (
            reply.system_fingerprint, reply.cached_input_tokens, reply.cost)
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
    reason = failure_reason(error)
    rows = []
    for index in range(len(planned.items)):
        row = _base_row(planned, index, attempts)
        row.outcome, row.error, row.latency_s = "error", reason, latency_s
        rows.append(row)
    return rows


def _reask_request(planned: PlannedRequest, replies: list[str], round_: int) -> ModelRequest:
    """The conversation so far plus a follow-up asking for a readable answer."""
    request = planned.request
    many = len(planned.items) > 1
    rule = REASK_RULES[many].format(labels=", ".join(request.choices))
    messages = list(request.messages)
    for reply in replies:
        messages += [Message("assistant", reply), Message("user", REASK_TEXT.format(rule=rule))]
    seed = None if request.seed is None else (request.seed + 7919 * round_) & 0x7FFFFFFF
    return replace(request, messages=tuple(messages), seed=seed)


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


class RequestWork:
    """How to do one questionnaire request (:class:`~psychometrics.engine.pool.Work`): converse (with up to
    ``reasks`` re-asks of unreadable text replies) and classify the reply into one row per item, with the
    prompt to store beside them. Any failure of the model becomes failure rows saying why; a re-ask that
    fails keeps the reply before it (paid for: kept as parsed, and not sent again) with a note."""

    def __init__(self, reasks: int = 0, price=None):
        self.reasks = reasks
        self.price = price  # prices each answer (psychometrics.cost): every call of the request is paid

    async def __call__(self, planned_request: PlannedRequest, attempts: int, call: Call, stats: RunStats) -> Result:
        prompt = [[m.role, m.content] for m in planned_request.prompt.messages]
        t0 = time.perf_counter()
        reask_failures: list[BaseException] = []
        from psychometrics.cost.actual import ReplyCosts

        costs = ReplyCosts(self.price)

        async def paid_call(request: ModelRequest) -> ModelReply:
            reply = await call(request)
            costs.add(reply)
            return reply

        try:
            reply, final_text, history, parsed = await converse(paid_call, planned_request, self.reasks,
                                                                reask_failures)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure is recorded, not fatal
            return Result(failure_rows(planned_request, exc, time.perf_counter() - t0, attempts), prompt)
        stats.reasks += len(history)
        reply.cost = costs.total if self.price is not None else reply.cost
        rows = answer_rows(planned_request, reply, time.perf_counter() - t0, attempts, parsed)
        note = None
        if reask_failures:
            stats.reasks_failed += 1
            note = f"re-ask {len(history) + 1} failed, reply before it kept: {failure_reason(reask_failures[0])}"
        if history or note:
            for row in rows:
                row.raw_reply, row.reasks, row.reask_replies, row.note = final_text, len(history), history or None, note
        return Result(rows, prompt)


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
    price=None,
) -> RunStats:
    """Send every unanswered request in ``planned`` that no other process has claimed, committing each
    answer as it arrives (:func:`psychometrics.engine.pool.send_all` with :class:`RequestWork`). ``lease_s``:
    how long a claim of this run outlives it if it dies on another host. ``price``
    (:class:`psychometrics.cost.prices.Price`): each answer's cost from its usage, stored with it."""
    return await send_all(planned, store, RequestWork(reasks, price), backend=backend, concurrency=concurrency,
                          timeout_s=timeout_s, retry=retry, on_answer=on_answer, lease_s=lease_s)
