"""Running behavioural tasks: plan the conversations, send each turn, commit every reply as it arrives.

A behaviour run is its own session, separate from questionnaires: a model never sees a questionnaire
and a task in one conversation. Each conversation is one task variant x persona x sample. Its option
(or item) order follows the run's order rule (:mod:`psychometrics.behavior.order`): ``balanced`` within
each respondent and task (the default), or ``random``, drawn per conversation from a seed derived from
the run seed and the conversation (the rule of runs whose manifest records none). Either way it is
reproducible. Turns are sent in order, each with the earlier replies in the transcript; each reply is
committed before the next turn is sent, and a resumed run continues from the first turn without a
stored reply.

Answer mode (``--mode``): ``text`` generates replies and reads them; ``probs`` reads a single-turn
choice variant's answer from the model's next-token probabilities over its option labels (the
questionnaires' probability mode and backends), once under each of the k rotations of its option
order, so every option is shown first once and the position bias averages out; ``both`` does both.
A task whose kind cannot be read so (free text, numbers, item lists, several turns) is refused in
``probs`` mode and left to text in ``both`` (:func:`probs_tasks`).

The run directory holds ``manifest.json`` (with ``"study": "behavior"``; never an API key) and
``behavior.sqlite`` (:mod:`psychometrics.behavior.store`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from psychometrics import limits
from psychometrics.engine.probe import Prefetched, probe_before_run
from psychometrics.engine.pool import Result, RetryPolicy, RunStats, failure_reason, send_all
from psychometrics.behavior.kinds import Rendered, Scored, get_kind
from psychometrics.behavior.store import BehaviorStore, ConversationRow, TurnReply
from psychometrics.behavior.task import Task, Variant
from psychometrics.errors import PsytestError
from psychometrics.models.base import Message, ModelBackend, ModelRequest
from psychometrics.design.personas import PersonaSet

from psychometrics.run.owner import BEHAVIOR_DB


MODES = ("text", "probs", "both")


@dataclass(frozen=True)
class BehaviorDesign:
    """What to run: repeated samples, sampling settings, personas, and how many variants per task
    (``None``: all, in file order)."""

    samples: int = 1
    temperature: float = 0.0
    seed: int = 0
    personas: Optional[str] = None
    persona_ids: Optional[tuple[str, ...]] = None
    variants: Optional[int] = None
    order: str = "balanced"
    mode: str = "text"
    max_tokens: Optional[int] = None  # every task's reply limit instead of its own (--max-tokens)

    def __post_init__(self) -> None:
        from psychometrics.behavior.order import ORDER_RULES

        if self.order not in ORDER_RULES:
            raise PsytestError(f"--order {self.order}: give one of {', '.join(ORDER_RULES)}")
        if self.mode not in MODES:
            raise PsytestError(f"--mode {self.mode}: give one of {', '.join(MODES)}")
        if not 1 <= self.samples <= 10_000:
            raise PsytestError(f"--samples {self.samples}: give a number of samples between 1 and 10000")
        if not 0.0 <= self.temperature <= 2.0:
            raise PsytestError(f"--temperature {self.temperature}: give a temperature between 0 and 2")
        if self.variants is not None and self.variants < 1:
            raise PsytestError(f"--variants {self.variants}: give at least 1 variant per task (or omit for all)")
        if self.max_tokens is not None and not 1 <= self.max_tokens <= limits.MAX_TOKENS:
            raise PsytestError(f"--max-tokens {self.max_tokens}: give a reply limit between 1 and {limits.MAX_TOKENS:,}")

    def as_manifest(self) -> dict:
        return {
            "samples": self.samples, "temperature": self.temperature, "seed": self.seed, "personas": self.personas,
            "persona_ids": list(self.persona_ids) if self.persona_ids else None, "variants": self.variants,
            "order": self.order, "mode": self.mode, "max_tokens": self.max_tokens,
        }

    def applied(self, task: Task) -> Task:
        """``task`` as this run sends it: with the run's reply limit when it sets one."""
        return task if self.max_tokens is None else task.model_copy(update={"max_tokens": self.max_tokens})

    @property
    def modes(self) -> tuple[str, ...]:
        """The answer modes of the run's conversations."""
        return ("text", "probs") if self.mode == "both" else (self.mode,)


@dataclass(frozen=True)
class PlannedConversation:
    request_id: str
    task: Task
    variant: Variant
    persona: str  # persona id or "none"
    persona_text: Optional[str]
    sample: int
    rendered: Rendered
    seed: int
    mode: str = "text"  # "probs": one request reading the option labels' probabilities

    def messages(self, replies: list[str | None], upto: int) -> tuple[Message, ...]:
        """The transcript sent for turn ``upto`` (0-based): system persona, then user/assistant turns."""
        messages = [Message("system", self.persona_text)] if self.persona_text else []
        for turn in range(upto + 1):
            messages.append(Message("user", self.rendered.turns[turn]))
            if turn < upto:
                messages.append(Message("assistant", replies[turn] or ""))
        return tuple(messages)


@dataclass
class BehaviorResult:
    run_dir: Path
    stats: RunStats
    planned: list[PlannedConversation] = field(default_factory=list)


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def _seed(*parts: object) -> int:
    return int(_digest(list(parts))[:8], 16) & 0x7FFFFFFF


def prompt_hash(task: Task, n_variants: int | None = None) -> str:
    """sha256 of everything a model receives from ``task``: each variant a run uses (the first
    ``n_variants``, all when None) rendered with a fixed display order, the kind and the reply limit.
    Scoring rules, patterns and option values are not in it, so a corrected scoring rule applies to stored
    replies instead of making them a different run; nor are variants the run does not use, so variants
    added to a task later leave earlier runs as they were."""
    kind = get_kind(task.kind)
    variants = task.variants[:n_variants] if n_variants else task.variants
    rendered = [(variant.id, kind.render(task, variant, np.random.default_rng(0))) for variant in variants]
    return _digest({
        "kind": task.kind, "max_tokens": task.max_tokens,
        "variants": [[variant_id, list(r.turns), list(r.display)] for variant_id, r in rendered],
    })


def probs_tasks(tasks: list[Task], design: BehaviorDesign) -> tuple[list[Task], list[Task]]:
    """(tasks read in probability mode, tasks that cannot be), for the variants the run uses. In
    ``probs`` mode a task that cannot is refused in one line naming it; in ``both`` it is text only."""
    readable, not_readable = [], []
    for task in tasks:
        kind = get_kind(task.kind)
        variants = task.variants[: design.variants] if design.variants else task.variants
        (readable if all(kind.probs_readable(task, v) for v in variants) else not_readable).append(task)
    if design.mode == "probs" and not_readable:
        task = not_readable[0]
        raise PsytestError(
            f"--mode probs: task '{task.id}' (kind {task.kind}) cannot be read from option-label probabilities "
            "(only single-turn choice tasks can); leave it out, or use --mode text or both")
    return (readable if "probs" in design.modes else []), not_readable


def _request_id(model: str, backend_params: dict, task: Task, variant: Variant, rendered: Rendered,
                persona_text: str | None, sample: int, design: BehaviorDesign, seed: int, mode: str) -> str:
    payload = {
        "model": model, "params": backend_params, "task": task.id, "variant": variant.id,
        "turns": list(rendered.turns), "display": list(rendered.display), "persona": persona_text,
        "sample": sample, "temperature": design.temperature, "seed": seed, "max_tokens": task.max_tokens,
    }
    if mode != "text":  # text ids keep the form runs made before probability mode have
        payload["mode"] = mode
    return _digest(payload)


def plan_conversations(
    tasks: list[Task], design: BehaviorDesign, model: str, backend_params: dict, persona_set: PersonaSet | None
) -> list[PlannedConversation]:
    """Every conversation of the run, persona-major (a local model reuses the persona prefix). More than
    :data:`psychometrics.limits.PLANNED_CONVERSATIONS` is refused before any is planned.

    Display orders follow ``design.order`` (:mod:`psychometrics.behavior.order`). In probability mode
    each variant of a readable task is planned once per rotation of its respondent's base order."""
    from psychometrics.behavior.order import all_rotations, balanced_orders

    personas = persona_set.select(list(design.persona_ids) if design.persona_ids else None) if persona_set else None
    people = [(p.id, p.text) for p in personas] if personas else [("none", None)]
    readable, _ = probs_tasks(tasks, design)
    readable_ids = {t.id for t in readable}
    used = {t.id: (t.variants[: design.variants] if design.variants else t.variants) for t in tasks}
    per_person = 0
    for task in tasks:
        kind = get_kind(task.kind)
        if "text" in design.modes:
            per_person += len(used[task.id])
        if task.id in readable_ids:
            per_person += sum(kind.shown_entries(v) for v in used[task.id])
    count = len(people) * design.samples * per_person
    if count > limits.PLANNED_CONVERSATIONS:
        raise PsytestError(
            f"behave: {count:,} conversations planned, more than the {limits.PLANNED_CONVERSATIONS:,} one run holds; "
            "use fewer samples, variants, tasks or personas, or split the study into several runs")
    planned = []
    for persona_id, persona_text in people:
        balanced: dict[str, tuple] = {}
        if design.order == "balanced":
            for task in tasks:
                kind = get_kind(task.kind)
                rng = np.random.default_rng(_seed(design.seed, "order", task.id, persona_id))
                balanced[task.id] = balanced_orders([kind.shown_entries(v) for v in used[task.id]], design.samples, rng)
        for sample in range(design.samples):
            for task in tasks:
                kind = get_kind(task.kind)
                for index, variant in enumerate(used[task.id]):
                    seed = _seed(design.seed, task.id, variant.id, persona_id, sample)
                    if design.order == "balanced":
                        order = balanced[task.id][0][sample][index]
                        rendered = kind.render(task, variant, None, order)
                    else:
                        rendered = kind.render(task, variant, np.random.default_rng(seed))
                    if "text" in design.modes:
                        request_id = _request_id(model, backend_params, task, variant, rendered, persona_text, sample,
                                                 design, seed, "text")
                        planned.append(PlannedConversation(
                            request_id, task, variant, persona_id, persona_text, sample, rendered, seed))
                    if task.id not in readable_ids:
                        continue
                    by_id = {e.id: i for i, e in enumerate(kind._entries(variant))}
                    base = (balanced[task.id][1][len(rendered.display)] if design.order == "balanced"
                            else [by_id[i] for i in rendered.display])
                    for rotated in all_rotations(base):
                        shown = kind.render(task, variant, None, rotated)
                        request_id = _request_id(model, backend_params, task, variant, shown, persona_text, sample,
                                                 design, seed, "probs")
                        planned.append(PlannedConversation(
                            request_id, task, variant, persona_id, persona_text, sample, shown, seed, "probs"))
    return planned


def truncated_turns(task: Task, output_tokens: Sequence[int | None]) -> list[bool | None]:
    """Per turn: did the reply use the whole ``max_tokens`` (cut off)? None when the backend gave no count."""
    return [None if n is None else n >= task.max_tokens for n in output_tokens]


def score_conversation(planned_task: Task, variant: Variant, rendered: Rendered, replies: list[str | None],
                       truncated: Sequence[bool | None] = ()):
    """Score the replies with the task's kind (shared by the runner and the analysis). A last reply cut
    off at ``max_tokens`` is handled as the kind declares (:attr:`Kind.truncation`) and flagged in the
    detail (``truncated``). A reply longer than :data:`psychometrics.limits.REPLY_CHARS` is not read
    (missing, reason ``too_long``)."""
    kind = get_kind(planned_task.kind)
    longest = max((len(r) for r in replies if r), default=0)
    if longest > limits.REPLY_CHARS:  # reading it would take minutes: the server ignored max_tokens
        return Scored("unparseable", None, {"reason": "too_long", "characters": longest})
    cut = bool(truncated) and bool(truncated[-1]) and bool(replies) and replies[-1] is not None
    if cut and kind.truncation == "missing":
        return Scored("truncated", None, {"truncated": True})
    if cut and kind.truncation == "drop_last_line" and "\n" in replies[-1].rstrip():
        replies = [*replies[:-1], replies[-1].rstrip().rsplit("\n", 1)[0]]
    scored = kind.score(planned_task, variant, rendered, replies)
    return Scored(scored.outcome, scored.score, {**(scored.detail or {}), "truncated": True}) if cut else scored


def probs_request(conversation: PlannedConversation) -> ModelRequest:
    """The one request of a probability-mode conversation: its first turn, scored over the option labels."""
    labels = get_kind(conversation.task.kind).probs_labels(conversation.variant, conversation.rendered)
    return ModelRequest(conversation.messages([], 0), labels, "probs", 0.0, _seed(conversation.seed, 0), 1)


class ConversationWork:
    """How to do one behaviour conversation (:class:`~psychometrics.engine.pool.Work`): send its turns in
    order, each with the earlier replies in the transcript, committing each reply to ``store`` as it
    arrives (a resumed conversation starts at its first turn without a stored reply); then score it into
    a :class:`ConversationRow`. A failed call ends the conversation as a failure row saying why (its
    replies so far stay stored, and are not sent again)."""

    def __init__(self, store: BehaviorStore, design: BehaviorDesign, prefetched: Prefetched | None = None):
        self.store = store
        self.design = design
        self.prefetched = prefetched or Prefetched()  # a capability probe's reply (engine.probe)

    async def __call__(self, conversation: PlannedConversation, attempts: int, call, stats: RunStats) -> Result:
        if conversation.mode == "probs":
            return await self._probs(conversation, attempts, self.prefetched.wrap(call))
        store = self.store
        stored = {t.turn: t for t in store.turns(conversation.request_id)}
        replies: list[str | None] = []
        latency = 0.0
        tokens_in = tokens_out = 0
        turn_tokens: list[int | None] = []
        row = ConversationRow(
            conversation.request_id, conversation.task.id, conversation.variant.id, conversation.task.trait,
            conversation.task.direction, conversation.persona, conversation.sample, list(conversation.rendered.display),
            [], "error", attempts=attempts,
        )
        try:
            for turn in range(len(conversation.rendered.turns)):
                if turn in stored:
                    reply = stored[turn]
                else:
                    request = ModelRequest(
                        conversation.messages(replies, turn), (), "text", self.design.temperature,
                        _seed(conversation.seed, turn), conversation.task.max_tokens,
                    )
                    t0 = time.perf_counter()
                    answer = await call(request)
                    reply = TurnReply(turn, answer.text, time.perf_counter() - t0, answer.input_tokens, answer.output_tokens)
                    store.write_turn(conversation.request_id, reply)
                replies.append(reply.reply)
                latency += reply.latency_s or 0.0
                tokens_in += reply.input_tokens or 0
                tokens_out += reply.output_tokens or 0
                turn_tokens.append(reply.output_tokens)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed call is recorded, not fatal
            row.error = failure_reason(exc)
        row.transcript = [[m.role, m.content] for m in conversation.messages(replies, len(replies) - 1)] if replies else []
        if replies:
            row.transcript.append(["assistant", replies[-1] or ""])
        row.latency_s, row.input_tokens, row.output_tokens = latency, tokens_in or None, tokens_out or None
        if row.error is None:
            scored = score_conversation(conversation.task, conversation.variant, conversation.rendered, replies,
                                        truncated_turns(conversation.task, turn_tokens))
            row.outcome, row.score, row.detail = scored.outcome, scored.score, scored.detail
            stats.cut_off += scored.outcome == "truncated" or bool((scored.detail or {}).get("truncated"))
        return Result([row])


    async def _probs(self, conversation: PlannedConversation, attempts: int, call) -> Result:
        """One request for the option labels' log-probabilities, committed (as JSON, turn 0) before it is
        scored; a resumed run reads a stored one instead of asking again."""
        kind = get_kind(conversation.task.kind)
        messages = conversation.messages([], 0)
        row = ConversationRow(
            conversation.request_id, conversation.task.id, conversation.variant.id, conversation.task.trait,
            conversation.task.direction, conversation.persona, conversation.sample, list(conversation.rendered.display),
            [[m.role, m.content] for m in messages], "error", detail={"mode": "probs"}, attempts=attempts,
        )
        stored = {t.turn: t for t in self.store.turns(conversation.request_id)}
        try:
            if 0 in stored:
                reply = stored[0]
            else:
                request = probs_request(conversation)
                t0 = time.perf_counter()
                answer = await call(request)
                reply = TurnReply(0, json.dumps(answer.choice_logprobs or {}, sort_keys=True),
                                  time.perf_counter() - t0, answer.input_tokens, answer.output_tokens)
                self.store.write_turn(conversation.request_id, reply)
            logprobs = stored_logprobs(reply.reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed call is recorded, not fatal
            row.error = failure_reason(exc)
            return Result([row])
        row.latency_s, row.input_tokens, row.output_tokens = reply.latency_s, reply.input_tokens, reply.output_tokens
        scored = kind.score_probs(conversation.task, conversation.variant, conversation.rendered, logprobs)
        row.outcome, row.score, row.detail = scored.outcome, scored.score, scored.detail
        return Result([row])


def stored_logprobs(text: str | None) -> dict[str, float]:
    """Label log-probabilities as a probability-mode turn stores them (JSON), checked as a backend's are
    (:func:`psychometrics.models.base.label_logprobs`)."""
    from psychometrics.models.base import label_logprobs

    try:
        raw = json.loads(text or "{}")
    except ValueError:
        raise PsytestError("a stored probability-mode turn is not JSON; the store was changed or damaged") from None
    return label_logprobs(raw)


async def run_conversations(
    backend: ModelBackend,
    planned: list[PlannedConversation],
    store: BehaviorStore,
    *,
    design: BehaviorDesign,
    concurrency: int = 4,
    timeout_s: float | None = None,
    retry: RetryPolicy = RetryPolicy(),
    on_answer: Callable[[list], None] | None = None,
    lease_s: float | None = None,
    prefetched: Prefetched | None = None,
) -> RunStats:
    """Send every unfinished conversation; commit each reply as it arrives and each conversation's score
    (:func:`psychometrics.engine.pool.send_all` with :class:`ConversationWork`). Each conversation is
    claimed in the store before it is sent: a second process on the same run directory skips it
    (``claimed_elsewhere``) instead of paying for it twice."""
    stats = await send_all(planned, store, ConversationWork(store, design, prefetched), backend=backend,
                           concurrency=concurrency, timeout_s=timeout_s, retry=retry, on_answer=on_answer, lease_s=lease_s)
    if prefetched is not None:
        prefetched.count_into(stats)  # a probe that failed transiently was its request's first try
    return stats


def _probe(backend: ModelBackend, planned: list[PlannedConversation], run_dir: Path, timeout_s: float | None,
           retry: RetryPolicy) -> Prefetched:
    """The log-probability probe (:func:`psychometrics.engine.probe.probe_before_run`) with the first
    probability conversation that has neither a score nor a stored reply (a resumed run reads those)."""
    probs = ((p.request_id, probs_request(p)) for p in planned if p.mode == "probs")
    if not (run_dir / BEHAVIOR_DB).exists():
        return probe_before_run(backend, probs, timeout_s, None, retry)
    with BehaviorStore(run_dir / BEHAVIOR_DB, read_only=True) as store:
        answered = store.answered_ids()
        unsent = ((rid, request) for rid, request in probs if rid not in answered and not store.turns(rid))
        return probe_before_run(backend, unsent, timeout_s, None, retry)


def behavior_manifest(backend: ModelBackend, design: BehaviorDesign, tasks: list[Task], persona_set: PersonaSet | None,
                      planned: list[PlannedConversation], task_sources: dict[str, str] | None = None,
                      previous=None):
    """The manifest a behaviour run records: what it sends (each task's prompt hash, the planned
    conversation ids), where its tasks came from, and the endpoints used (``previous``: the manifest of
    the run being resumed, whose identity settings and endpoints are kept)."""
    from psychometrics.run.directory import now_utc, package_versions
    from psychometrics.run.identity import endpoints_used, identity_params, plan_hash
    from psychometrics.run.manifest import BehaviorDesignRecord, BehaviorManifest, PersonaSetRef, TaskRef

    return BehaviorManifest(
        model=backend.name, backend_params=identity_params(backend.params, previous),
        endpoints=endpoints_used(previous, backend, now_utc()), design=BehaviorDesignRecord(**design.as_manifest()),
        tasks=[TaskRef(id=t.id, prompt_hash=prompt_hash(t, design.variants)) for t in tasks],
        personas=(PersonaSetRef.of(persona_set, list(design.persona_ids) if design.persona_ids else None)
                  if persona_set else None),
        task_sources={t.id: (task_sources or {}).get(t.id, t.id) for t in tasks},
        task_content_hashes={t.id: t.content_hash for t in tasks}, conversations_planned=len(planned),
        plan=plan_hash(p.request_id for p in planned), created_at=now_utc(), packages=package_versions(),
    )


def behave(
    backend: ModelBackend,
    tasks: list[Task],
    design: BehaviorDesign,
    run_dir: Path,
    *,
    persona_set: PersonaSet | None = None,
    task_sources: dict[str, str] | None = None,
    concurrency: int = 4,
    timeout_s: float | None = None,
    retry: RetryPolicy = RetryPolicy(),
    on_start=None,
    on_answer=None,
) -> BehaviorResult:
    """Plan, record the manifest, send what is missing; returns the run statistics."""
    from psychometrics.run.directory import open_for_writing
    from psychometrics.run.identity import identity_params, previous_manifest

    if design.personas and persona_set is None:
        from psychometrics.design.personas import resolve_persona_set

        persona_set = resolve_persona_set(design.personas)
    backend.prepare([], persona_set)
    backend.prepare_tasks(tasks)
    previous = previous_manifest(run_dir)
    params = identity_params(backend.params, previous)
    planned = plan_conversations(tasks, design, backend.name, params, persona_set)
    manifest = behavior_manifest(backend, design, tasks, persona_set, planned, task_sources, previous)
    prefetched = Prefetched(retry)
    if any(p.mode == "probs" for p in planned):  # log-probabilities checked before anything is written
        prefetched = _probe(backend, planned, run_dir, timeout_s, retry)
    open_for_writing(run_dir, manifest, [p.request_id for p in planned])
    with BehaviorStore(run_dir / BEHAVIOR_DB, read_only=False) as store:
        store.check_contents()
        if on_start is not None:
            on_start(len(planned))

        async def send() -> RunStats:
            try:
                return await run_conversations(
                    backend, planned, store, design=design, concurrency=concurrency, timeout_s=timeout_s,
                    retry=retry, on_answer=on_answer, prefetched=prefetched,
                )
            finally:
                await backend.aclose()

        stats = asyncio.run(send())
    return BehaviorResult(run_dir, stats, planned)


def estimate_conversations(tasks: list[Task], design: BehaviorDesign, backend: ModelBackend,
                           persona_set: PersonaSet | None, run_dir: Path | None) -> dict:
    """What a run would send (``--dry-run``): conversations, turns and a token estimate."""
    from psychometrics.run.identity import identity_params, previous_manifest

    params = identity_params(backend.params, previous_manifest(run_dir))
    planned = plan_conversations(tasks, design, backend.name, params, persona_set)
    answered: set[str] = set()
    if run_dir is not None and (run_dir / BEHAVIOR_DB).exists():
        with BehaviorStore(run_dir / BEHAVIOR_DB, read_only=True) as store:
            answered = store.answered_ids()
    todo = [p for p in planned if p.request_id not in answered]
    turns = sum(len(p.rendered.turns) for p in todo)
    input_tokens = sum(
        (len(p.persona_text or "") + sum(len(t) for t in p.rendered.turns)) // 4 * len(p.rendered.turns) for p in todo
    )
    personas = ([p.id for p in persona_set.select(list(design.persona_ids) if design.persona_ids else None)]
                if persona_set else ["none"])
    variant_counts = {t.id: len(t.variants[: design.variants or None]) for t in tasks}
    factors = [
        {"factor": "task", "levels": len(tasks), "names": [t.id for t in tasks]},
        {"factor": "variant", "levels": sum(variant_counts.values()),
         "names": [f"{task}: {n}" for task, n in variant_counts.items()], "note": "variants per task, summed"},
        {"factor": "persona", "levels": len(personas), "names": personas},
        {"factor": "sample", "levels": design.samples, "names": [str(s) for s in range(design.samples)],
         "note": f"temperature {design.temperature:g}"},
    ]
    probs = sum(p.mode == "probs" for p in planned)
    if probs:
        factors.append({"factor": "mode", "levels": len(design.modes), "names": list(design.modes),
                        "note": "probs: each choice variant once per rotation of its option order"})
    text = len(planned) - probs
    formula = (f"{sum(variant_counts.values())} task variants x {len(personas)} personas x {design.samples} "
               f"samples = {text:,} {'text ' if probs else ''}conversations" if text else "")
    if probs:
        formula += ("; " if formula else "") + f"{probs:,} probability readings (one per option rotation)"
    return {
        "factors": factors,
        "formula": formula,
        "token_basis": "input: 4 characters per token of the persona and every turn so far, per turn; output: at most "
                       "each task's max_tokens per turn",
        "time": {"seconds": None, "basis": "not estimated for behaviour runs: conversations differ in turns and reply "
                 "lengths; time a few with --variants 1 first"},
        "conversations_planned": len(planned),
        "already_answered": len(planned) - len(todo),
        "to_send": len(todo),
        "turns_to_send": turns,
        "estimated_input_tokens": input_tokens,
        "estimated_output_tokens_max": sum((1 if p.mode == "probs" else p.task.max_tokens) * len(p.rendered.turns)
                                           for p in todo),
    }
