"""Runs against endpoints that are wrong, gone, slow or moved (issue 17, point 0, the failure side).

* Nothing listening: the run stops after a few failed connections (exit 75, one line), keeps what it
  committed, and the same command resumes once a server is there.
* Refusals every request would get (401, a URL without /v1, 'not supported'): the run stops after a few
  requests (exit 2, one line saying what to change), not after the whole plan.
* An endpoint that moves (a trailing /v1/, localhost for 127.0.0.1, a new port) is the same run: dry-run
  counts the answers already there and resuming sends none of them again; the manifest records every
  endpoint used (also one from OPENAI_BASE_URL). Runs made when the URL was part of request ids resume too.
* The served model name and fingerprint are stored with every answer.
* ``--timeout`` counts from when the server could start on a request: at concurrency 8 on a one-slot
  server, requests queued longer than the timeout are answered, while a stalled server still times out.

The scripted server below is a few lines of ``http.server``: each test counts what it received, so
"stops after a few requests" is a count, and nothing waits on the clock.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")

from psychometrics.design.plan import Design  # noqa: E402
from psychometrics.engine.pool import Breaker, RetryPolicy  # noqa: E402
from psychometrics.errors import EndpointDown, EndpointStopped  # noqa: E402
from psychometrics.inventories.library import resolve_inventory  # noqa: E402
from psychometrics.models.base import TransientModelError  # noqa: E402
from psychometrics.models.litellm_backend import EndpointCallError  # noqa: E402
from psychometrics.models.openai_http import OpenAIHTTPBackend  # noqa: E402
from psychometrics.run.directory import administer, estimate_requests  # noqa: E402
from psychometrics.run.manifest import read_manifest  # noqa: E402
from psychometrics.run.store import RunStore  # noqa: E402
from psychometrics.testing.waiting import HANG_GUARD_S  # noqa: E402

MODEL = "openai/psytest-endpoint"
PLANNED = 20  # mini-ipip, one request per item


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Scripted:
    """What the server does with each chat request: ``answer`` (a valid reply "3", after ``latency_s``,
    one at a time when ``slots`` is 1), ``401``, ``404`` (everything outside /v1), ``unsupported`` (HTTP
    500 "... is not supported") or ``stall`` (never answers until the server stops)."""

    def __init__(self, behaviour: str = "answer", latency_s: float = 0.0, slots: int | None = None,
                 first_latency_s: float | None = None):
        self.behaviour = behaviour
        self.latency_s = latency_s
        self.first_latency_s = first_latency_s  # the first answer's generation time, if different
        self.received = 0
        self.answered = 0
        self.lock = threading.Lock()
        self.slot = threading.Semaphore(slots) if slots else None
        self.stopping = threading.Event()


@contextmanager
def scripted_server(script: Scripted, port: int = 0):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with script.lock:
                script.received += 1
            if script.behaviour == "401":
                return self._send(401, {"error": {"message": "Invalid API key", "code": "invalid_api_key"}})
            if script.behaviour == "404" or not self.path.startswith("/v1/"):
                return self._send(404, {"detail": "Not Found"})
            if script.behaviour == "html":  # a web UI where the API was expected
                page = b"<!doctype html><html><body>Welcome to the chat UI</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return None
            if script.behaviour == "unsupported":
                return self._send(500, {"error": {"message": "logit_bias is not supported by this server"}})
            if script.behaviour == "stall":
                script.stopping.wait(HANG_GUARD_S)
                return None
            if script.slot is not None:
                script.slot.acquire()
            try:
                slow = script.first_latency_s is not None and script.answered == 0
                script.stopping.wait(script.first_latency_s if slow else script.latency_s)
                with script.lock:
                    script.answered += 1
            finally:
                if script.slot is not None:
                    script.slot.release()
            return self._send(200, {
                "id": "x", "object": "chat.completion", "model": "qwen2.5-0.5b-instruct-q4_k_m.gguf",
                "system_fingerprint": "b4567-cpu", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "3"}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51}})

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.server_address[1]
    finally:
        script.stopping.set()
        server.shutdown()
        server.server_close()


def run(api_base: str, out: Path, *, concurrency: int = 4, timeout_s: float | None = None, retries: int = 5):
    backend = OpenAIHTTPBackend(MODEL, api_base=api_base, timeout_s=timeout_s)
    return administer(backend, [resolve_inventory("mini-ipip")], Design(), out, concurrency=concurrency,
                      timeout_s=timeout_s, retry=RetryPolicy(max_retries=retries, base_s=0.05))


def rows_of(out: Path) -> list:
    with RunStore(out / "responses.sqlite", read_only=True) as store:
        return list(store.rows())


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psychometrics", *args], capture_output=True, text=True,
                          timeout=HANG_GUARD_S, env={**os.environ, "COLUMNS": "200", **(env or {})})


# -- the breaker ------------------------------------------------------------------------------------


def test_nothing_listening_stops_the_run_in_one_line_and_the_same_command_resumes(tmp_path):
    port = free_port()  # nothing listens there
    out = tmp_path / "run"
    args = ["administer", "-m", MODEL, "--api-base", f"http://127.0.0.1:{port}/v1", "-i", "mini-ipip",
            "--out", str(out), "--concurrency", "4"]
    stopped = cli(*args)
    assert stopped.returncode == 75, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("psytest")]
    assert len(lines) == 1 and "nothing answers" in lines[0] and "re-run the same command" in lines[0]
    assert "Traceback" not in stopped.stderr
    failed = rows_of(out)
    assert 0 < len(failed) <= 4 and all(r.outcome == "error" for r in failed)  # at most the requests in flight
    script = Scripted()
    with scripted_server(script, port=port):
        resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert script.answered == PLANNED  # each request once: nothing had been answered
    assert {r.outcome for r in rows_of(out)} == {"valid"}


@pytest.mark.parametrize("behaviour, api_base_path, words", [
    ("401", "/v1", ["authentication failed", "OPENAI_API_KEY"]),
    ("404", "", ["no chat completions", "/v1"]),
    ("unsupported", "/v1", ["does not support", "logit_bias"]),
    ("html", "/v1", ["web page", "check --api-base"]),
])
def test_a_refusal_every_request_would_get_stops_after_a_few(tmp_path, behaviour, api_base_path, words):
    script = Scripted(behaviour)
    with scripted_server(script) as (base, _):
        with pytest.raises(EndpointStopped) as caught:
            run(base + api_base_path, tmp_path / "run", concurrency=4)
    message = str(caught.value)
    assert all(w in message for w in words), message
    assert "\n" not in message and "re-run the same command" in message
    assert script.received < PLANNED and script.received <= 3 + 4  # the breaker's count, plus those in flight


def test_a_missing_v1_says_what_to_write_on_the_command_line(tmp_path):
    script = Scripted("answer")
    with scripted_server(script) as (base, _):
        result = cli("administer", "-m", MODEL, "--api-base", base, "-i", "mini-ipip", "--out", str(tmp_path / "r"),
                     "--concurrency", "2")
        assert result.returncode == 2, result.stderr
        line = [x for x in result.stderr.splitlines() if x.startswith("psytest")]
        assert len(line) == 1 and f"try --api-base {base}/v1" in line[0]
        assert script.received <= 3 + 2
        fixed = cli("administer", "-m", MODEL, "--api-base", base + "/v1/", "-i", "mini-ipip", "--out",
                    str(tmp_path / "r"), "--concurrency", "2")
    assert fixed.returncode == 0, fixed.stderr
    assert script.answered == PLANNED


def test_the_breaker_rides_out_a_short_outage_of_an_endpoint_that_answered():
    unreachable = TransientModelError("nothing answers", unreachable=True)
    fresh = Breaker(unreachable=3, grace_s=3600)
    for _ in range(3):
        fresh.attempt_failed(unreachable)
    assert isinstance(fresh.stopped, EndpointDown)  # never answered: three failed connections stop it
    running = Breaker(unreachable=3, grace_s=3600)
    running.answer()
    for _ in range(10):
        running.attempt_failed(unreachable)
    assert running.stopped is None  # it answered before: a restart of less than grace_s does not stop it
    reset = TransientModelError("connection reset")
    overloaded = Breaker(first_failures=2)
    for _ in range(5):
        overloaded.attempt_failed(reset)
        overloaded.request_failed(reset)
    assert overloaded.stopped is None  # transient trouble after retries is not the endpoint's set-up
    slow = TransientModelError("no answer", timed_out=True)
    stalled = Breaker(stalls=3, grace_s=3600)
    for _ in range(3):
        stalled.attempt_failed(slow)
    assert isinstance(stalled.stopped, EndpointDown)
    busy = Breaker(stalls=3, grace_s=3600)
    for _ in range(5):
        busy.attempt_failed(slow)
        busy.answer()  # answers between timeouts: a slow request, not a stalled server
    assert busy.stopped is None
    refused = Breaker(refusals=3)
    refused.answer()
    for _ in range(3):
        refused.request_failed(EndpointCallError("401"))
    assert isinstance(refused.stopped, EndpointStopped)


# -- an endpoint that moves ----------------------------------------------------------------------------


def test_a_moved_or_respelled_endpoint_resumes_the_same_run_without_resending(tmp_path):
    out = tmp_path / "run"
    first, second = Scripted(), Scripted()
    with scripted_server(first) as (_, port_a), scripted_server(second) as (_, port_b):
        run(f"http://localhost:{port_a}/v1/", out)
        assert first.answered == PLANNED
        with RunStore(out / "responses.sqlite", read_only=False) as store:  # half of them lost: to be re-sent
            lost = [r for r in store.rows()][:8]
            store.conn.execute(f"DELETE FROM responses WHERE request_id IN ({','.join('?' * len(lost))})",
                               [r.request_id for r in lost])
            store.conn.commit()
        moved = OpenAIHTTPBackend(MODEL, api_base=f"http://127.0.0.1:{port_b}/v1")
        plan = estimate_requests(moved, [resolve_inventory("mini-ipip")], Design(), None, out, probe=False)
        assert (plan["already_answered"], plan["to_send"]) == (PLANNED - 8, 8)
        resumed = run(f"http://127.0.0.1:{port_b}/v1", out)
    assert second.answered == 8 and resumed.stats.sent == 8
    manifest = read_manifest(out)
    assert [e.url for e in manifest.endpoints] == [f"http://localhost:{port_a}/v1", f"http://127.0.0.1:{port_b}/v1"]
    assert "api_base" not in manifest.backend_params


def test_a_run_made_when_the_url_was_in_its_identity_resumes_at_a_new_url(tmp_path):
    class Legacy(OpenAIHTTPBackend):  # params as psytest wrote them before: the URL among them
        @property
        def params(self):
            return {"backend": "openai-http", "api_base": self.api_base}

    out = tmp_path / "run"
    old, new = Scripted(), Scripted()
    with scripted_server(old) as (base_a, _), scripted_server(new) as (base_b, _):
        inventory = resolve_inventory("mini-ipip")
        administer(Legacy(MODEL, api_base=base_a + "/v1"), [inventory], Design(), out)
        legacy_ids = {r.request_id for r in rows_of(out)}
        manifest = json.loads((out / "manifest.json").read_text())
        manifest.pop("endpoints")  # as written then
        (out / "manifest.json").write_text(json.dumps(manifest))
        plan = estimate_requests(OpenAIHTTPBackend(MODEL, api_base=base_b + "/v1/"), [inventory], Design(), None, out,
                                 probe=False)
        assert plan["already_answered"] == PLANNED
        resumed = run(base_b + "/v1/", out)
    assert new.received == 0 and resumed.stats.sent == 0
    assert {r.request_id for r in rows_of(out)} == legacy_ids
    recorded = read_manifest(out)
    assert recorded.backend_params == {"backend": "openai-http", "api_base": base_a + "/v1"}  # ids as before
    assert [e.url for e in recorded.endpoints] == [base_b + "/v1"]


def test_a_base_url_from_the_environment_is_recorded(tmp_path, monkeypatch):
    from psychometrics.models import resolve_model

    monkeypatch.setenv("OPENAI_BASE_URL", "http://gateway.example.org:8080/v1/")
    backend = resolve_model("openai/gpt-4o-mini")
    assert (backend.endpoint, backend.endpoint_source) == ("http://gateway.example.org:8080/v1", "OPENAI_BASE_URL")
    assert "api_base" not in json.dumps(backend.params)


# -- what answered -----------------------------------------------------------------------------------


def test_the_served_model_and_fingerprint_are_stored_with_every_answer(tmp_path):
    with scripted_server(Scripted()) as (base, _):
        run(base + "/v1", tmp_path / "run")
    rows = rows_of(tmp_path / "run")
    assert len(rows) == PLANNED
    assert {(r.served_model, r.system_fingerprint) for r in rows} == {("qwen2.5-0.5b-instruct-q4_k_m.gguf", "b4567-cpu")}


# -- the timeout ---------------------------------------------------------------------------------------


def test_time_queued_behind_the_runs_own_requests_does_not_count_against_the_timeout(tmp_path):
    # one slot: the eighth request in flight waits for seven answers (7 x 0.4 s) before its own 0.4 s,
    # longer than the 2 s timeout, but an answer arrives every 0.4 s, so no request times out
    script = Scripted(latency_s=0.4, slots=1)
    with scripted_server(script) as (base, _):
        result = run(base + "/v1", tmp_path / "run", concurrency=8, timeout_s=2.0, retries=0)
    assert result.stats.failed == 0 and result.stats.timeouts_retried == 0
    assert script.received == PLANNED  # nothing thrown away and sent again


def test_when_nothing_progresses_only_the_oldest_request_is_given_up(tmp_path):
    # one slot; the first answer takes 3 s, longer than the 2 s timeout, the others 0.1 s. At 2 s only the
    # oldest (the one being generated) is given up; the three queued behind it get 2 s afresh and are
    # answered once the slot frees, so one request is sent twice, not four
    script = Scripted(latency_s=0.1, slots=1, first_latency_s=3.0)
    with scripted_server(script) as (base, _):
        result = run(base + "/v1", tmp_path / "run", concurrency=4, timeout_s=2.0, retries=1)
    assert result.stats.timeouts_retried == 1 and result.stats.failed == 0


def test_a_stalled_server_times_out_and_stops_the_run(tmp_path):
    # a server that answers nothing: one request given up per timeout, and three in a row stop the run,
    # cancelling those in flight instead of letting each wait out its own timeout
    script = Scripted("stall")
    with scripted_server(script) as (base, _):
        with pytest.raises(EndpointDown) as caught:
            run(base + "/v1", tmp_path / "run", concurrency=4, timeout_s=0.5, retries=1)
    assert "3 requests in a row timed out" in str(caught.value) and "raise --timeout" in str(caught.value)
    assert "were sent again" in str(caught.value)  # the retried ones may be billed twice: said in the one line
    rows = rows_of(tmp_path / "run")
    assert 0 < len(rows) <= 4 and any("timed out after 0.5 s" in r.error for r in rows)
    assert script.received < PLANNED


def test_a_behaviour_run_resumes_at_a_moved_endpoint_without_resending(tmp_path):
    from psychometrics.behavior.runner import BehaviorDesign, behave, estimate_conversations
    from psychometrics.behavior.task import resolve_tasks
    from psychometrics.models.simulated import SimulatedRespondent
    from psychometrics.testing.openai_server import start_server

    tasks, design, out = resolve_tasks("dictator-game"), BehaviorDesign(variants=4), tmp_path / "behave"
    with start_server(SimulatedRespondent("sim/seed=4")) as first, start_server(SimulatedRespondent("sim/seed=4")) as moved:
        done = behave(OpenAIHTTPBackend(MODEL, api_base=f"http://localhost:{first.port}/v1/"), tasks, design, out)
        assert done.stats.sent == 4 and done.stats.failed == 0
        there = OpenAIHTTPBackend(MODEL, api_base=moved.base_url)
        assert estimate_conversations(tasks, design, there, None, out)["already_answered"] == 4
        again = behave(there, tasks, design, out)
        assert again.stats.sent == 0 and moved.requests_served == 0
    manifest = read_manifest(out, expect="behavior")
    assert [e.url for e in manifest.endpoints] == [f"http://localhost:{first.port}/v1", moved.base_url]
