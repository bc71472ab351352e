"""``--batch``: a run sent through a provider's batch API, against the loopback batch server.

What a lab paying for a batch needs: every request answered once, results stored like the direct
engine's, requests that expired or failed transiently submitted again (and counted), rejected ones
stored as failures, and a run killed with SIGKILL at any step (after the upload, after creating the
batch, while the batch is polled, half-way through its results) resumed without submitting anything
twice. The server counts every submission per request id; the tests wait on events (a held step
reached, rows committed, a process gone), never on the clock.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from psychometrics import api
from psychometrics.errors import PsytestError
from psychometrics.testing.batch_server import start_batch_server
from psychometrics.testing.waiting import HANG_GUARD_S, wait_for

MINI_IPIP_REQUESTS = 20


def planned_ids(base_url: str, inventory: str = "mini-ipip") -> set[str]:
    from psychometrics.design.plan import Design, plan_requests
    from psychometrics.inventories.library import resolve_inventory
    from psychometrics.models import resolve_model

    backend = resolve_model("openai/sim", api_base=base_url)
    return {p.request_id for p in plan_requests([resolve_inventory(inventory)], Design(), backend.name, backend.params)}


def answered(db: Path) -> set[str]:
    if not db.exists():
        return set()
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return {row[0] for row in connection.execute("SELECT DISTINCT request_id FROM responses WHERE error IS NULL")}
    except sqlite3.OperationalError:
        return set()
    finally:
        connection.close()


def batches(db: Path) -> list[tuple]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute("SELECT state, provider_status, resubmitted, request_ids FROM batches "
                                  "ORDER BY created_at").fetchall()
    finally:
        connection.close()


# -- in one process ----------------------------------------------------------------------------------


def test_openai_batches_expired_and_failed_lines_resubmitted_once_and_counted(tmp_path):
    with start_batch_server(expire={0}, expire_keep=3, line_error_every=4, polls_to_finish=2) as server:
        outcome = api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run",
                                 batch=True, batch_poll=0.001, batch_size=8)
        twice = server.submitted_twice()
        counts = dict(server.submissions)
    stats = outcome.stats
    ids = planned_ids(server.base_url)
    assert answered(tmp_path / "run" / "responses.sqlite") == ids
    assert stats.sent == MINI_IPIP_REQUESTS and stats.failed == 0 and stats.outcomes == {"valid": MINI_IPIP_REQUESTS}
    # batch 0 (8 requests) expired after 3; every 4th line of each first submission failed with a 500
    expected_again = (8 - 3) + sum(1 for size, start in ((8, 0), (8, 1), (4, 2)) for i in range(size)
                                   if (i + 1) % 4 == 0 and not (start == 0 and i >= 3))
    assert stats.requests_resubmitted == len(twice) == expected_again
    assert set(counts) == ids and max(counts.values()) == 2
    assert stats.requests_submitted == MINI_IPIP_REQUESTS + len(twice)
    rows = batches(tmp_path / "run" / "responses.sqlite")
    assert [r[0] for r in rows] == ["ended"] * len(rows) and rows[0][1] == "expired"
    assert sum(r[2] for r in rows) == len(twice)
    store = sqlite3.connect(tmp_path / "run" / "responses.sqlite")
    attempts = dict(store.execute("SELECT request_id, attempts FROM responses"))
    assert {rid for rid, n in attempts.items() if n == 2} == set(twice)
    columns = store.execute("SELECT finish_reason, served_model, system_fingerprint, input_tokens FROM responses").fetchall()
    assert all(c[0] == "stop" and c[1] == "sim" and c[2] == "psytest-openai-server" and c[3] > 0 for c in columns)


def test_rejected_lines_are_failures_not_resubmitted_until_the_next_run(tmp_path):
    with start_batch_server(line_error_every=5, line_error_status=400) as server:
        first = api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run",
                               batch=True, batch_poll=0.001)
        assert server.submitted_twice() == [] and server.batches_created == 1
        assert first.stats.failed == MINI_IPIP_REQUESTS // 5 and "rejected" in first.stats.first_error
        second = api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"],
                                out=tmp_path / "run", batch=True, batch_poll=0.001)
        assert server.batches_created == 2 and len(server.submitted_twice()) == MINI_IPIP_REQUESTS // 5
    assert second.stats.already_answered == MINI_IPIP_REQUESTS - 4 and second.stats.failed == 0
    assert answered(tmp_path / "run" / "responses.sqlite") == planned_ids(server.base_url)


def test_a_batch_that_fails_as_a_whole_is_submitted_again(tmp_path):
    with start_batch_server(fail={0}) as server:
        outcome = api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run",
                                 batch=True, batch_poll=0.001)
        assert server.batches_created == 2 and len(server.submitted_twice()) == MINI_IPIP_REQUESTS
    assert outcome.stats.requests_resubmitted == MINI_IPIP_REQUESTS and outcome.stats.failed == 0
    assert [r[1] for r in batches(tmp_path / "run" / "responses.sqlite")] == ["failed", "completed"]


def test_anthropic_message_batches(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    with start_batch_server(line_error_every=6, expire={1}, expire_keep=2) as server:
        outcome = api.administer("anthropic/claude-test", api_base=server.root_url, inventory=["mini-ipip"],
                                 out=tmp_path / "run", batch=True, batch_poll=0.001, batch_size=10)
        twice = server.submitted_twice()
    assert outcome.stats.failed == 0 and outcome.stats.sent == MINI_IPIP_REQUESTS
    assert outcome.stats.requests_resubmitted == len(twice) > 0
    store = sqlite3.connect(tmp_path / "run" / "responses.sqlite")
    assert set(store.execute("SELECT finish_reason, served_model FROM responses")) == {("stop", "claude-test")}


def test_batch_refusals_are_one_line(tmp_path, capsys, monkeypatch):
    from psychometrics.testing.cli import cli, one_line_error

    code, _, err = cli(capsys, "administer", "--model", "sim/e=1", "-i", "mini-ipip", "--out", tmp_path / "a", "--batch")
    one_line_error(code, err, "--batch", "openai/NAME")
    code, _, err = cli(capsys, "administer", "--model", "anthropic/claude-test", "-i", "mini-ipip", "--out",
                       tmp_path / "b", "--batch", "--mode", "probs")
    one_line_error(code, err, "--batch", "--mode text")
    code, _, err = cli(capsys, "administer", "--model", "openai/x", "--api-base", "http://127.0.0.1:9/v1", "-i",
                       "mini-ipip", "--out", tmp_path / "c", "--batch", "--invalid", "reask:2")
    one_line_error(code, err, "--batch", "--invalid")
    code, _, err = cli(capsys, "administer", "--model", "openai/x", "--api-base", "http://127.0.0.1:9/v1", "-i",
                       "mini-ipip", "--out", tmp_path / "d", "--batch-size", "5")
    one_line_error(code, err, "--batch-size", "--batch")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_no_batch_api_at_the_url_is_one_line(tmp_path, capsys):
    from psychometrics.testing.cli import cli, one_line_error
    from psychometrics.testing.openai_server import start_server

    with start_server() as server:  # chat completions only: /v1/files answers 404
        code, _, err = cli(capsys, "administer", "--model", "openai/sim", "--api-base", server.base_url, "-i",
                           "mini-ipip", "--out", tmp_path / "run", "--batch", "--batch-poll", "0.01", "--json")
    one_line_error(code, err, "batch API", "--api-base")


def test_a_direct_run_is_refused_while_batches_are_live(tmp_path):
    with start_batch_server(hold={"poll"}) as server:
        import threading

        done: list = []
        worker = threading.Thread(target=lambda: done.append(api.administer(
            "openai/sim", api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run", batch=True,
            batch_poll=0.001)))
        worker.start()
        wait_for(lambda: server.reached("poll"), "the batch polled")
        with pytest.raises(PsytestError, match="re-run with --batch"):
            api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run")
        server.release()
        worker.join(HANG_GUARD_S)
    assert done and done[0].stats.sent == MINI_IPIP_REQUESTS and server.batches_created == 1


# -- killed with SIGKILL and resumed ----------------------------------------------------------------


def start(base_url: str, out: Path, *extra: str, model: str = "openai/sim") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "psychometrics", "administer", "--model", model, "--api-base", base_url,
         "-i", "mini-ipip", "--out", str(out), "--batch", "--batch-poll", "0.01", "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=HANG_GUARD_S)
    assert process.returncode == -signal.SIGKILL


def alive(process: subprocess.Popen) -> bool:
    assert process.poll() is None, f"the run ended (exit {process.returncode}): {process.stderr.read()}"
    return True


@pytest.mark.parametrize("step", ["upload", "create", "created", "poll", "results"])
def test_killed_at_any_step_resumes_without_submitting_twice(step, tmp_path):
    """After the upload (its answer lost), with the create request sent but not carried out, with the
    batch created but its id not heard, while polling, and half-way through the results."""
    out = tmp_path / "run"
    db = out / "responses.sqlite"
    with start_batch_server(hold={step}, hold_results_after=7) as server:
        first = start(server.base_url, out)
        if step == "results":  # killed once the first lines are committed, the rest still to come
            wait_for(lambda: alive(first) and len(answered(db)) >= 7 and server.reached("results"),
                     "7 results committed")
        else:
            wait_for(lambda: alive(first) and server.reached(step), f"the {step} step reached")
        kill(first)
        committed_before = answered(db)
        server.release(drop=True)
        resumed = start(server.base_url, out)
        stdout, stderr = resumed.communicate(timeout=HANG_GUARD_S)
        assert resumed.returncode == 0, stderr
        summary = json.loads(stdout)
        assert server.submitted_twice() == []
        assert server.batches_created == 1 and server.uploads == 1
        assert set(server.submissions) == planned_ids(server.base_url)
    assert answered(db) == planned_ids(server.base_url)
    assert summary["already_answered"] == len(committed_before)
    assert summary["sent"] == MINI_IPIP_REQUESTS - len(committed_before) and summary["failed"] == 0
    if step == "results":
        assert len(committed_before) == 7
    [(state, status, resubmitted, _)] = batches(db)
    assert (state, status, resubmitted) == ("ended", "completed", 0)


def test_anthropic_killed_after_create_finds_its_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    out = tmp_path / "run"
    with start_batch_server(hold={"created"}) as server:
        first = start(server.root_url, out, model="anthropic/claude-test")
        wait_for(lambda: alive(first) and server.reached("created"), "the batch created")
        kill(first)
        server.release(drop=True)
        resumed = start(server.root_url, out, model="anthropic/claude-test")
        _, stderr = resumed.communicate(timeout=HANG_GUARD_S)
        assert resumed.returncode == 0, stderr
        assert server.batches_created == 1 and server.submitted_twice() == []
    assert len(answered(out / "responses.sqlite")) == MINI_IPIP_REQUESTS


def test_two_processes_batching_one_run_submit_each_request_once(tmp_path):
    """The second process finds the first one's batch live: it submits nothing and collects it."""
    out = tmp_path / "run"
    with start_batch_server(hold={"poll"}) as server:
        first = start(server.base_url, out)
        wait_for(lambda: alive(first) and server.reached("poll"), "the first process polling")
        second = start(server.base_url, out)
        stdout, stderr = second.communicate(timeout=HANG_GUARD_S)
        assert second.returncode == 0, stderr
        server.release()
        _, stderr = first.communicate(timeout=HANG_GUARD_S)
        assert first.returncode == 0, stderr
        assert server.batches_created == 1 and server.submitted_twice() == []
    summary = json.loads(stdout)
    assert summary["batch"]["requests_submitted"] == 0 and summary["batch"]["batches_resumed"] == 1
    assert summary["sent"] == MINI_IPIP_REQUESTS and len(answered(out / "responses.sqlite")) == MINI_IPIP_REQUESTS


def test_hostile_result_lines(tmp_path):
    """Lines of another run, a repeated line with another answer, broken JSON and a missing line: the
    first answer of each request is kept, strangers and garbage are ignored, the missing request is a
    failure (not silently resubmitted) that the next run sends again."""
    dropped: list[str] = []

    def rewrite(lines: list) -> list:
        if dropped:  # only the first batch is hostile
            return lines
        first = json.loads(json.dumps(lines[0]))
        first["response"]["body"]["choices"][0]["message"]["content"] = "something else entirely"
        stranger = json.loads(json.dumps(lines[1]))
        stranger["custom_id"] = "f" * 64
        dropped.append(lines[2]["custom_id"])
        return [lines[0], first, lines[1], stranger, '{"custom_id": "broken', *lines[3:], [1, 2], "null"]

    with start_batch_server(rewrite_lines=rewrite) as server:
        outcome = api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run",
                                 batch=True, batch_poll=0.001)
        assert outcome.stats.failed == 1 and "without a result" in outcome.stats.first_error
        assert server.batches_created == 1
        again = api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run",
                               batch=True, batch_poll=0.001)
        assert server.submitted_twice() == dropped and again.stats.sent == 1 and again.stats.failed == 0
    store = sqlite3.connect(tmp_path / "run" / "responses.sqlite")
    assert store.execute("SELECT count(*) FROM responses WHERE raw_reply = 'something else entirely'").fetchone() == (0,)
    assert store.execute("SELECT count(*) FROM responses WHERE request_id = ?", ("f" * 64,)).fetchone() == (0,)
    assert answered(tmp_path / "run" / "responses.sqlite") == planned_ids(server.base_url)


def test_a_rejected_key_is_one_line_without_the_key(tmp_path, capsys, monkeypatch):
    from psychometrics.testing.cli import cli, one_line_error

    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-secret-4f9a2c")
    with start_batch_server(api_key="sk-right") as server:
        code, _, err = cli(capsys, "administer", "--model", "openai/sim", "--api-base", server.base_url, "-i",
                           "mini-ipip", "--out", tmp_path / "run", "--batch", "--json")
        assert server.uploads == 0
    line = one_line_error(code, err, "refused the key", "key")
    assert "4f9a2c" not in line


def test_batch_answers_equal_direct_answers_in_both_modes(tmp_path):
    """The same requests answered by the same respondent: through a batch or one by one, every stored
    value, expected value and option mass is the same (the batch line is read as the direct reply)."""
    from psychometrics.testing.openai_server import start_server

    with start_batch_server() as server:
        outcome = api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"], mode="both",
                                 out=tmp_path / "batch", batch=True, batch_poll=0.001)
    with start_server() as server:
        api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"], mode="both",
                       out=tmp_path / "direct")
    assert outcome.stats.outcomes == {"valid": 2 * MINI_IPIP_REQUESTS}

    def stored(run: str) -> dict:
        store = sqlite3.connect(tmp_path / run / "responses.sqlite")
        return {(item, mode): (value, round(expected, 12) if expected is not None else None,
                               round(mass, 12) if mass is not None else None, raw)
                for item, mode, value, expected, mass, raw in store.execute(
                    "SELECT item_id, mode, value, expected_value, option_mass, raw_reply FROM responses")}

    batch, direct = stored("batch"), stored("direct")
    assert len(batch) == 2 * MINI_IPIP_REQUESTS and batch == direct


def test_version_2_stores_are_read_without_a_batches_table_and_migrated_with_one(tmp_path):
    import shutil

    from psychometrics.run.store import RunStore

    source = Path(__file__).parent.parent / "reports/five-models/study/runs/sim-e-1-seed-1/responses.sqlite"
    copy = tmp_path / "responses.sqlite"
    shutil.copy(source, copy)
    with RunStore(copy, read_only=True) as store:
        assert store.version == 2 and store.count() > 0
    tables = {row[0] for row in sqlite3.connect(copy).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "batches" not in tables
    with RunStore(copy, read_only=False) as store:
        assert store.version == 3
        assert store.conn.execute("SELECT count(*) FROM batches").fetchone() == (0,)


def test_an_unfinished_submission_is_taken_over_only_from_a_gone_owner(tmp_path):
    """A process killed mid-submission leaves its submission to the next run; a live one keeps it."""
    import time

    from psychometrics.batch.ledger import OTHER_HOST_LEASE_S, Ledger
    from psychometrics.engine.claims import _HOST, _LIVE_IN_THIS_PROCESS, new_owner
    from psychometrics.run.store import RunStore

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with RunStore(tmp_path / "responses.sqlite", read_only=False) as store:
        ledger = Ledger(store.conn)
        live_owner = new_owner()
        _LIVE_IN_THIS_PROCESS.add(live_owner)
        try:
            cases = {"live here": live_owner, "dead here": f"{_HOST}:{child.pid}:gone",
                     "elsewhere, recent": "another-host:42:x", "elsewhere, silent": "another-host:43:y"}
            subs = {name: ledger.begin("openai", "http://x/v1", [name], 0, "creating", owner)
                    for name, owner in cases.items()}
            store.conn.execute("UPDATE batches SET updated_at = ? WHERE submission = ?",
                               (time.time() - OTHER_HOST_LEASE_S - 1, subs["elsewhere, silent"].submission))
            found = {s.request_ids[0]: s for s in ledger.live()}
            assert {name: found[name].abandoned() for name in cases} == {
                "live here": False, "dead here": True, "elsewhere, recent": False, "elsewhere, silent": True}
            me = new_owner()
            assert ledger.take(found["dead here"], me) and not ledger.take(subs["dead here"], "a-late-rival:1:z")
            assert [s.owner for s in ledger.live() if s.request_ids == ["dead here"]] == [me]
        finally:
            _LIVE_IN_THIS_PROCESS.discard(live_owner)


def test_batch_answers_are_priced_at_the_batch_price(tmp_path):
    """Each answer's stored cost is its usage at the price file's batch prices, not the direct ones."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  openai/sim: {input: 2.0, output: 8.0, batch_input: 1.0, batch_output: 4.0}\n")
    with start_batch_server() as server:
        api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run",
                       batch=True, batch_poll=0.001, prices=prices)
    connection = sqlite3.connect(tmp_path / "run" / "responses.sqlite")
    rows = connection.execute("SELECT input_tokens, output_tokens, cost FROM responses").fetchall()
    connection.close()
    assert len(rows) == MINI_IPIP_REQUESTS
    for input_tokens, output_tokens, cost in rows:
        assert input_tokens > 0 and output_tokens > 0
        assert cost == pytest.approx((input_tokens * 1.0 + output_tokens * 4.0) / 1e6, rel=1e-12)


def test_batch_refuses_longer_reasks_of_cut_off_replies(tmp_path):
    with start_batch_server() as server:
        with pytest.raises(PsytestError, match="--on-truncated reask"):
            api.administer("openai/sim", api_base=server.base_url, inventory=["mini-ipip"], out=tmp_path / "run",
                           batch=True, batch_poll=0.001, on_truncated="reask:2")
    assert not (tmp_path / "run" / "responses.sqlite").exists()
