"""Two processes on one run directory: they share the plan through claims, never send a request twice,
and never leave a corrupt store or manifest; a different study started at the same moment is refused.
A live process of this host keeps its claims however long it stalls (only other hosts' claims expire),
and a late answer never replaces one already committed."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from psychometrics.engine.claims import CLAIMED, DONE, HELD, Claims, local_owner_is_dead
from psychometrics.engine.claims import _start_time as local_start_time
from psychometrics.errors import PsytestError
from psychometrics.design.plan import Design
from psychometrics.run.directory import open_for_writing
from psychometrics.run.manifest import ContentRef, PromptIdentity, QuestionnaireManifest, read_manifest
from psychometrics.testing.waiting import HANG_GUARD_S, wait_for, wait_for_async

HOST = socket.gethostname()


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE IF NOT EXISTS answers (id TEXT PRIMARY KEY)")
    return connection


def answered(conn: sqlite3.Connection, request_id: str) -> bool:
    return conn.execute("SELECT 1 FROM answers WHERE id = ?", (request_id,)).fetchone() is not None


def live_process() -> subprocess.Popen:
    """A process of this host that lives until the test kills it (the hang guard at most)."""
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({HANG_GUARD_S})"])


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- the claim API ------------------------------------------------------------------------------------


def test_claims_exclude_other_live_owners_until_answered_or_expired(tmp_path):
    db = tmp_path / "store.sqlite"
    first = Claims(connect(db), done=answered, lease_s=30)
    second = Claims(connect(db), done=answered, lease_s=30)
    assert first.owner != second.owner and first.owner.startswith(f"{HOST}:{os.getpid()}:")
    assert first.claim("r1") == CLAIMED
    assert first.claim("r1") == CLAIMED  # an owner may renew its own claim
    assert second.claim("r1") == HELD
    conn = first.conn
    conn.execute("BEGIN IMMEDIATE")  # the answer and the release commit together
    conn.execute("INSERT INTO answers VALUES ('r1')")
    first.release("r1")
    conn.execute("COMMIT")
    assert second.claim("r1") == DONE and first.claim("r1") == DONE
    assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0

    assert second.claim("r2") == CLAIMED and first.claim("r2") == HELD
    second.conn.execute("UPDATE claims SET expires_at = ? WHERE request_id = 'r2'", (time.time() - 1,))
    assert first.claim("r2") == HELD  # expired, but its owner is a live run of this host: it stands
    second.conn.execute("UPDATE claims SET owner = 'elsewhere.example:1:t' WHERE request_id = 'r2'")
    assert first.claim("r2") == CLAIMED  # another host's expired lease frees the request
    assert second.claim("r2") == HELD
    before = conn.execute("SELECT expires_at FROM claims WHERE request_id = 'r2'").fetchone()[0]
    time.sleep(0.01)
    assert first.renew() == 1
    assert conn.execute("SELECT expires_at FROM claims WHERE request_id = 'r2'").fetchone()[0] > before
    first.release_all()
    assert second.claim("r2") == CLAIMED


@pytest.mark.parametrize("owner, dead", [
    (lambda: f"{HOST}:{dead_pid()}:abc", True),  # a process of this host that has exited
    (lambda: f"{HOST}:{os.getppid()}:abc", False),  # a live one
    (lambda: f"elsewhere.example:{dead_pid()}:abc", False),  # another host: only the lease can tell
    (lambda: "garbage", False),
])
def test_dead_local_owners_free_their_claims_at_once(tmp_path, owner, dead):
    name = owner()
    assert local_owner_is_dead(name) is dead
    db = tmp_path / "store.sqlite"
    Claims(connect(db), owner=name, lease_s=600).claim("r")
    assert Claims(connect(db), lease_s=600).claim("r") == (CLAIMED if dead else HELD)


def test_a_live_local_owner_keeps_its_claim_past_the_lease_and_loses_it_when_it_dies(tmp_path):
    process = live_process()
    try:
        db = tmp_path / "store.sqlite"
        owner = f"{HOST}:{process.pid}:stalled"
        stalled = Claims(connect(db), owner=owner, lease_s=600)
        stalled.claim("r")
        # the lease has run out: the owner stalled (or the machine slept), it did not die
        stalled.conn.execute("UPDATE claims SET expires_at = ?", (time.time() - 3600,))
        taker = Claims(connect(db), lease_s=600)
        assert taker.claim("r") == HELD
        process.kill()
        process.wait()
        assert taker.claim("r") == CLAIMED
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_reused_pid_or_an_ended_run_of_this_process_does_not_hold_a_claim(tmp_path):
    db = tmp_path / "store.sqlite"
    start = local_start_time(os.getppid())
    if start is None:
        pytest.skip("no /proc start times on this system")
    reused = f"{HOST}:{os.getppid()}:abc.{int(start) + 1}"  # that pid, but a process started at another time
    assert local_owner_is_dead(reused) and not local_owner_is_dead(f"{HOST}:{os.getppid()}:abc.{start}")
    Claims(connect(db), owner=reused, lease_s=600).claim("r1")
    ended = Claims(connect(db), lease_s=600)
    ended.claim("r2")
    owner = ended.owner
    del ended  # a run of this process that is over (its Claims are gone)
    import gc

    gc.collect()
    assert local_owner_is_dead(owner)
    taker = Claims(connect(db), lease_s=600)
    assert taker.claim("r1") == CLAIMED and taker.claim("r2") == CLAIMED


def test_requests_claimed_by_a_stalled_live_process_are_not_sent(tmp_path, monkeypatch):
    """A run finds half the plan claimed, with leases long expired, by a live process of this host: it
    sends only the other half, so nothing is paid for twice."""
    import asyncio

    from psychometrics.engine.send import run_requests
    from psychometrics.design.plan import Design, plan_requests
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models import resolve_model
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.run.store import RunStore
    from psychometrics.testing.openai_server import model_request_key, start_server

    process = live_process()
    try:
        with start_server(SimulatedRespondent("sim/e=1,seed=1")) as server:
            backend = resolve_model("openai/psytest-sim", api_base=server.base_url)
            planned = plan_requests([resolve_inventory("mini-ipip")], Design(), backend.name, backend.params)
            with RunStore(tmp_path / "responses.sqlite") as store:
                stalled = Claims(store.conn, owner=f"{HOST}:{process.pid}:stalled", lease_s=60)
                for p in planned[:10]:
                    stalled.claim(p.request_id)
                store.conn.execute("UPDATE claims SET expires_at = ?", (time.time() - 3600,))

                async def go():
                    try:
                        return await run_requests(backend, planned, store, concurrency=4, lease_s=0.05)
                    finally:
                        await backend.aclose()

                stats = asyncio.run(go())
                assert store.answered_ids() == {p.request_id for p in planned[10:]}
            sent = {key for _, key, _ in server.request_log}
        assert stats.sent == 10 and stats.claimed_elsewhere == 10
        assert sent == {model_request_key(p.request) for p in planned[10:]}
    finally:
        process.kill()
        process.wait()


def test_a_killed_but_unreaped_process_counts_as_dead():
    process = live_process()
    try:
        assert not local_owner_is_dead(f"{HOST}:{process.pid}:t")
        process.kill()
        # a zombie until waited for: dead once the kernel has delivered the signal
        wait_for(lambda: local_owner_is_dead(f"{HOST}:{process.pid}:t"), "the killed process counted as dead")
    finally:
        process.wait()


def test_keep_alive_renews_and_releases(tmp_path):
    import asyncio

    db = tmp_path / "store.sqlite"
    claims = Claims(connect(db), lease_s=0.3)
    other = Claims(connect(db), lease_s=0.3)

    def expires() -> float:
        return claims.conn.execute("SELECT expires_at FROM claims WHERE request_id = 'r'").fetchone()[0]

    async def hold():
        async with claims.keep_alive():
            assert claims.claim("r") == CLAIMED
            first = expires()
            await wait_for_async(lambda: expires() > first, "the claim renewed")
            renewed = expires()
            await wait_for_async(lambda: expires() > renewed, "the claim renewed again")  # and again
            assert other.claim("r") == HELD

    asyncio.run(hold())
    assert other.claim("r") == CLAIMED  # released on leaving the block


# -- the manifest -------------------------------------------------------------------------------------


def test_manifest_keeps_its_creation_time_and_refuses_another_study(tmp_path):
    def manifest(created: str, samples: int = 1) -> QuestionnaireManifest:
        return QuestionnaireManifest(model="m", design=Design(samples=samples), created_at=created, requests_planned=3,
                                     inventories=[ContentRef(id="x", content_hash="0" * 64)],
                                     prompts=PromptIdentity(templates={}, plan="p", requests=3))
    open_for_writing(tmp_path, manifest("2026-01-01T00:00:00+00:00"), [])
    open_for_writing(tmp_path, manifest("2026-02-02T00:00:00+00:00"), [])
    assert read_manifest(tmp_path).created_at == "2026-01-01T00:00:00+00:00"
    with pytest.raises(PsytestError, match="different design"):
        open_for_writing(tmp_path, manifest("x", samples=2), [])
    assert read_manifest(tmp_path).design.samples == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temporary files left


# -- two psytest processes ----------------------------------------------------------------------------

ARGS = ["-i", "bfi-44", "--option-orders", "original,reversed", "--samples", "2", "--temperature", "0.7",
        "--concurrency", "4", "--json"]


def psytest(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "psychometrics", "administer", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def claim_owners(db: Path) -> set[str]:
    """Owners of the claims in the store at ``db`` now (none before the table exists)."""
    if not db.exists():
        return set()
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return {owner for (owner,) in connection.execute("SELECT DISTINCT owner FROM claims")}
    except sqlite3.OperationalError:  # no claims table yet
        return set()
    finally:
        connection.close()


def both_working(db: Path, processes: list[subprocess.Popen]) -> bool:
    """True once each process holds claims (the server holds their requests meanwhile)."""
    for process in processes:
        assert process.poll() is None, process.communicate()[1]
    return len(claim_owners(db)) == len(processes)


def test_two_processes_on_one_run_directory_share_the_plan(tmp_path, monkeypatch):
    """The server holds every request until both processes have claimed some, so both take part
    whichever starts first, on a machine of any speed."""
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.testing.openai_server import start_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-psytest-dummy-key")
    out = tmp_path / "run"
    with start_server(SimulatedRespondent("sim/e=1,a=-0.5,seed=1"), latency_s=0.02, hold_after=0) as server:
        args = ["--model", "openai/psytest-sim", "--api-base", server.base_url, *ARGS, "--out", str(out)]
        processes = [psytest(*args), psytest(*args)]
        wait_for(lambda: both_working(out / "responses.sqlite", processes), "both processes claiming requests")
        server.release()
        results = [p.communicate(timeout=HANG_GUARD_S) for p in processes]
        log = list(server.request_log)
        again = psytest(*args)
        rerun = json.loads(again.communicate(timeout=HANG_GUARD_S)[0])
        assert len(server.request_log) == len(log)  # the rerun sent nothing
    for process, (_, stderr) in zip(processes, results):
        assert process.returncode == 0, stderr
    summaries = [json.loads(stdout) for stdout, _ in results]
    planned = summaries[0]["requests_planned"]
    for summary in summaries:  # each request was sent, found answered, or left to the other process
        assert summary["already_answered"] + summary["sent"] + summary["claimed_elsewhere"] == planned
    sent = [s["sent"] for s in summaries]
    assert sum(sent) == planned and min(sent) > 0  # both worked, neither duplicated
    assert sum(s["claimed_elsewhere"] for s in summaries) > 0
    counts = Counter(key for _, key, _ in log)
    assert len(counts) == planned and set(counts.values()) == {1}  # the server saw each request once
    assert rerun["already_answered"] == planned and rerun["sent"] == 0 and rerun["claimed_elsewhere"] == 0

    connection = sqlite3.connect(out / "responses.sqlite")
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM responses").fetchone() == (planned, planned)
        assert connection.execute("SELECT COUNT(*) FROM responses WHERE outcome = 'valid'").fetchone()[0] == planned
        assert connection.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    finally:
        connection.close()
    manifest = read_manifest(out)
    assert manifest.requests_planned == planned and manifest.model == "openai/psytest-sim"
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    print(json.dumps({"sent": sent, "claimed_elsewhere": [s["claimed_elsewhere"] for s in summaries]}))


def test_a_different_study_started_at_the_same_moment_is_refused(tmp_path):
    out = tmp_path / "run"
    common = ["-i", "mini-ipip", "--json", "--out", str(out)]
    processes = [psytest("--model", "sim/e=1,seed=1", *common), psytest("--model", "sim/e=1,seed=2", *common)]
    results = [p.communicate(timeout=HANG_GUARD_S) for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 2], results
    refused = next(stderr for p, (_, stderr) in zip(processes, results) if p.returncode == 2)
    lines = refused.strip().splitlines()
    assert len(lines) == 1 and f"--out {out}" in lines[0] and "different" in lines[0]
    winner = next(json.loads(stdout) for p, (stdout, _) in zip(processes, results) if p.returncode == 0)
    assert read_manifest(out).model == winner["model"]
    connection = sqlite3.connect(out / "responses.sqlite")
    try:
        assert connection.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == winner["requests_planned"]
    finally:
        connection.close()
