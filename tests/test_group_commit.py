"""Answers that arrive together are committed together (one transaction per event-loop turn), and still
every worker's answer is committed before that worker sends its next request; a row SQLite refuses is
stored as a failure saying why and takes no other answer of its transaction down with it."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from psychometrics.engine.pool import TurnBatch
from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.base import ModelBackend, ModelReply, ModelRequest
from psychometrics.run.directory import administer
from psychometrics.run.store import RunStore

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
    # the batch failed, so each item was tried on its own: only the bad one fails
    assert calls[1:] == [["d", "bad"], ["d"], ["bad"]]
    assert second[0] == "D" and isinstance(second[1], RuntimeError) and "disk full" in str(second[1])
    with pytest.raises(RuntimeError):
        asyncio.run(batch("bad"))


def _rows(planned, text: str, **fields):
    from psychometrics.engine.send import answer_rows
    from psychometrics.models.base import ModelReply

    rows = answer_rows(planned, ModelReply(text=text), 0.01, 1)
    for row in rows:
        for name, value in fields.items():
            setattr(row, name, value)
    return rows


@pytest.mark.parametrize("poison, reason", [
    ({"raw_reply": "3 \ud83d"}, "UnicodeEncodeError"),  # half an emoji, past every cleaning
    ({"output_tokens": 10**30}, "OverflowError"),  # a count no SQLite integer holds
])
def test_a_row_sqlite_refuses_is_stored_as_a_failure_and_the_rest_of_the_batch_commits(tmp_path, poison, reason):
    from psychometrics.design.plan import plan_requests

    planned = plan_requests([resolve_inventory("mini-ipip")], Design(), "m", {})[:4]
    with RunStore(tmp_path / "responses.sqlite") as store:
        claims = store.claims()
        items = [(_rows(p, "3", **(poison if i == 1 else {})), [["user", "q"]], None) for i, p in enumerate(planned)]
        assert store.write_and_claim(items, claims) == [None] * 4
        stored = {r.request_id: r for r in store.rows()}
        assert len(stored) == 4
        bad = stored[planned[1].request_id]
        assert bad.outcome == "error" and bad.error.startswith(f"could not store the reply ({reason}")
        assert items[1][0][0].error == bad.error  # the caller's rows say so too (the run counts it as failed)
        assert all(stored[p.request_id].outcome == "valid" for i, p in enumerate(planned) if i != 1)
        assert store.answered_ids() == {p.request_id for i, p in enumerate(planned) if i != 1}  # resent next run
    check = sqlite3.connect(tmp_path / "responses.sqlite")
    assert check.execute("SELECT COUNT(*) FROM prompts").fetchone()[0] == 4  # the failed one's prompt too
    check.close()


def test_an_answer_is_never_replaced_by_a_later_one(tmp_path):
    from psychometrics.design.plan import plan_requests

    planned = plan_requests([resolve_inventory("mini-ipip")], Design(), "m", {})[0]
    with RunStore(tmp_path / "responses.sqlite") as store:
        assert store.write(_rows(planned, "4")) is True
        assert store.write(_rows(planned, "2")) is False  # a late duplicate (another process sent it too)
        assert store.write(_rows(planned, "", error="TransientModelError: late")) is False
        assert [(r.raw_reply, r.value, r.error) for r in store.rows()] == [("4", 4.0, None)]
