"""Answers that arrive together are committed together (one transaction per event-loop turn), and still
every worker's answer is committed before that worker sends its next request."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from psychometrics.administer import TurnBatch
from psychometrics.design import Design
from psychometrics.library import resolve_inventory
from psychometrics.models.base import ModelBackend, ModelReply, ModelRequest
from psychometrics.run import administer
from psychometrics.store import RunStore

CONCURRENCY = 16


class CheckingBackend(ModelBackend):
    """Answers on the next 20 ms tick; at every new request, checks in a separate connection that no more
    answers are uncommitted than other workers can be holding (concurrency - 1)."""

    name = "checking"

    def __init__(self, db):
        self.db = db
        self.returned = 0
        self.worst_gap = 0

    async def complete(self, request: ModelRequest) -> ModelReply:
        if self.db.exists():
            reader = sqlite3.connect(self.db, timeout=30)
            try:
                committed = reader.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            except sqlite3.OperationalError:
                committed = 0
            finally:
                reader.close()
            self.worst_gap = max(self.worst_gap, self.returned - committed)
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.02 - loop.time() % 0.02)  # answers arrive together, on 20 ms ticks
        self.returned += 1
        return ModelReply(text=request.choices[0])


def test_answers_are_committed_in_batches_before_each_worker_goes_on(tmp_path, monkeypatch):
    transactions = []
    original = RunStore.write_and_claim

    def counting(self, requests, *args, **kwargs):
        transactions.append(len(requests))
        return original(self, requests, *args, **kwargs)

    monkeypatch.setattr(RunStore, "write_and_claim", counting)
    out = tmp_path / "run"
    backend = CheckingBackend(out / "responses.sqlite")
    result = administer(backend, [resolve_inventory("bfi-44")], Design(samples=4, temperature=0.5), out,
                        concurrency=CONCURRENCY)
    assert result.stats.sent == 176 and result.stats.failed == 0
    with RunStore(out / "responses.sqlite") as store:
        assert store.count() == 176
    assert sum(transactions) == 176
    assert len(transactions) < 176 / 2 and max(transactions) > 1  # batched
    assert max(transactions) <= CONCURRENCY
    assert backend.worst_gap <= CONCURRENCY - 1  # a worker's own answer is always committed first


def test_turn_batch_hands_each_caller_its_result_or_the_failure():
    calls = []

    def many(items):
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("disk full")
        return [item.upper() for item in items]

    batch = TurnBatch(many)

    async def main():
        first = await asyncio.gather(*(batch(x) for x in ("a", "b", "c")))
        second = await asyncio.gather(batch("d"), batch("bad"), return_exceptions=True)
        return first, second

    first, second = asyncio.run(main())
    assert first == ["A", "B", "C"] and calls[0] == ["a", "b", "c"]
    assert all(isinstance(r, RuntimeError) and "disk full" in str(r) for r in second)
    with pytest.raises(RuntimeError):
        asyncio.run(batch("bad"))
