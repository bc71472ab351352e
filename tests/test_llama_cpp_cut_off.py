"""Cut-off replies and the log-probability probe against a server nobody here wrote: llama-cpp-python's own,
serving SmolLM2 (started as in tests/test_llama_cpp_server.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from psychometrics.run.store import RunStore
from psychometrics.testing.cli import cli, one_line_error
from psychometrics.testing.waiting import HANG_GUARD_S, wait_for

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
pytestmark = pytest.mark.slow

MODEL = "openai/smollm2"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(logits_all: bool, log: Path):
    """llama.cpp's server on a free port, its log (a line per request) to ``log``; ``logits_all false`` is the
    server that refuses log-probabilities."""
    from psychometrics.models.local import embedded_model_path

    port = _free_port()
    with log.open("w") as sink:  # a file, not a pipe: a full pipe would stop the server mid-run
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path("smollm2-135m")),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--logits_all", str(logits_all).lower(),
             "--n_threads", "1", "--n_threads_batch", "1"],
            stdout=sink, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/v1"

    def answering() -> bool:
        try:
            urllib.request.urlopen(f"{base}/models", timeout=60).read()
            return True
        except OSError:
            assert process.poll() is None, "llama.cpp server exited"
            return False

    wait_for(answering, "the llama.cpp server answering", poll_s=0.2)
    return process, base


def _stop(process) -> None:
    process.terminate()
    process.wait(timeout=HANG_GUARD_S)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    process, base = _serve(logits_all=True, log=tmp_path_factory.mktemp("llama") / "server.log")
    try:
        yield base
    finally:
        _stop(process)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-not-checked")


def _administer(capsys, base, out, *options):
    return cli(capsys, "administer", "--model", MODEL, "--api-base", base, "-i", "mini-ipip", "--templates", "worded",
               "--concurrency", "1", "--out", out, "--json", *options)


def test_replies_cut_at_a_small_max_tokens_are_truncated_and_the_run_exits_3(llama_server, tmp_path, capsys):
    code, stdout, err = _administer(capsys, llama_server, tmp_path / "run", "--max-tokens", "1")
    summary = json.loads(stdout)
    with RunStore(tmp_path / "run" / "responses.sqlite") as store:
        rows = list(store.rows())
    cut = [r for r in rows if r.finish_reason == "length"]
    assert summary["failed"] == 0 and len(rows) == 20
    assert len(cut) > 10  # the server said so: most one-token replies of worded options are cut
    assert all(r.outcome in ("truncated", "valid", "refusal") for r in cut)
    assert all(r.parse_method == "strict" for r in cut if r.outcome == "valid")  # only a whole option stands
    truncated = summary["outcomes"].get("truncated", 0)
    assert truncated > 10, summary
    if truncated * 2 > 20:
        assert code == 3 and "requests answered were cut off at max_tokens" in err, err


def test_truncated_replies_are_asked_again_with_more_tokens_and_become_valid(llama_server, tmp_path, capsys):
    code, stdout, err = _administer(capsys, llama_server, tmp_path / "run", "--max-tokens", "1",
                                    "--on-truncated", "reask:4")
    with RunStore(tmp_path / "run" / "responses.sqlite") as store:
        rows = list(store.rows())
    asked_again = [r for r in rows if r.note and r.note.startswith("cut off at max_tokens 1")]
    assert code == 0, err
    assert len(asked_again) > 10 and all(r.reask_replies and r.finish_reason == "stop" for r in asked_again)
    assert json.loads(stdout)["outcomes"].get("truncated", 0) == 0
    assert sum(r.outcome == "valid" for r in asked_again) > len(asked_again) / 2


def test_a_server_without_logprobs_stops_a_probs_run_at_once_with_one_line(tmp_path, capsys):
    process, base = _serve(logits_all=False, log=tmp_path / "server.log")
    try:
        code, _, err = cli(capsys, "administer", "--model", MODEL, "--api-base", base, "-i", "mini-ipip",
                           "--mode", "probs", "--out", tmp_path / "run")
    finally:
        _stop(process)
    one_line_error(code, err, "gives no log-probabilities", "use --mode text")
    # one probe; no retries, no other request
    assert (tmp_path / "server.log").read_text().count("POST /v1/chat/completions") == 1
    assert not (tmp_path / "run").exists()
