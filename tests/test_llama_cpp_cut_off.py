"""Cut-off replies and the log-probability probe against a server nobody here wrote: llama-cpp-python's own,
serving SmolLM2 (psychometrics.testing.llama_server)."""

from __future__ import annotations

import json

import pytest

from psychometrics.run.store import RunStore
from psychometrics.testing.cli import cli, one_line_error
from psychometrics.testing.llama_server import llama_cpp_server

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
pytestmark = pytest.mark.slow

MODEL = "openai/smollm2"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    with llama_cpp_server(log=tmp_path_factory.mktemp("llama") / "server.log") as base:
        yield base


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
    assert not any(r.outcome == "truncated" for r in asked_again)  # each judged on its whole reply
    # how many whole replies name an option is SmolLM2's doing: measured 10 of 20 (AVX-512 kernels) to 11+
    # (AVX2); a quarter shows the re-asked replies are read as answers, not discarded
    assert sum(r.outcome == "valid" for r in asked_again) >= len(asked_again) / 4


def test_a_server_without_logprobs_stops_a_probs_run_at_once_with_one_line(tmp_path, capsys):
    with llama_cpp_server(logits_all=False, log=tmp_path / "server.log") as base:
        code, _, err = cli(capsys, "administer", "--model", MODEL, "--api-base", base, "-i", "mini-ipip",
                           "--mode", "probs", "--out", tmp_path / "run")
    one_line_error(code, err, "gives no log-probabilities", "use --mode text")
    # one probe; no retries, no other request
    assert (tmp_path / "server.log").read_text().count("POST /v1/chat/completions") == 1
    assert not (tmp_path / "run").exists()
