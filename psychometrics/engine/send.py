"""The questionnaire's unit of work: one planned request conversed with a model and classified into rows.

:class:`RequestWork` is what ``administer`` (and ``reproduce --rerun``) hands to the send engine
(:mod:`psychometrics.engine.pool`), which owns skipping answered requests, claims, group commit, retries,
statistics and progress. A reply becomes one row per item (:func:`answer_rows`): text is parsed to an
option, log-probabilities are summarised (:func:`distribution_summary`). Invalid text replies can be
re-asked in the same conversation (policy ``reask:N``, :func:`converse`); a re-ask that fails keeps the
reply before it, so a paid answer is never thrown away. A failed request is stored as rows with its
reason (:func:`failure_rows`) and sent again on the next run.

A text reply the server cut off at ``max_tokens`` (``finish_reason`` ``length``) is ``truncated``
(:func:`cut_off_outcomes`): missing in the analysis like ``unparseable``, counted apart so that a run
whose limit is too small says so. With policy ``on_truncated: reask:N`` a cut reply is asked again,
the same request with twice the tokens, up to N times (:func:`ask_longer`); the cut replies are kept.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace
from typing import Callable

from psychometrics import limits
from psychometrics.design.plan import PlannedRequest, messages_hash
from psychometrics.engine.parse import ParsedReply, parse_many, parse_reply
from psychometrics.engine.probe import Prefetched
from psychometrics.engine.pool import Call, Result, RetryPolicy, RunStats, failure_reason, send_all
from psychometrics.models.base import Message, ModelBackend, ModelReply, ModelRequest
from psychometrics.run.store import ResponseRow, RunStore

__all__ = ["CUT_OFF", "REASK_RULES", "REASK_TEXT", "RequestWork", "answer_rows", "ask_longer", "converse",
           "cut_off_outcomes", "distribution_summary", "failure_rows", "is_cut_off", "parse_items", "run_requests"]

#: The finish reasons that mean a reply stopped at its token limit, not where the model ended it:
#: OpenAI-style servers (vLLM, llama.cpp, litellm) say ``length``, Anthropic ``max_tokens``, Gemini ``MAX_TOKENS``.
CUT_OFF = frozenset({"length", "max_tokens", "max_output_tokens"})

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


_PROMPT_HASHES: dict[int, tuple[object, str]] = {}  # id(prompt) -> (prompt, its messages_hash): samples share a prompt


def _prompt_hash(prompt) -> str:
    """:func:`messages_hash` of ``prompt``, computed once per prompt object (a SHA-256 of its JSON per request
    was a few percent of a run's CPU); the entry holds the prompt, so its id is not reused while cached."""
    known = _PROMPT_HASHES.get(id(prompt))
    if known is not None and known[0] is prompt:
        return known[1]
    if len(_PROMPT_HASHES) >= 8192:
        _PROMPT_HASHES.clear()
    digest = messages_hash(prompt)
    _PROMPT_HASHES[id(prompt)] = (prompt, digest)
    return digest


def _base_row(planned: PlannedRequest, index: int, attempts: int) -> ResponseRow:
    prompt = planned.prompt
    return ResponseRow(
        request_id=planned.request_id,
        inventory=planned.inventory.id,
        item_id=planned.items[index].id,
        item_index=index,
        condition=planned.condition.as_dict(),
        messages_hash=_prompt_hash(prompt),
        choices=list(prompt.choices),
        position_values=list(prompt.position_values),
        mode=planned.request.mode,
        raw_reply=None,
        choice_logprobs=None,
        outcome="unparseable",
        attempts=attempts,
    )


def is_cut_off(reply: ModelReply) -> bool:
    """Whether the server says ``reply`` stopped at ``max_tokens`` (:data:`CUT_OFF`, any case)."""
    return isinstance(reply.finish_reason, str) and reply.finish_reason.strip().lower() in CUT_OFF


def cut_off_outcomes(parsed: list[ParsedReply]) -> list[ParsedReply]:
    """What a cut-off reply still tells, item by item: a strict answer (the bare label, complete before the
    cut: "4", "S3: 2") and a refusal stand; anything else is ``truncated``, since the words the model
    did not get to write might have changed it ("Moderately" of "Moderately accurate", a lenient
    reading of an unfinished sentence, a statement never reached)."""
    return [p if (p.outcome == "valid" and p.method == "strict") or p.outcome == "refusal"
            else ParsedReply("truncated") for p in parsed]


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
    """Classify a reply and build its stored rows (positions mapped back to response values). ``parsed``:
    the items as :func:`converse` read them (cut-off replies already classified), else read here."""
    prompt = planned.prompt
    rows = []
    if planned.request.mode == "text" and parsed is None:
        parsed = parse_items(planned, reply.text)
        if is_cut_off(reply):
            parsed = cut_off_outcomes(parsed)
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


def _reask_request(request: ModelRequest, many: bool, replies: list[str], round_: int) -> ModelRequest:
    """The conversation so far plus a follow-up asking for a readable answer."""
    rule = REASK_RULES[many].format(labels=", ".join(request.choices))
    messages = list(request.messages)
    for reply in replies:
        messages += [Message("assistant", reply), Message("user", REASK_TEXT.format(rule=rule))]
    seed = None if request.seed is None else (request.seed + 7919 * round_) & 0x7FFFFFFF
    return replace(request, messages=tuple(messages), seed=seed)


async def ask_longer(complete, request: ModelRequest, reply: ModelReply, rounds: int, failures: list | None = None):
    """While ``reply`` is cut off (:func:`is_cut_off`), ask ``request`` again with twice its ``max_tokens``
    (at most :data:`psychometrics.limits.MAX_TOKENS`), up to ``rounds`` times. Same messages and seed: the
    model is given room, not a new question.

    Returns (the last request sent, its reply, the texts of the cut replies before it). A failing call
    raises, unless ``failures`` is a list: then the exception is appended to it and the last reply
    received is returned."""
    cut: list[str] = []
    for _ in range(rounds):
        if not is_cut_off(reply) or request.max_tokens >= limits.MAX_TOKENS:
            break
        longer = replace(request, max_tokens=min(limits.MAX_TOKENS, request.max_tokens * 2))
        try:
            again = (await complete(longer)).cleaned()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller decides (see failures)
            if failures is None:
                raise
            failures.append(exc)
            break
        cut.append(reply.text or "")
        request, reply = longer, again
    return request, reply, cut


async def converse(complete, planned: PlannedRequest, reasks: int, failures: list | None = None, longer: int = 0):
    """Ask once; in text mode, ask again with more tokens while the reply is cut off (up to ``longer``
    times, :func:`ask_longer`), then re-ask in the same conversation while some item is invalid (up to
    ``reasks`` times), keeping the first valid answer of each item.

    Returns (the reply, final reply text, earlier reply texts, parsed items or None, cut-off reply texts).
    ``reply`` is the first reply given room enough (or the last cut one): its finish reason and token
    counts are stored. A failing re-ask raises, unless ``failures`` is a list: then the exception is
    appended to it and the replies so far are returned (the final text being the last reply received).
    """
    request = planned.request
    reply = (await complete(request)).cleaned()
    cut: list[str] = []
    if request.mode == "text" and longer:
        request, reply, cut = await ask_longer(complete, request, reply, longer, failures)
    if request.mode != "text" or reasks == 0 or failures:
        return reply, reply.text, [], None, cut
    parsed = parse_items(planned, reply.text)
    if is_cut_off(reply):
        parsed = cut_off_outcomes(parsed)
    history: list[str] = []
    final_text = reply.text
    for round_ in range(1, reasks + 1):
        if all(p.outcome == "valid" for p in parsed):
            break
        history.append(final_text or "")
        try:
            again = (await complete(_reask_request(request, len(planned.items) > 1, history, round_))).cleaned()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller decides (see failures)
            if failures is None:
                raise
            failures.append(exc)
            history.pop()  # final_text is that reply again
            break
        final_text = again.text
        results = parse_items(planned, again.text)
        if is_cut_off(again):
            results = cut_off_outcomes(results)
        for index, result in enumerate(results):
            if parsed[index].outcome != "valid" and result.outcome == "valid":
                parsed[index] = result
    return reply, final_text, history, parsed, cut


class RequestWork:
    """How to do one questionnaire request (:class:`~psychometrics.engine.pool.Work`): converse (with up to
    ``reasks`` re-asks of unreadable text replies, and up to ``longer`` longer re-asks of cut-off ones) and
    classify the reply into one row per item, with the prompt to store beside them. Any failure of the
    model becomes failure rows saying why; a re-ask that fails keeps the reply before it (paid for: kept
    as parsed, and not sent again) with a note. Cut-off replies asked again are kept in
    ``reask_replies`` (before any conversation re-ask), counted in ``reasks`` and named in the note."""

    def __init__(self, reasks: int = 0, price=None, longer: int = 0, prefetched: Prefetched | None = None):
        self.reasks = reasks
        self.price = price  # prices each answer (psychometrics.cost): every call of the request is paid
        self.longer = longer
        self.prefetched = prefetched or Prefetched()

    async def __call__(self, planned_request: PlannedRequest, attempts: int, call: Call, stats: RunStats) -> Result:
        prompt = [[m.role, m.content] for m in planned_request.prompt.messages]
        t0 = time.perf_counter()
        reask_failures: list[BaseException] = []
        from psychometrics.cost.actual import ReplyCosts

        costs = ReplyCosts(self.price)
        call = self.prefetched.wrap(call)

        async def paid_call(request: ModelRequest) -> ModelReply:
            reply = await call(request)
            costs.add(reply)
            return reply

        try:
            reply, final_text, history, parsed, cut = await converse(
                paid_call, planned_request, self.reasks, reask_failures, self.longer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure is recorded, not fatal
            return Result(failure_rows(planned_request, exc, time.perf_counter() - t0, attempts), prompt)
        stats.reasks += len(history) + len(cut)
        reply.cost = costs.total if self.price is not None else reply.cost
        rows = answer_rows(planned_request, reply, time.perf_counter() - t0, attempts, parsed)
        stats.cut_off += any(row.outcome == "truncated" for row in rows)
        notes = []
        if cut:
            limit = planned_request.request.max_tokens
            notes.append(f"cut off at max_tokens {limit}; asked again with up to "
                         f"{min(limits.MAX_TOKENS, limit * 2 ** len(cut))}")
        if reask_failures:
            stats.reasks_failed += 1
            notes.append(f"re-ask {len(history) + len(cut) + 1} failed, reply before it kept: "
                         f"{failure_reason(reask_failures[0])}")
        if history or cut or notes:
            for row in rows:
                row.raw_reply, row.reasks = final_text, len(history) + len(cut)
                row.reask_replies, row.note = (cut + history) or None, "; ".join(notes) or None
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
    longer: int = 0,
    prefetched: Prefetched | None = None,
) -> RunStats:
    """Send every unanswered request in ``planned`` that no other process has claimed, committing each
    answer as it arrives (:func:`psychometrics.engine.pool.send_all` with :class:`RequestWork`). ``lease_s``:
    how long a claim of this run outlives it if it dies on another host. ``price``
    (:class:`psychometrics.cost.prices.Price`): each answer's cost from its usage, stored with it (re-asks
    included). ``longer``: how many times a cut-off reply is asked again with twice the tokens.
    ``prefetched``: replies received already (a capability probe's, :mod:`psychometrics.engine.probe`), used
    instead of sending those requests again."""
    stats = await send_all(planned, store, RequestWork(reasks, price, longer, prefetched), backend=backend,
                           concurrency=concurrency, timeout_s=timeout_s, retry=retry, on_answer=on_answer, lease_s=lease_s)
    if prefetched is not None:
        prefetched.count_into(stats)  # a probe that failed transiently was its request's first try
    return stats
