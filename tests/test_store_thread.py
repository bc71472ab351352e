"""The run store's commits run in a thread of their own (:class:`psychometrics.engine.pool.StoreThread`) with the
same guarantee as on the event loop: a worker is told its answer is stored (and goes on, and the run reports
the answer through ``on_answer``) only once the transaction holding it has committed. So an answer reported
done is in the store after a SIGKILL at any moment, and what arrives while a batch commits is the next batch."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest

from psychometrics.engine.pool import StoreThread, TurnBatch
from psychometrics.testing.waiting import HANG_GUARD_S

# The child: administers BFI-44 x 8 samples at 32 in flight against a loopback server, each commit held up
# 5 ms before it starts (so answers handed to the thread wait there uncommitted), and prints the request id
# of every answer the engine reports done (on_answer), flushed, one per line.
CHILD = r"""
import sys, time
from pathlib import Path
from psychometrics.design.plan import Design
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models import resolve_model
from psychometrics.run.directory import administer
from psychometrics.run.store import RunStore

original = RunStore.write_and_claim
def slow(self, items, claims):
    time.sleep(0.005)
    return original(self, items, claims)
RunStore.write_and_claim = slow

def reported(rows):
    print(rows[0].request_id, flush=True)

backend = resolve_model("openai/psytest-sim", api_base=sys.argv[1], timeout_s=60)
administer(backend, [resolve_inventory("bfi-44")], Design(samples=8, temperature=0.7), Path(sys.argv[2]),
           concurrency=32, on_answer=reported)
print("finished", flush=True)
"""


@pytest.mark.parametrize("kill_after", [1, 40, 150])
def test_an_answer_reported_done_is_in_the_store_after_sigkill(tmp_path, kill_after):
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.testing.openai_server import start_server

    out = tmp_path / "run"
    with start_server(SimulatedRespondent("sim/e=1,seed=3"), latency_s=0.01) as server:
        env = {**os.environ}
        env.pop("OPENAI_API_KEY", None)
        child = subprocess.Popen([sys.executable, "-c", CHILD, server.base_url, str(out)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
        reported: list[str] = []
        timer = threading.Timer(HANG_GUARD_S, child.kill)  # hang guard only
        timer.start()
        try:
            for line in child.stdout:  # each line: an answer the engine has reported done
                assert line.strip() != "finished", "the run ended before the kill"
                reported.append(line.strip())
                if len(reported) >= kill_after:
                    os.kill(child.pid, signal.SIGKILL)  # at once, with more answers in flight and in the thread
                    break
            child.wait(timeout=HANG_GUARD_S)
        finally:
            timer.cancel()
        assert child.returncode == -signal.SIGKILL, child.stderr.read()
    connection = sqlite3.connect(out / "responses.sqlite")
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in connection.execute("SELECT request_id FROM responses WHERE error IS NULL")}
    finally:
        connection.close()
    assert len(reported) == kill_after
    missing = [rid for rid in reported if rid not in stored]
    assert not missing, f"{len(missing)} of {len(reported)} answers reported done are not in the store"


def test_what_arrives_while_a_batch_commits_is_the_next_batch_and_each_caller_waits_for_its_commit():
    release = threading.Event()
    batches: list[list[str]] = []
    committed: set[str] = set()

    def many(items):
        batches.append(list(items))
        if len(batches) == 1:
            release.wait(HANG_GUARD_S)  # the first commit takes a while
        committed.update(items)
        return [item.upper() for item in items]

    thread = StoreThread()
    batch = TurnBatch(many, thread)

    async def main():
        async def submit(item):
            result = await batch(item)
            assert item in committed  # answered only after its batch's commit
            return result

        first = asyncio.ensure_future(submit("a"))
        while not batches:  # the first batch is in the thread
            await asyncio.sleep(0.001)
        later = [asyncio.ensure_future(submit(x)) for x in ("b", "c", "d")]
        await asyncio.sleep(0.05)
        assert not first.done() and not any(task.done() for task in later)  # all wait for the slow commit
        release.set()
        return await first, await asyncio.gather(*later)

    try:
        first, later = asyncio.run(main())
    finally:
        thread.close()
    assert (first, later) == ("A", ["B", "C", "D"])
    assert batches == [["a"], ["b", "c", "d"]]  # one commit for all that arrived meanwhile


def test_a_failing_batch_in_the_thread_fails_only_its_bad_item():
    def many(items):
        if "bad" in items:
            raise sqlite3.OperationalError("disk I/O error")
        return [item * 2 for item in items]

    thread = StoreThread()
    batch = TurnBatch(many, thread)

    async def main():
        return await asyncio.gather(batch("x"), batch("bad"), batch("y"), return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        thread.close()
    assert results[0] == "xx" and results[2] == "yy" and isinstance(results[1], sqlite3.OperationalError)
