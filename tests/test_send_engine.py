"""The send engine itself (:mod:`psychometrics.engine.pool`), with a fake unit of work, on both stores that
implement its sink: every unit sent once even by two engines on one store; a unit's result committed before
the worker awaits another; a failure recorded, not fatal; transient failures retried; attempts counted on
across runs; a cancelled run stores nothing of its units in flight, frees their claims, and resuming sends
only those."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from dataclasses import dataclass

import pytest

from psychometrics.behavior.store import BehaviorStore, ConversationRow
from psychometrics.engine.pool import Result, RetryPolicy, send_all
from psychometrics.models.base import Message, ModelBackend, ModelReply, ModelRequest, TransientModelError
from psychometrics.run.store import ResponseRow, RunStore
from psychometrics.testing.waiting import wait_for_async

FAST_RETRY = RetryPolicy(max_retries=3, base_s=0.001, cap_s=0.002)


@dataclass(frozen=True)
class Unit:
    request_id: str


class Kind:
    """One store kind: how to open it, make a unit's row, and read what is committed (its own connection)."""

    def __init__(self, name, store_class, filename, table, make_row):
        self.name, self.store_class, self.filename, self.table, self.make_row = name, store_class, filename, table, make_row

    def committed(self, path) -> dict[str, tuple[str | None, int]]:
        """request id -> (error, attempts) of what another connection sees committed."""
        reader = sqlite3.connect(path)
        try:
            return {rid: (error, attempts) for rid, error, attempts in
                    reader.execute(f"SELECT request_id, error, attempts FROM {self.table}")}
        except sqlite3.OperationalError:  # no table yet
            return {}
        finally:
            reader.close()

    def claims(self, path) -> int:
        reader = sqlite3.connect(path)
        try:
            return reader.execute("SELECT count(*) FROM claims").fetchone()[0]
        finally:
            reader.close()


def _response_row(request_id: str, text: str | None, error: str | None, attempts: int) -> ResponseRow:
    return ResponseRow(request_id, "fake", "item", 0, {}, "hash-" + request_id, ["a"], [1], "text", text, None,
                       "error" if error else "valid", error=error, attempts=attempts)


def _conversation_row(request_id: str, text: str | None, error: str | None, attempts: int) -> ConversationRow:
    return ConversationRow(request_id, "fake", "v1", "trait", 1, "none", 0, ["a"],
                           [["user", request_id], ["assistant", text or ""]], "error" if error else "valid",
                           error=error, attempts=attempts)


KINDS = [Kind("questionnaire", RunStore, "responses.sqlite", "responses", _response_row),
         Kind("behaviour", BehaviorStore, "behavior.sqlite", "conversations", _conversation_row)]


class FakeBackend(ModelBackend):
    """Echoes the unit id; fails the ids in ``failing`` for good and those in ``flaky`` once (transiently)."""

    name = "fake"

    def __init__(self, failing=(), flaky=(), pause=None):
        self.failing, self.flaky, self.pause = set(failing), set(flaky), pause
        self.sent = Counter()

    async def complete(self, request: ModelRequest) -> ModelReply:
        unit = request.messages[-1].content
        self.sent[unit] += 1
        if self.pause is not None:
            await self.pause(unit)
        await asyncio.sleep(0)
        if unit in self.flaky and self.sent[unit] == 1:
            raise TransientModelError("overloaded")
        if unit in self.failing:
            raise ValueError(f"refused {unit}")
        return ModelReply(text=f"reply to {unit}")


class FakeWork:
    """One model call per unit, its reply (or failure) as one row; ``before`` runs as each unit starts."""

    def __init__(self, kind: Kind, before=None):
        self.kind, self.before = kind, before

    async def __call__(self, unit: Unit, attempts: int, call, stats) -> Result:
        if self.before is not None:
            self.before(unit)
        try:
            reply = await call(ModelRequest((Message("user", unit.request_id),), ()))
        except Exception as exc:  # noqa: BLE001 - recorded as the unit's failure
            return Result([self.kind.make_row(unit.request_id, None, f"{type(exc).__name__}: {exc}", attempts)],
                          [["user", unit.request_id]])
        return Result([self.kind.make_row(unit.request_id, reply.text, None, attempts)], [["user", unit.request_id]])


def _units(n: int) -> list[Unit]:
    return [Unit(f"u{i:03d}") for i in range(n)]


def _run(kind: Kind, path, units, backend, *, concurrency=4, before=None, on_answer=None):
    async def go():
        with kind.store_class(path, read_only=False) as store:
            return await send_all(units, store, FakeWork(kind, before), backend=backend, concurrency=concurrency,
                                  retry=FAST_RETRY, on_answer=on_answer)

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_two_engines_on_one_store_send_each_unit_once(kind, tmp_path):
    path = tmp_path / kind.filename
    units = _units(40)
    both_sending = asyncio.Event()  # made in the test's loop below (an Event binds on first wait)

    async def hold_until_both_engines_send(unit):
        # the first answers wait until more units are in flight than one engine may hold (4): the other
        # engine has claimed some, whatever the scheduling (an instant backend let one engine take all 40)
        if sum(backend.sent.values()) > 4:
            both_sending.set()
        await both_sending.wait()

    backend = FakeBackend(pause=hold_until_both_engines_send)

    async def go():
        with kind.store_class(path, read_only=False) as one, kind.store_class(path, read_only=False) as two:
            return await asyncio.gather(
                send_all(units, one, FakeWork(kind), backend=backend, concurrency=4),
                send_all(units, two, FakeWork(kind), backend=backend, concurrency=4))

    first, second = asyncio.run(go())
    assert set(backend.sent) == {u.request_id for u in units} and set(backend.sent.values()) == {1}
    assert first.sent + second.sent == 40 and first.sent > 0 and second.sent > 0
    for stats in (first, second):  # what one engine did not send, it left to the other
        assert stats.sent + stats.claimed_elsewhere == 40 and stats.failed == 0
    assert kind.committed(path) == {u.request_id: (None, 1) for u in units}
    assert kind.claims(path) == 0


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_result_is_committed_before_the_worker_takes_another_unit(kind, concurrency, tmp_path):
    """When a unit starts, every unit started before it is committed, except those other workers still hold."""
    path = tmp_path / kind.filename
    units = _units(30)
    started: list[str] = []
    uncommitted: list[int] = []

    def before(unit):
        committed = kind.committed(path)
        uncommitted.append(sum(1 for rid in started if rid not in committed))
        started.append(unit.request_id)

    stats = _run(kind, path, units, FakeBackend(), concurrency=concurrency, before=before)
    assert stats.sent == 30 and len(started) == 30
    assert max(uncommitted) <= concurrency - 1
    if concurrency == 1:
        assert started == [u.request_id for u in units] and set(uncommitted) == {0}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_failure_is_recorded_not_fatal_and_a_transient_one_retried(kind, tmp_path):
    path = tmp_path / kind.filename
    units = _units(10)
    seen: list[str] = []
    backend = FakeBackend(failing={"u003"}, flaky={"u005"})
    stats = _run(kind, path, units, backend, on_answer=lambda rows: seen.extend(r.request_id for r in rows))
    committed = kind.committed(path)
    assert committed["u003"] == ("ValueError: refused u003", 1)
    assert {rid for rid, (error, _) in committed.items() if error is None} == {u.request_id for u in units} - {"u003"}
    assert stats.sent == 10 and stats.failed == 1 and stats.first_error == "ValueError: refused u003"
    assert stats.retries == 1 and backend.sent["u005"] == 2
    assert stats.outcomes == {"valid": 9, "error": 1} and stats.items_answered == 9
    assert sorted(seen) == [u.request_id for u in units]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_attempts_are_counted_on_across_runs_and_answers_never_resent(kind, tmp_path):
    path = tmp_path / kind.filename
    units = _units(5)
    for run in (1, 2):
        stats = _run(kind, path, units, FakeBackend(failing={"u001"}))
        assert stats.sent == (5 if run == 1 else 1) and stats.already_answered == (0 if run == 1 else 4)
        assert kind.committed(path)["u001"] == ("ValueError: refused u001", run)
    backend = FakeBackend()
    stats = _run(kind, path, units, backend)
    assert dict(backend.sent) == {"u001": 1} and stats.failed == 0
    assert kind.committed(path)["u001"] == (None, 3)
    backend = FakeBackend()
    stats = _run(kind, path, units, backend)
    assert not backend.sent and stats.sent == 0 and stats.already_answered == 5


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_cancelled_run_keeps_what_it_committed_and_resuming_sends_only_the_rest(kind, tmp_path):
    path = tmp_path / kind.filename
    units = _units(12)
    gate = asyncio.Event()

    async def hold_from_the_sixth(unit):
        if int(unit[1:]) >= 5:
            await gate.wait()  # never set: these units are in flight when the run is cancelled

    backend = FakeBackend(pause=hold_from_the_sixth)

    async def go():
        with kind.store_class(path, read_only=False) as store:
            task = asyncio.create_task(send_all(units, store, FakeWork(kind), backend=backend, concurrency=2))
            await wait_for_async(lambda: sum(backend.sent.values()) == 7, "two units in flight")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(go())
    assert set(kind.committed(path)) == {f"u{i:03d}" for i in range(5)}
    assert kind.claims(path) == 0  # the units in flight are free for the next run at once
    resumed = FakeBackend()
    stats = _run(kind, path, units, resumed)
    assert set(resumed.sent) == {f"u{i:03d}" for i in range(5, 12)} and set(resumed.sent.values()) == {1}
    assert stats.already_answered == 5 and stats.sent == 7
