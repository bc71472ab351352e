"""A run killed with SIGKILL mid-way resumes without losing or re-sending any committed answer.

The tests wait for events (answers committed, a server done with a dead client's connections), never
for a time: a loopback server that answers a set number of requests and holds the rest stops a run at
a known point on a machine of any speed, and a local model's run is killed once enough answers are
committed, with many requests still to go.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from psychometrics.testing.waiting import HANG_GUARD_S, wait_for


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "psychometrics", "administer", *args, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def committed(db: Path) -> dict[str, float]:
    """request id -> answered_at of every committed answer (read while the writer may be live)."""
    if not db.exists():
        return {}
    connection = read_only(db)
    try:
        return dict(connection.execute("SELECT request_id, answered_at FROM responses WHERE error IS NULL"))
    except sqlite3.OperationalError:  # not created yet, or killed before the schema was complete
        return {}
    finally:
        connection.close()


def running(process: subprocess.Popen) -> bool:
    """True while ``process`` runs; fails the test with its error output if it has ended."""
    assert process.poll() is None, f"the run ended (exit {process.returncode}): {process.stderr.read()}"
    return True


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=HANG_GUARD_S)
    assert process.returncode == -signal.SIGKILL


def planned_keys(base_url: str, inventory: str, **design: object) -> dict[str, str]:
    """request id -> server request key of every request a run of ``inventory`` under ``design`` plans."""
    from psychometrics.design.plan import Design, plan_requests
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models import resolve_model
    from psychometrics.testing.openai_server import model_request_key

    backend = resolve_model("openai/psytest-sim", api_base=base_url)
    planned = plan_requests([resolve_inventory(inventory)], Design(**design), backend.name, backend.params)
    return {p.request_id: model_request_key(p.request) for p in planned}


def finish(args: list[str]) -> dict:
    resumed = start(args)
    stdout, stderr = resumed.communicate(timeout=HANG_GUARD_S)
    assert resumed.returncode == 0, stderr
    return json.loads(stdout)


def test_sigkill_then_resume_loses_nothing_and_resends_nothing(tmp_path, monkeypatch):
    """Killed with exactly 60 answers committed (the server answers 60 and holds the rest), the run
    resumes by sending each of the others once, and none of the 60."""
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.testing.openai_server import start_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-psytest-dummy-key")
    out = tmp_path / "run"
    db = out / "responses.sqlite"
    kill_after = 60
    with start_server(SimulatedRespondent("sim/e=1,seed=1"), hold_after=kill_after) as server:
        keys = planned_keys(server.base_url, "ipip-neo-120", option_orders=["original", "reversed"])
        args = ["--model", "openai/psytest-sim", "--api-base", server.base_url, "-i", "ipip-neo-120",
                "--option-orders", "original,reversed", "--concurrency", "8", "--out", str(out)]
        process = start(args)
        wait_for(lambda: running(process) and len(committed(db)) >= kill_after, f"{kill_after} answers committed")
        wait_for(lambda: server.held > 0, "a request held")  # the run is waiting for an answer that will not come
        kill(process)
        before = committed(db)
        assert len(before) == kill_after  # the server answered no more
        server.release()  # the dead run's held requests are answered into closed connections
        wait_for(lambda: server.open_connections == 0, "the server done with the killed run's connections")
        mark = len(server.request_log)
        summary = finish(args)
        resent = [key for _, key, _ in server.request_log[mark:]]
    after = committed(db)
    assert summary["requests_planned"] == len(keys) == 240
    assert summary["already_answered"] == kill_after and summary["sent"] == len(keys) - kill_after
    assert sorted(resent) == sorted(key for rid, key in keys.items() if rid not in before)  # each missing one, once
    assert set(after) == set(keys)  # nothing lost
    assert {rid: after[rid] for rid in before} == before  # committed answers were not re-sent or rewritten


@pytest.mark.slow
def test_sigkill_of_a_local_model_run_then_resume(tmp_path):
    """The same with the model in the killed process: killed once 30 of its 100 answers are committed."""
    pytest.importorskip("llama_cpp")
    out = tmp_path / "run"
    args = ["--model", "local/smollm2-135m", "-i", "mini-ipip", "--option-orders", "rotations", "--mode", "probs",
            "--threads-batch", "1", "--out", str(out)]  # one thread: llama.cpp's spin on shared cores
    db = out / "responses.sqlite"
    kill_after = 30
    process = start(args)
    wait_for(lambda: running(process) and len(committed(db)) >= kill_after, f"{kill_after} answers committed")
    kill(process)
    before = committed(db)
    planned = json.loads((out / "manifest.json").read_text())["requests_planned"]
    assert kill_after <= len(before) < planned == 100  # 70 local-model answers could not come in one poll

    summary = finish(args)
    after = committed(db)
    assert summary["already_answered"] == len(before)
    assert summary["sent"] == planned - len(before)  # only the missing ones were sent
    assert len(after) == planned  # nothing lost
    assert {rid: after[rid] for rid in before} == before  # committed answers were not re-sent or rewritten


# -- random kills against a hostile server ------------------------------------------------------------

KILL_ARGS = ["-i", "bfi-44", "--option-orders", "original,reversed", "--samples", "2", "--temperature", "0.7",
             "--concurrency", "4", "--timeout", "1.5", "--max-retries", "6", "--retry-base", "0.01"]
# A stall outlasts the timeout (so stalled requests time out and are retried), and the timeout is wide enough
# that on a loaded machine (load average 8-12) the server's other answers arrive within it: with 0.5 s, three
# timeouts in a row with no answer between happened there, and the circuit breaker rightly stopped the run.
STALL_S = 3.0
CONCURRENCY = 4


def store_state(db: Path) -> tuple[dict[str, float], set[str]]:
    """(request id -> answered_at of valid answers, ids of stored failures)."""
    if not db.exists():
        return {}, set()
    connection = read_only(db)
    try:
        rows = connection.execute("SELECT request_id, answered_at, error FROM responses").fetchall()
    except sqlite3.OperationalError:  # killed before the schema was complete
        return {}, set()
    finally:
        connection.close()
    return {r: t for r, t, e in rows if e is None}, {r for r, _, e in rows if e is not None}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_sigkills_against_a_faulty_server(tmp_path, monkeypatch, seed):
    """Two SIGKILLs at seeded random points (a random time, or a random number of rows committed plus a
    random delay: anywhere from interpreter start-up to mid-commit), then a resume to the end, all against a server failing 20% of
    requests in every way it can. Committed answers are never sent again; only requests in flight at
    the kill may be; the store ends with exactly the planned rows and passes SQLite's integrity check."""
    import random

    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.testing.openai_server import FAULT_KINDS, start_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-psytest-dummy-key")
    rng = random.Random(seed)
    out = tmp_path / "run"
    db = out / "responses.sqlite"
    with start_server(SimulatedRespondent("sim/e=1,a=-0.5,seed=1"), latency_s=0.03, faults=FAULT_KINDS,
                      fault_rate=0.2, seed=seed, retry_after="0.2", stall_s=STALL_S) as server:
        keys = planned_keys(server.base_url, "bfi-44", option_orders=["original", "reversed"], samples=2,
                            temperature=0.7)
        planned = len(keys)
        args = ["--model", "openai/psytest-sim", "--api-base", server.base_url, *KILL_ARGS, "--out", str(out)]
        windows = []  # per process: (first log index, committed answers and failures before it started)
        for number in range(3):
            # the server has read (and logged) all a killed process sent: it has closed all its connections
            wait_for(lambda: server.open_connections == 0, "the server done with the killed run's connections")
            answered, failures = store_state(db)
            windows.append((len(server.request_log), answered, failures))
            process = start(args)
            if number < 2:
                if rng.random() < 0.3:  # at a random time: start-up, manifest, schema, or sending
                    time.sleep(rng.uniform(0.0, 3.0))
                else:  # once a random number of answers is committed, give or take a commit
                    target = rng.randrange(len(answered), planned)
                    wait_for(lambda: process.poll() is not None or len(store_state(db)[0]) >= target,
                             f"{target} answers committed, or the run over", poll_s=0.01)
                    time.sleep(rng.uniform(0, 0.05))
                if process.poll() is None:
                    kill(process)
                else:  # finished before the kill: nothing left to kill (exit 1: some requests failed)
                    assert process.returncode in (0, 1), process.stderr.read()
            else:
                stdout, stderr = process.communicate(timeout=HANG_GUARD_S)
                summary = json.loads(stdout)
                # exit 1 exactly when requests failed after their retries, with one line saying so
                assert process.returncode == (1 if summary["failed"] else 0), stderr
                if summary["failed"]:
                    assert f"psytest: {summary['failed']} of {summary['sent']} requests failed (" in stderr
        log = list(server.request_log)
        faults = dict(server.faults_injected)

    answered, failures = store_state(db)
    assert summary["requests_planned"] == planned and summary["claimed_elsewhere"] == 0
    assert summary["already_answered"] == len(windows[-1][1]) and summary["sent"] == planned - len(windows[-1][1])
    # exactly the planned rows, each valid or failed with its reason
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = connection.execute("SELECT request_id, item_id, outcome, error FROM responses").fetchall()
        assert connection.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # the last run released its claims
    finally:
        connection.close()
    assert sorted(r[0] for r in rows) == sorted(keys) and len(rows) == planned
    assert all(outcome == "valid" or (outcome == "error" and error) for _, _, outcome, error in rows)

    owner = {key: rid for rid, key in keys.items()}
    assert {key for _, key, _ in log} <= set(owner)  # nothing but planned requests was sent
    bounds = [start for start, _, _ in windows] + [len(log)]
    in_flight = []
    for index, (start_at, committed_before, failed_before) in enumerate(windows):
        assert {rid: answered[rid] for rid in committed_before} == committed_before  # never rewritten
        sent_here = {owner[key] for _, key, _ in log[start_at:bounds[index + 1]]}
        assert not sent_here & set(committed_before)  # committed answers were never sent again
        if index:
            sent_before = {owner[key] for _, key, _ in log[bounds[index - 1]:start_at]}
            # sent again after a kill: only what was in flight (neither answered nor failed when it died)
            again = (sent_here & sent_before) - set(committed_before) - failed_before
            assert len(again) <= CONCURRENCY
            in_flight.append(len(again))
    print(json.dumps({"seed": seed, "sent_per_process": [b - a for a, b in zip(bounds, bounds[1:])],
                      "committed_at_kills": [len(w[1]) for w in windows[1:]], "resent_in_flight": in_flight,
                      "faults": faults, "final_failed": len(failures)}))
