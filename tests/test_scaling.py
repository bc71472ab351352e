"""Scaling beyond one server, and reading stores that do not fit in memory (docs/scaling.md).

Everything ``docs/scaling.md`` shows is run here against psytest's loopback OpenAI-compatible servers:
a litellm Router over two servers (requests spread over both; a dead replica is routed around; replicas
added between resumptions), an OpenAI-compatible endpoint with ``--api-base``, a store read in pandas
chunks and copied into DuckDB, and the two example scripts in ``examples/scaling/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from psychometrics.errors import ModelSpecError, PsytestError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.run.export import RESPONSE_COLUMNS, iter_responses, to_duckdb
from psychometrics.models import resolve_model
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.store import RunStore
from psychometrics.testing.openai_server import start_server
from psychometrics.testing.waiting import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
SIM = "sim/e=1,a=0.5,seed=7"
KEY = "node-key-for-tests"


def psytest(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "NODE_KEY": KEY, "OPENAI_API_KEY": KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, text=True,
                            timeout=HANG_GUARD_S, env=env, cwd=cwd)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def cluster_file(path: Path, bases: list[str], group: str = "sim") -> Path:
    path.write_text("model_list:\n" + "".join(
        f"  - model_name: {group}\n    litellm_params:\n      model: openai/psytest-sim\n      api_base: {base}\n"
        "      api_key: os.environ/NODE_KEY\n" for base in bases))
    return path


def closed_port_url() -> str:
    """The URL of a port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _respondent() -> SimulatedRespondent:
    respondent = SimulatedRespondent(SIM)
    respondent.prepare([resolve_inventory("mini-ipip")], None)
    return respondent


@pytest.fixture(scope="module")
def router_run(tmp_path_factory):
    """80 requests through a router over two servers; then half of them resumed with a third server added."""
    root = tmp_path_factory.mktemp("router")
    # Each replica knows the inventory it is asked from, as the respondent asked directly does (a request
    # over HTTP does not name its inventory; see SimulatedRespondent.prepare).
    with start_server(_respondent(), api_key=KEY) as node1, start_server(_respondent(), api_key=KEY) as node2, \
            start_server(_respondent(), api_key=KEY) as node3:
        cluster = cluster_file(root / "cluster.yaml", [node1.base_url, node2.base_url])
        args = ("administer", "--model", f"router:{cluster}", "-i", "mini-ipip", "--option-orders",
                "original,reversed", "--samples", "2", "--temperature", "1", "--concurrency", "8", "--out", "run",
                "--json")
        first = json.loads(psytest(*args, cwd=root).stdout)
        served = [node1.requests_served, node2.requests_served]
        db = sqlite3.connect(root / "run" / "responses.sqlite")
        try:
            with db:  # as if the run had been interrupted
                db.execute("DELETE FROM responses WHERE json_extract(condition, '$.sample') = 1")
        finally:
            db.close()
        cluster_file(cluster, [node1.base_url, node2.base_url, node3.base_url])  # a replica joins
        resumed = json.loads(psytest(*args, cwd=root).stdout)
        served_after = [node1.requests_served, node2.requests_served, node3.requests_served]
    return root, first, served, resumed, served_after


def test_router_spreads_a_run_over_both_servers(router_run):
    root, first, served, _, _ = router_run
    assert first["sent"] == 80 and first["failed"] == 0 and first["retries"] == 0
    assert first["outcomes"] == {"valid": 80}
    assert sum(served) == 80 and min(served) >= 15  # simple-shuffle: each gets about half
    manifest = json.loads((root / "run" / "manifest.json").read_text())
    assert manifest["backend_params"] == {"backend": "litellm-router", "model_group": "sim",
                                          "models": ["openai/psytest-sim"]}


def test_router_answers_match_the_respondent_asked_directly(router_run):
    """The same seeded respondent behind every replica: the router changes where, not what."""
    root, _, _, _, _ = router_run
    direct = psytest("administer", "--model", SIM, "-i", "mini-ipip", "--option-orders", "original,reversed",
                     "--samples", "2", "--temperature", "1", "--out", "direct", "--json", cwd=root)
    assert json.loads(direct.stdout)["failed"] == 0

    def answers(run: str) -> pd.Series:
        frame = pd.concat(iter_responses(root / run, chunksize=1000))
        return frame.set_index(["item_id", "option_order", "sample"])["value"].sort_index()

    routed, asked = answers("run"), answers("direct")
    assert len(routed) == 80 and routed.equals(asked)


def test_replicas_can_join_between_resumptions(router_run):
    _, _, served, resumed, served_after = router_run
    assert resumed["already_answered"] == 40 and resumed["sent"] == 40 and resumed["failed"] == 0
    new = [after - before for after, before in zip(served_after, [*served, 0])]
    assert sum(new) == 40 and all(n > 0 for n in new)  # the third server took part


def test_router_routes_around_a_dead_replica(tmp_path):
    with start_server(SimulatedRespondent(SIM), api_key=KEY) as alive:
        cluster = cluster_file(tmp_path / "cluster.yaml", [alive.base_url, closed_port_url()])
        result = psytest("administer", "--model", f"router:{cluster}", "-i", "mini-ipip", "--concurrency", "4",
                         "--max-retries", "8", "--out", "run", "--json", cwd=tmp_path)
        summary = json.loads(result.stdout)
        assert summary["sent"] == 20 and summary["failed"] == 0 and summary["outcomes"] == {"valid": 20}
        assert alive.requests_served == 20
        assert summary["retries"] >= 1  # some first attempts went to the dead replica


def test_router_sends_each_deployment_its_own_key(tmp_path):
    """Several API keys (or nodes with their own keys): each entry's os.environ/VARIABLE goes to its server
    only. Each server accepts only its key, so a key sent to the wrong one would be a failed request."""
    with start_server(SimulatedRespondent(SIM), api_key="key-of-node-one") as node1, \
            start_server(SimulatedRespondent(SIM), api_key="key-of-node-two") as node2:
        cluster = tmp_path / "cluster.yaml"
        cluster.write_text("model_list:\n" + "".join(
            f"  - model_name: sim\n    litellm_params: {{model: openai/psytest-sim, api_base: '{node.base_url}', "
            f"api_key: os.environ/{variable}}}\n" for node, variable in ((node1, "KEY_ONE"), (node2, "KEY_TWO"))))
        env = {**os.environ, "KEY_ONE": "key-of-node-one", "KEY_TWO": "key-of-node-two",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        result = subprocess.run([sys.executable, "-m", "psychometrics", "administer", "--model", f"router:{cluster}",
                                 "-i", "mini-ipip", "--samples", "2", "--temperature", "1", "--max-retries", "0",
                                 "--out", "run", "--json"], capture_output=True, text=True, timeout=HANG_GUARD_S, env=env,
                                cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["failed"] == 0 and summary["retries"] == 0 and summary["outcomes"] == {"valid": 40}
        assert node1.requests_served + node2.requests_served == 40  # both keys were right where they were sent
        assert min(node1.requests_served, node2.requests_served) >= 5


def test_router_least_busy_routing_uses_both_servers(tmp_path):
    with start_server(SimulatedRespondent(SIM), api_key=KEY, latency_s=0.02) as node1, \
            start_server(SimulatedRespondent(SIM), api_key=KEY, latency_s=0.02) as node2:
        cluster = cluster_file(tmp_path / "cluster.yaml", [node1.base_url, node2.base_url])
        cluster.write_text(cluster.read_text() + "router_settings:\n  routing_strategy: least-busy\n")
        summary = json.loads(psytest("administer", "--model", f"router:{cluster}", "-i", "mini-ipip", "--samples",
                                     "2", "--temperature", "1", "--concurrency", "8", "--out", "run", "--json",
                                     cwd=tmp_path).stdout)
        assert summary["failed"] == 0 and summary["outcomes"] == {"valid": 40}
        assert node1.requests_served + node2.requests_served == 40
        assert min(node1.requests_served, node2.requests_served) >= 5


def test_router_file_errors_are_one_line(tmp_path):
    cases = {
        "model_list: []\n": "needs a non-empty model_list",
        "model_list:\n  - {model_name: a, litellm_params: {model: openai/x, api_key: sk-literal-key}}\n":
            "litellm_params.api_key: write it as os.environ/VARIABLE",
        "model_list:\n  - {model_name: a, litellm_params: {model: openai/x}}\n"
        "  - {model_name: b, litellm_params: {model: openai/y}}\n": "several model groups (a, b)",
        "model_list:\n  - {model_name: a, litellm_params: {model: openai/x, api_base: 'ftp://h'}}\n":
            "--api-base ftp://h: give the server's http(s) URL",
        "model_list:\n  - {model_name: a, litellm_params: {model: openai/x}}\nrouter_settings: {num_retries: 9}\n":
            "router_settings may set only",
        "model_list:\n  - {model_name: a}\n": "needs model_name (text) and litellm_params",
    }
    for index, (text, expected) in enumerate(cases.items()):
        path = tmp_path / f"cluster{index}.yaml"
        path.write_text(text)
        with pytest.raises(ModelSpecError) as caught:
            resolve_model(f"router:{path}")
        assert expected in str(caught.value) and "sk-literal-key" not in str(caught.value)
    with pytest.raises(ModelSpecError, match="no model group 'c'"):
        resolve_model(f"router:{tmp_path / 'cluster2.yaml'}#c")
    assert resolve_model(f"router:{tmp_path / 'cluster2.yaml'}#b").params["models"] == ["openai/y"]


def test_openai_compatible_endpoint_with_api_base(tmp_path):
    """A vLLM cluster behind one load balancer looks like this: one URL, many requests in flight."""
    with start_server(SimulatedRespondent(SIM), api_key=KEY, latency_s=0.02) as server:
        result = psytest("administer", "--model", "openai/psytest-sim", "--api-base", server.base_url, "-i",
                         "mini-ipip", "--mode", "both", "--concurrency", "16", "--out", "run", "--json", cwd=tmp_path)
        summary = json.loads(result.stdout)
        assert summary["sent"] == 40 and summary["outcomes"] == {"valid": 40} and server.requests_served == 40


# -- stores larger than memory -----------------------------------------------------------------------


BIG_RUN_ROWS = (44 + 20) * 2 * 2 * 3 * 2  # items, option orders, templates, samples, modes


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    """A finished run the tests only read; a test that writes to a store, or watches its bytes, works on
    its own copy (:func:`private_copy`)."""
    run = tmp_path_factory.mktemp("store") / "run"
    psytest("administer", "--model", SIM, "-i", "bfi-44", "-i", "mini-ipip", "--option-orders", "original,reversed",
            "--templates", "numbered,lettered", "--samples", "3", "--temperature", "1", "--mode", "both",
            "--out", str(run), "--json", cwd=run.parent)
    return run


def private_copy(run: Path, to: Path) -> Path:
    """A copy of ``run`` (manifest and store, in WAL mode with nothing left in the log) at ``to``."""
    to.mkdir(parents=True)
    shutil.copy(run / "manifest.json", to / "manifest.json")
    source = sqlite3.connect(f"{(run / 'responses.sqlite').resolve().as_uri()}?mode=ro", uri=True)
    target = sqlite3.connect(to / "responses.sqlite")
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=WAL")
    finally:
        source.close()
        target.close()  # the last connection: the log is checkpointed and removed
    assert not (to / "responses.sqlite-wal").exists()
    return to


def store_bytes(store: Path) -> dict[str, str]:
    """SHA-256 of the store's database file and of its write-ahead log, if any (the ``-shm`` file is the
    log's shared-memory index, which every reader updates; it holds no data)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (store, store.with_name(store.name + "-wal")) if p.exists()}


def test_pandas_chunks_are_bounded_and_add_up_to_the_store(big_run):
    chunks = list(iter_responses(big_run, chunksize=500))
    with RunStore(big_run / "responses.sqlite") as store:
        rows = list(store.rows())
    assert len(rows) == BIG_RUN_ROWS == sum(len(c) for c in chunks)
    assert all(len(c) <= 500 for c in chunks) and len(chunks) == -(-len(rows) // 500)
    whole = pd.concat(chunks, ignore_index=True)
    assert list(whole["request_id"]) == [r.request_id for r in rows]
    assert list(whole["option_order"]) == [r.condition["option_order"] for r in rows]
    assert list(whole["sample"]) == [r.condition["sample"] for r in rows]
    assert whole["value"].equals(pd.Series([r.value for r in rows], dtype=float, name="value"))
    chunked = pd.concat([c.groupby("template")["value"].sum() for c in chunks]).groupby(level=0).sum()
    assert chunked.to_dict() == pytest.approx(whole.groupby("template")["value"].sum().to_dict())
    probs = pd.concat(iter_responses(big_run, chunksize=100, columns=["item_id", "expected_value"],
                                     where="mode = 'probs'"))
    assert len(probs) == len(rows) // 2 and probs["expected_value"].notna().all()
    with pytest.raises(PsytestError, match="unknown column 'secret'"):
        next(iter_responses(big_run, columns=["secret"]))


def test_duckdb_copy_answers_the_same_queries(big_run, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    copied = to_duckdb(big_run, tmp_path / "study.duckdb", chunksize=300)
    whole = pd.concat(iter_responses(big_run))
    assert copied == len(whole)
    with duckdb.connect(str(tmp_path / "study.duckdb"), read_only=True) as con:
        columns = [row[0] for row in con.execute("DESCRIBE responses").fetchall()]
        assert columns[: len(RESPONSE_COLUMNS)] == list(RESPONSE_COLUMNS) and "option_order" in columns
        got = con.execute("SELECT inventory, mode, template, avg(value), count(*) FROM responses "
                          "WHERE outcome = 'valid' GROUP BY ALL ORDER BY ALL").fetchall()
    assert to_duckdb(big_run, tmp_path / "study.duckdb", table="run2") == copied  # a second run, another table
    with duckdb.connect(str(tmp_path / "study.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM (SELECT * FROM responses UNION ALL SELECT * FROM run2)"
                           ).fetchone()[0] == 2 * copied
    with pytest.raises(PsytestError, match="not a plain SQL name"):
        to_duckdb(big_run, tmp_path / "study.duckdb", table="x; DROP TABLE responses")
    valid = whole[whole["outcome"] == "valid"]
    expected = valid.groupby(["inventory", "mode", "template"])["value"].agg(["mean", "count"]).reset_index()
    assert [(a, b, c, pytest.approx(d), e) for a, b, c, d, e in expected.itertuples(index=False)] == got


def test_a_duckdb_copy_that_fails_midway_leaves_the_old_table(big_run, tmp_path, monkeypatch):
    duckdb = pytest.importorskip("duckdb")
    import psychometrics.run.export as export

    database = tmp_path / "study.duckdb"
    copied = to_duckdb(big_run, database, chunksize=300)
    chunks = export.iter_responses

    def failing(run_dir, chunksize):  # the store becomes unreadable after two chunks
        for number, chunk in enumerate(chunks(run_dir, chunksize)):
            if number == 2:
                raise PsytestError("store vanished")
            yield chunk

    monkeypatch.setattr(export, "iter_responses", failing)
    with pytest.raises(PsytestError, match="store vanished"):
        to_duckdb(big_run, database, chunksize=100)
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM responses").fetchone()[0] == copied
        assert [t for (t,) in con.execute("SHOW TABLES").fetchall()] == ["responses"]


def test_export_command_writes_the_store_to_csv_and_duckdb_in_chunks(big_run, tmp_path):
    from psychometrics.analysis.tables import spreadsheet_safe

    # A hostile reply in the store: the CSV must be spreadsheet-safe, DuckDB must keep it exactly.
    hostile = '=HYPERLINK("http://evil.example","x")'
    run = private_copy(big_run, tmp_path / "run")
    con = sqlite3.connect(run / "responses.sqlite")
    try:
        with con:
            first = con.execute("SELECT rowid FROM responses WHERE mode = 'text' ORDER BY rowid").fetchone()[0]
            con.execute("UPDATE responses SET raw_reply = ? WHERE rowid = ?", (hostile, first))
    finally:
        con.close()
    whole = pd.concat(iter_responses(run))
    result = psytest("export", str(run), "--csv", str(tmp_path / "out.csv"), "--chunksize", "97", "--json",
                     cwd=tmp_path)
    assert json.loads(result.stdout)["csv"]["rows"] == len(whole)
    assert not (tmp_path / "out.csv.partial").exists()
    csv = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, na_values=[""])
    expected = spreadsheet_safe(whole).reset_index(drop=True)
    assert list(csv.columns) == list(whole.columns) and len(csv) == len(whole)  # one header, every row
    assert list(csv["request_id"]) == list(expected["request_id"])
    assert csv["value"].equals(expected["value"].astype(float))
    assert "'" + hostile in set(csv["raw_reply"]) and hostile not in set(csv["raw_reply"])
    duckdb = pytest.importorskip("duckdb")
    result = psytest("export", str(run), "--duckdb", str(tmp_path / "s.duckdb"), "--table", "run1", cwd=tmp_path)
    assert result.stdout.strip() == f"{len(whole):,} answers -> {tmp_path / 's.duckdb'} (table run1)"
    with duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM run1").fetchone()[0] == len(whole)
        assert con.execute("SELECT count(*) FROM run1 WHERE raw_reply = ?", [hostile]).fetchone()[0] == 1


@pytest.mark.parametrize("args, message", [
    (["RUN"], "give --csv FILE, --duckdb FILE or both"),
    (["RUN", "--csv", "x.csv", "--chunksize", "0"], "--chunksize must be at least 1"),
    (["NOWHERE", "--csv", "x.csv"], "nowhere: no such run directory"),
    (["RUN", "--duckdb", "x.duckdb", "--table", "a b"], "not a plain SQL name"),
])
def test_export_bad_input_is_one_line(big_run, tmp_path, args, message):
    args = [str(big_run) if a == "RUN" else str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in args]
    result = psytest("export", *args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_example_scripts_run(tmp_path):
    demo = subprocess.run([sys.executable, str(ROOT / "examples" / "scaling" / "router_demo.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=ROOT)
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.startswith("80 requests sent, 0 failed; answered per server:")
    pytest.importorskip("duckdb")
    loaded = subprocess.run([sys.executable, str(ROOT / "examples" / "scaling" / "load_store.py"),
                             str(tmp_path / "run"), str(tmp_path / "run.duckdb")],
                            capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=ROOT)
    assert loaded.returncode == 0, loaded.stderr
    chunked, duck = loaded.stdout.split("DuckDB:\n")
    assert chunked.removeprefix("pandas, in chunks:\n").strip() == duck.strip()
    cluster = (ROOT / "examples" / "scaling" / "cluster.yaml")
    backend = resolve_model(f"router:{cluster}")
    assert backend.params["models"] == ["openai/meta-llama/Llama-3.1-8B-Instruct"]


def read_every_way(run: Path, tmp_path: Path) -> list[int]:
    """Answers counted by each of psytest's readers: export's chunks, the read-only store the analysis
    commands open, and ``psytest export`` in a process of its own."""
    chunked = sum(len(chunk) for chunk in iter_responses(run, chunksize=1000))
    with RunStore(run / "responses.sqlite", read_only=True) as store:
        stored = store.count()
    csv = tmp_path / "read.csv"
    exported = json.loads(psytest("export", str(run), "--csv", str(csv), "--json", cwd=tmp_path).stdout)
    return [chunked, stored, exported["csv"]["rows"]]


def test_reading_changes_nothing_and_works_while_a_writer_holds_the_store(big_run, tmp_path):
    """While a writer is mid-transaction, with answers it committed still only in the write-ahead log (as
    during a run), every reader sees exactly the committed answers and changes no byte of the store."""
    run = private_copy(big_run, tmp_path / "run")
    store = run / "responses.sqlite"
    writer = sqlite3.connect(store, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")  # what it commits stays in the log
        writer.execute("DELETE FROM responses WHERE rowid IN (SELECT rowid FROM responses ORDER BY rowid LIMIT 7)")
        writer.execute("BEGIN IMMEDIATE")  # as administer does while it commits an answer
        writer.execute("DELETE FROM responses WHERE rowid IN (SELECT rowid FROM responses ORDER BY rowid LIMIT 5)")
        before = store_bytes(store)  # the writer does nothing more until the readers are done
        counts = read_every_way(run, tmp_path)
        after = store_bytes(store)
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert "responses.sqlite-wal" in before  # the committed delete is in the log, not in the database file
    assert counts == [BIG_RUN_ROWS - 7] * 3  # the committed state, not the writer's uncommitted one
    assert after == before


def test_a_reader_never_checkpoints_a_killed_writers_log(big_run, tmp_path):
    """A run killed mid-way leaves answers in the write-ahead log. A reader that is the only connection
    reads them, and leaves them there: closing, it does not checkpoint them into the database file (as a
    read-write connection would) or change the log."""
    run = private_copy(big_run, tmp_path / "run")
    store = run / "responses.sqlite"
    killed = subprocess.run([sys.executable, "-c", f"""
import os, signal, sqlite3
writer = sqlite3.connect({str(store)!r}, isolation_level=None)
writer.execute("PRAGMA wal_autocheckpoint=0")
writer.execute("DELETE FROM responses WHERE rowid IN (SELECT rowid FROM responses ORDER BY rowid LIMIT 7)")
os.kill(os.getpid(), signal.SIGKILL)
"""], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = store_bytes(store)
    assert "responses.sqlite-wal" in before
    for _ in range(2):  # twice: the first read also rebuilds the log's index the dead writer left
        assert read_every_way(run, tmp_path) == [BIG_RUN_ROWS - 7] * 3
        assert store_bytes(store) == before
