"""A planted API key never reaches a file psytest writes, nor its terminal output.

Keys travel every route the backends support: ``OPENAI_API_KEY`` in the environment, ``user:password@``
in ``--api-base`` (sent as a Basic Authorization header), and ``os.environ/VARIABLE`` in a router file.
Runs go through the real command line against loopback servers: one that checks the key and answers,
and a careless one whose every error message echoes the Authorization header, the URL and all request
headers back (401, 403, 404, 400, 429 and 500). Questionnaire runs (administer) and behaviour runs
(behave) both. Then score, report (also ``--behavior``), compare, baseline, check, reproduce, validity
and export (CSV and DuckDB) run on the results, and every byte of every file under the work directory
(SQLite stores with their WAL, manifests, CSVs, HTML, JSON, DuckDB) is searched for the key, its pieces
and its encodings.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from contextlib import closing
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from psychometrics.design.plan import Design
from psychometrics.errors import EndpointStopped
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.testing.openai_server import start_server

KEY = "sk-test-PLANTED-7d3f9a2c5e1b4086"
NODE_KEY = "sk-node-PLANTED-51c0e8aa94d2"
USER, PASSWORD = "psy-user", "PLANTEDpw-93kd8Xq2"
SIM = "sim/e=1,a=-0.5,seed=4"


def secret_forms() -> list[bytes]:
    """The secrets, their 10-character pieces, and the encodings a leak could take."""
    forms = set()
    for secret in (KEY, NODE_KEY, PASSWORD):
        forms.add(secret)
        forms.update(secret[i:i + 10] for i in range(len(secret) - 9) if "PLANTED" in secret[i:i + 10]
                     or not any(part in secret[i:i + 10] for part in ("sk-test-", "sk-node-")))
        forms.add(quote(secret, safe=""))
        forms.add(base64.b64encode(secret.encode()).decode())
    forms.add(base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    forms.add(f"{USER}:{PASSWORD}")
    forms.add("PLANTED")
    return sorted(f.encode() for f in forms)


def assert_no_secret(data: bytes, where: str) -> None:
    for form in secret_forms():
        assert form not in data, f"{form!r} found in {where}"


class _Echo(BaseHTTPRequestHandler):
    """A careless OpenAI-style server: every error message repeats the request's credentials."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        return

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append(self.headers.get("Authorization", ""))
        status = self.server.statuses[len(self.server.seen) % len(self.server.statuses)]
        message = (f"Invalid credentials: Authorization={self.headers.get('Authorization')} url={self.path} "
                   f"headers={dict(self.headers)}")
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": status}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def echo_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.statuses, server.seen = (401, 403, 404, 400, 429, 500), []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def psytest(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, timeout=600,
                            env=env, cwd=cwd)
    assert_no_secret(result.stdout + result.stderr, f"output of psytest {' '.join(args)}")
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory, echo_server):
    """Every kind of run, and every command on them, in one directory; returns it and the results."""
    root = tmp_path_factory.mktemp("secrets")
    env = {**os.environ, "OPENAI_API_KEY": KEY, "NODE_KEY": NODE_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    results = {}
    from psychometrics.behavior.task import resolve_tasks
    from psychometrics.design.personas import resolve_persona_set

    answering = SimulatedRespondent(SIM)  # knows the personas and tasks, so behaviour and validity mean something
    answering.prepare([resolve_inventory("mini-ipip")], resolve_persona_set("trait-shaping"))
    answering.prepare_tasks(resolve_tasks(TASKS))
    with start_server(answering, api_key=KEY) as good, \
            start_server(SimulatedRespondent(SIM), api_key=NODE_KEY) as node1, \
            start_server(SimulatedRespondent(SIM), api_key=NODE_KEY) as node2:
        common = ("-i", "mini-ipip", "--max-retries", "0", "--json")
        results["good"] = psytest("administer", "--model", "openai/psytest-sim", "--api-base", good.base_url,
                                  "--option-orders", "original,reversed", "--out", "runs/good", *common,
                                  env=env, cwd=root)
        results["good2"] = psytest("administer", "--model", "openai/psytest-sim", "--api-base", good.base_url,
                                   "--option-orders", "original,reversed", "--seed", "5", "--temperature", "1",
                                   "--out", "runs/good2", *common, env=env, cwd=root)
        # litellm itself (the Python API), with the key from the environment and user:password@ in the URL
        from psychometrics.models.litellm_backend import LiteLLMBackend
        from psychometrics.run.directory import administer

        os.environ["OPENAI_API_KEY"] = KEY
        try:
            results["litellm"] = administer(
                LiteLLMBackend("openai/psytest-sim", api_base=good.base_url, timeout_s=10),
                [resolve_inventory("mini-ipip")], Design(), root / "runs" / "litellm")
            basic_base = echo_server_url(echo_server, with_credentials=True)
            with pytest.raises(EndpointStopped) as stopped:  # the endpoint refuses everything: the run stops early
                administer(LiteLLMBackend("openai/psytest-sim", api_base=basic_base, timeout_s=10),
                           [resolve_inventory("mini-ipip")], Design(), root / "runs" / "litellm-echo")
            results["litellm-echo"] = stopped.value
        finally:
            os.environ.pop("OPENAI_API_KEY", None)
        results["echo"] = psytest("administer", "--model", "openai/psytest-sim", "--api-base",
                                  echo_server_url(echo_server), "--out", "runs/echo", *common, env=env, cwd=root)
        results["echo-basic"] = psytest("administer", "--model", "openai/psytest-sim", "--api-base",
                                        echo_server_url(echo_server, with_credentials=True), "--out",
                                        "runs/echo-basic", *common, env=env, cwd=root)
        cluster = root / "cluster.yaml"
        cluster.write_text("model_list:\n" + "".join(
            f"  - model_name: sim\n    litellm_params: {{model: openai/psytest-sim, api_base: '{s.base_url}', "
            "api_key: os.environ/NODE_KEY}\n" for s in (node1, node2)))
        results["router"] = psytest("administer", "--model", f"router:{cluster}", "--out", "runs/router", *common,
                                    env=env, cwd=root)
        results["router-echo"] = psytest(
            "administer", "--model", f"router:{write_echo_cluster(root, echo_server)}", "--out", "runs/router-echo",
            *common, env=env, cwd=root)
        # behaviour runs, and a questionnaire run with the same personas for validity
        personas = ("--personas", "trait-shaping")
        results["personas"] = psytest("administer", "--model", "openai/psytest-sim", "--api-base", good.base_url,
                                      *personas, "--out", "runs/personas", *common, env=env, cwd=root)
        behave = ("--tasks", TASKS, "--variants", "2", "--max-retries", "0", "--json")
        results["behave"] = psytest("behave", "--model", "openai/psytest-sim", "--api-base", good.base_url,
                                    *personas, *behave, "--out", "runs/behave", env=env, cwd=root)
        results["behave-echo"] = psytest("behave", "--model", "openai/psytest-sim", "--api-base",
                                         echo_server_url(echo_server, with_credentials=True), *behave,
                                         "--out", "runs/behave-echo", env=env, cwd=root)
    for name in ("good", "litellm", "router"):
        run = f"runs/{name}"
        results[f"score-{name}"] = psytest("score", run, env=env, cwd=root)
        results[f"report-{name}"] = psytest("report", run, "--out", f"reports/{name}", env=env, cwd=root)
        results[f"reproduce-{name}"] = psytest("reproduce", run, env=env, cwd=root)
    results["compare"] = psytest("compare", "runs/good", "runs/good2", "runs/router", "--out", "reports/compare",
                                 env=env, cwd=root)
    results["baseline"] = psytest("baseline", "runs/good", "--out", "reports/baseline.json", env=env, cwd=root)
    results["check"] = psytest("check", "runs/good2", "--baseline", "reports/baseline.json", env=env, cwd=root)
    results["validity"] = psytest("validity", "-s", "runs/personas", "-b", "runs/behave", "--out", "reports/validity",
                                  "--bootstrap", "100", env=env, cwd=root)
    results["report-behavior"] = psytest("report", "runs/personas", "--behavior", "runs/behave", "--out",
                                         "reports/with-behavior", env=env, cwd=root)
    results["export"] = psytest("export", "runs/good", "--csv", "reports/export.csv", "--duckdb",
                                "reports/export.duckdb", env=env, cwd=root)
    return root, results


TASKS = "agreeableness,extraversion"


def echo_server_url(server, with_credentials: bool = False) -> str:
    credentials = f"{USER}:{PASSWORD}@" if with_credentials else ""
    return f"http://{credentials}127.0.0.1:{server.server_address[1]}/v1"


def write_echo_cluster(root: Path, server) -> Path:
    path = root / "echo-cluster.yaml"
    path.write_text("model_list:\n  - model_name: sim\n    litellm_params: {model: openai/psytest-sim, "
                    f"api_base: '{echo_server_url(server, with_credentials=True)}', api_key: os.environ/NODE_KEY}}\n")
    return path


def test_every_command_succeeded_where_it_should(work):
    root, results = work
    for name in ("good", "good2", "router", "personas", "behave"):
        payload = json.loads(results[name].stdout)
        assert results[name].returncode == 0 and payload["failed"] == 0 and payload["sent"] > 0, name
    assert results["litellm"].stats.failed == 0 and results["litellm"].stats.sent == 20
    for name in ("echo", "echo-basic", "router-echo", "behave-echo"):
        # the server refuses every request: the run stops after a few, with one line (exit 2)
        assert results[name].returncode == 2, (name, results[name].stderr)
        lines = results[name].stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("psytest: error: ") and "stopped after" in lines[0], (name, lines)
    assert "stopped after" in str(results["litellm-echo"])
    assert_no_secret(str(results["litellm-echo"]).encode(), "the stopped litellm run's message")
    for name in ("score-good", "report-good", "report-litellm", "report-router", "reproduce-good", "compare",
                 "baseline", "validity", "report-behavior", "export"):
        assert results[name].returncode == 0, (name, results[name].stderr)
    assert (root / "reports" / "good" / "report.html").is_file()
    assert (root / "reports" / "compare" / "compare.html").is_file()
    assert (root / "reports" / "validity" / "validity.html").is_file()
    assert (root / "reports" / "export.duckdb").is_file() and (root / "reports" / "export.csv").is_file()


def test_the_careless_server_did_receive_the_secrets(work, echo_server):
    """Control: the secrets were sent, so their absence from the files below means something."""
    seen = set(echo_server.seen)
    assert f"Bearer {KEY}" in seen and f"Bearer {NODE_KEY}" not in seen  # the router sends Basic instead
    assert "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() in seen  # administer and behave


def test_error_rows_say_what_failed_without_the_secret(work):
    root, results = work
    for name in ("echo", "echo-basic", "litellm-echo", "router-echo", "behave-echo"):
        if name == "behave-echo":
            with closing(sqlite3.connect(root / "runs" / name / "behavior.sqlite")) as db, db:
                errors = [row[0] for row in db.execute("SELECT error FROM conversations")]
        else:
            with closing(sqlite3.connect(root / "runs" / name / "responses.sqlite")) as db, db:
                errors = [row[0] for row in db.execute("SELECT error FROM responses")]
        assert 3 <= len(errors) < 20 and all(errors), name  # stopped after a few requests, each failure stored
        for error in errors:
            assert_no_secret(error.encode(), f"runs/{name} error column")
        joined = " ".join(errors)
        assert "[redacted]" in joined, name
        assert any(word in joined for word in ("authentication failed", "permission denied", "not found",
                                               "rejected", "rate limited", "unavailable")), name


def test_no_file_under_the_work_directory_holds_a_secret(work):
    root, _ = work
    files = [p for folder in ("runs", "reports") for p in (root / folder).rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".sqlite", ".json", ".csv", ".html", ".duckdb"} <= kinds and len(files) > 100
    assert (root / "runs" / "behave" / "behavior.sqlite") in files and (root / "reports" / "validity" / "run_info.csv") in files
    for path in files:
        assert_no_secret(path.read_bytes(), str(path.relative_to(root)))
    for store in [*root.glob("runs/*/responses.sqlite"), *root.glob("runs/*/behavior.sqlite")]:  # every value too
        with closing(sqlite3.connect(store)) as db, db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for row in db.execute(f"SELECT * FROM {table}"):
                    assert_no_secret(repr(row).encode(), f"{store} table {table}")


def test_manifests_record_where_but_not_how(work):
    root, _ = work
    manifest = json.loads((root / "runs" / "echo-basic" / "manifest.json").read_text())
    assert manifest["endpoints"][0]["url"].startswith("http://127.0.0.1:") and "api_base" not in manifest["backend_params"]
    router = json.loads((root / "runs" / "router" / "manifest.json").read_text())
    assert router["backend_params"] == {"backend": "litellm-router", "model_group": "sim",
                                        "models": ["openai/psytest-sim"]}
