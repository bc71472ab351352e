"""Replies cut off at max_tokens (outcome truncated, re-asked with more tokens, a warning and exit 3) and the
log-probability probe before a probs run, over real HTTP against the loopback server."""

from __future__ import annotations

import json

import pytest

from psychometrics.design.plan import Design, design_from_mapping, plan_requests
from psychometrics.engine.parse import ParsedReply
from psychometrics.engine.send import answer_rows, cut_off_outcomes, is_cut_off
from psychometrics.errors import PsytestError
from psychometrics.inventories.library import resolve_inventory
from psychometrics.models.base import ModelReply
from psychometrics.models.simulated import SimulatedRespondent
from psychometrics.run.store import RunStore
from psychometrics.testing.cli import cli, one_line_error
from psychometrics.testing.openai_server import start_server

#: Words a chatty model writes before its answer: ten of them, so a small max_tokens cuts the answer off
PREAMBLE = "Let me think about this statement carefully before I answer."
MODEL = "openai/psytest-sim"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-checked")


def _respondent() -> SimulatedRespondent:
    return SimulatedRespondent("sim/e=1,seed=1")


def _rows(run) -> list:
    with RunStore(run / "responses.sqlite") as store:
        return list(store.rows())


# -- classification ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason, cut", [("length", True), ("LENGTH", True), ("max_tokens", True),
                                         ("MAX_TOKENS", True), ("stop", False), ("end_turn", False),
                                         ("content_filter", False), (None, False), ("", False)])
def test_finish_reasons_that_mean_cut_off(reason, cut):
    assert is_cut_off(ModelReply(text="x", finish_reason=reason)) is cut


def test_a_cut_reply_keeps_only_what_was_complete_before_the_cut():
    parsed = [ParsedReply("valid", 3, "strict"), ParsedReply("valid", 1, "lenient"), ParsedReply("refusal"),
              ParsedReply("unparseable"), ParsedReply("multiple"), ParsedReply("out_of_range")]
    assert [p.outcome for p in cut_off_outcomes(parsed)] == [
        "valid", "truncated", "refusal", "truncated", "truncated", "truncated"]


def _planned(**design):
    inventory = resolve_inventory("mini-ipip")
    return plan_requests([inventory], Design(**design), "sim", {}, None)


def test_a_cut_single_item_reply_is_truncated_and_a_complete_label_stands():
    planned = _planned()[0]
    words = answer_rows(planned, ModelReply(text="Moderately", finish_reason="length"), 0.1, 1)
    label = answer_rows(planned, ModelReply(text="4", finish_reason="length"), 0.1, 1)
    same_uncut = answer_rows(planned, ModelReply(text="Moderately", finish_reason="stop"), 0.1, 1)
    assert [r.outcome for r in words] == ["truncated"] and words[0].finish_reason == "length"
    assert [r.outcome for r in label] == ["valid"] and label[0].value is not None
    assert [r.outcome for r in same_uncut] == ["unparseable"]  # not cut: an unreadable answer, as before


def test_a_multi_item_reply_cut_midway_keeps_the_lines_it_finished():
    planned = _planned(items_per_request=4)[0]
    text = "S1: 4\nS2: 2\nS3: I would say that"
    rows = answer_rows(planned, ModelReply(text=text, finish_reason="length"), 0.1, 1)
    assert [r.outcome for r in rows] == ["valid", "valid", "truncated", "truncated"]


def test_on_truncated_is_checked_with_a_line_naming_the_field():
    with pytest.raises(PsytestError, match=r"^d\.yaml: on_truncated: must be missing or reask:N"):
        design_from_mapping({"on_truncated": "reask:0"}, "d.yaml")
    assert design_from_mapping({"on_truncated": "reask:3"}, "d.yaml").longer_reasks == 3
    assert Design().longer_reasks == 0


# -- administer over HTTP ------------------------------------------------------------------------------


def test_cut_replies_are_classified_truncated_and_the_run_warns_and_exits_3(tmp_path, capsys):
    out = tmp_path / "run"
    with start_server(_respondent(), preamble=PREAMBLE) as server:
        code, stdout, err = cli(capsys, "administer", "--model", MODEL, "--api-base", server.base_url, "-i",
                                "mini-ipip", "--max-tokens", "4", "--out", out, "--json")
        assert server.limits_asked == [4] * 20
    assert code == 3, err
    summary = json.loads(stdout)
    assert summary["outcomes"] == {"truncated": 20} and summary["failed"] == 0 and summary["cut_off"] == 20
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("psytest: warning: 20 of 20 requests answered were cut off at max_tokens")
    assert "--max-tokens" in lines[0] and "--on-truncated reask:N" in lines[0]
    rows = _rows(out)
    assert {(r.outcome, r.finish_reason, r.raw_reply) for r in rows} == {("truncated", "length", "Let me think about")}
    styles = [json.loads(line) for line in [json.dumps(r) for r in summary["scales"]]]
    assert styles  # the headline is still printed
    import pandas as pd

    rates = pd.read_csv(out / "analysis" / "response_styles.csv")
    overall = rates[rates["factor"] == "all"].iloc[0]
    assert overall["truncated_rate"] == 1.0 and overall["unparseable_rate"] == 0.0 and overall["n_valid"] == 0


def test_a_run_whose_replies_fit_exits_0_without_warning(tmp_path, capsys):
    with start_server(_respondent(), preamble=PREAMBLE) as server:
        code, stdout, err = cli(capsys, "administer", "--model", MODEL, "--api-base", server.base_url, "-i",
                                "mini-ipip", "--max-tokens", "16", "--out", tmp_path / "run", "--json")
    assert code == 0 and err == "" and json.loads(stdout)["outcomes"] == {"valid": 20}
    assert {r.finish_reason for r in _rows(tmp_path / "run")} == {"stop"}


def test_cut_replies_are_asked_again_with_more_tokens_and_kept(tmp_path, capsys):
    out = tmp_path / "run"
    with start_server(_respondent(), preamble=PREAMBLE) as server:
        args = ("administer", "--model", MODEL, "--api-base", server.base_url, "-i", "mini-ipip", "--max-tokens", "4",
                "--on-truncated", "reask:3", "--out", out, "--json")
        code, stdout, err = cli(capsys, *args)
        asked = list(server.limits_asked)
        resumed = cli(capsys, *args)  # everything is answered: nothing is sent again
        assert server.requests_served == len(asked)
    assert resumed[0] == 0 and json.loads(resumed[1])["already_answered"] == 20
    assert code == 0 and err == "", err
    assert json.loads(stdout)["outcomes"] == {"valid": 20}
    # each request: 4 words (cut), 8 (cut), 16 (fits: the preamble is 10 words, the answer one); never 32
    assert sorted(asked) == sorted([4, 8, 16] * 20)
    for row in _rows(out):
        assert row.finish_reason == "stop" and row.reasks == 2 and row.raw_reply.startswith(PREAMBLE)
        assert row.reask_replies == ["Let me think about", "Let me think about this statement carefully before"]
        assert row.note == "cut off at max_tokens 4; asked again with up to 16"


def test_re_asks_that_still_do_not_fit_leave_the_reply_truncated(tmp_path, capsys):
    out = tmp_path / "run"
    with start_server(_respondent(), preamble=PREAMBLE) as server:
        code, stdout, err = cli(capsys, "administer", "--model", MODEL, "--api-base", server.base_url, "-i",
                                "mini-ipip", "--max-tokens", "2", "--on-truncated", "reask:1", "--out", out, "--json")
        assert sorted(server.limits_asked) == sorted([2, 4] * 20)
    assert code == 3 and json.loads(stdout)["outcomes"] == {"truncated": 20}
    assert {(r.raw_reply, tuple(r.reask_replies)) for r in _rows(out)} == {("Let me think about", ("Let me",))}


# -- the log-probability probe -------------------------------------------------------------------------


@pytest.mark.parametrize("server_options", [{"logprobs_refused": True}, {"logprobs_supported": False}],
                         ids=["http-500-not-supported", "replies-without-logprobs"])
@pytest.mark.parametrize("mode", ["probs", "both"])
def test_a_server_without_logprobs_stops_a_probs_run_at_once_with_one_line(tmp_path, capsys, server_options, mode):
    out = tmp_path / "run"
    with start_server(_respondent(), **server_options) as server:
        code, _, err = cli(capsys, "administer", "--model", MODEL, "--api-base", server.base_url, "-i", "mini-ipip",
                           "--mode", mode, "--out", out)
        assert server.requests_served == 1  # the probe only: no retries, no other request
    one_line_error(code, err, "--mode", "gives no log-probabilities", "use --mode text")
    assert not out.exists()  # nothing written: the same directory takes the text-mode run
    with start_server(_respondent(), **server_options) as server:
        code, _, err = cli(capsys, "administer", "--model", MODEL, "--api-base", server.base_url, "-i", "mini-ipip",
                           "--mode", "text", "--out", out)
    assert code == 0, err


def test_the_probe_reply_is_used_by_the_run_so_nothing_is_sent_twice(tmp_path, capsys):
    out = tmp_path / "run"
    with start_server(_respondent()) as server:
        code, stdout, err = cli(capsys, "administer", "--model", MODEL, "--api-base", server.base_url, "-i",
                                "mini-ipip", "--mode", "both", "--out", out, "--json")
        keys = [key for _, key, _ in server.request_log]
    assert code == 0, err
    assert len(keys) == 40 and len(set(keys)) == 40  # 20 text + 20 probs requests, each sent once
    assert json.loads(stdout)["outcomes"] == {"valid": 40}


def test_a_probe_that_fails_for_another_reason_leaves_it_to_the_run(tmp_path, capsys):
    """A refused key is not a missing capability: the run stops as for any refused key (exit 2), without the probe's
    line about log-probabilities."""
    out = tmp_path / "run"
    with start_server(_respondent(), api_key="sk-the-right-one") as server:
        code, stdout, err = cli(capsys, "administer", "--model", MODEL, "--api-base", server.base_url, "-i",
                                "mini-ipip", "--mode", "probs", "--max-retries", "0", "--out", out, "--json")
    assert code == 2 and "authentication failed" in err and "log-probabilities" not in err


# -- behaviour conversations ---------------------------------------------------------------------------


def test_behaviour_replies_cut_off_warn_and_exit_3(tmp_path, capsys):
    out = tmp_path / "behave"
    with start_server(_respondent(), preamble=PREAMBLE) as server:
        code, stdout, err = cli(capsys, "behave", "--model", MODEL, "--api-base", server.base_url, "--tasks",
                                "dictator-game", "--variants", "2", "--max-tokens", "3", "--out", out, "--json")
        assert set(server.limits_asked) == {3}
    assert code == 3, err
    assert "conversations answered were cut off at max_tokens" in err and "--max-tokens" in err
    assert "--on-truncated" not in err  # behave has no re-ask policy
    assert json.loads(stdout)["sent"] == 2 and json.loads(stdout)["cut_off"] == 2


def test_behave_max_tokens_is_part_of_the_run(tmp_path, capsys):
    """Another reply limit is another question: a run made with one is not resumed with another."""
    out = tmp_path / "behave"
    with start_server(_respondent()) as server:
        args = ("behave", "--model", MODEL, "--api-base", server.base_url, "--tasks", "dictator-game",
                "--variants", "1", "--out", out)
        code, _, err = cli(capsys, *args, "--max-tokens", "64")
        assert code == 0, err
        code, _, err = cli(capsys, *args, "--max-tokens", "128")
    one_line_error(code, err, str(out))


def test_behave_probs_without_logprobs_stops_at_once(tmp_path, capsys):
    out = tmp_path / "behave"
    with start_server(_respondent(), logprobs_refused=True) as server:
        code, _, err = cli(capsys, "behave", "--model", MODEL, "--api-base", server.base_url, "--tasks",
                           "social-choice", "--variants", "1", "--mode", "probs", "--out", out)
        assert server.requests_served == 1
    one_line_error(code, err, "gives no log-probabilities", "use --mode text")
    assert not out.exists()


@pytest.mark.parametrize("message, missing", [
    ("logprobs is not supported for models created with logits_all=False", True),  # llama.cpp, HTTP 500
    ("Unsupported parameter: 'logprobs' is not supported with this model.", True),
    ("anthropic does not support parameters: ['logprobs', 'top_logprobs']", True),
    ("This model doesn't support logprobs", True),
    ("top_logprobs is not enabled for this deployment", True),
    ("the provider gives no log-probabilities, so probs mode cannot score the options", True),
    ("the server's log-probability of token '3' is 800, above 0 (a probability above 1)", False),  # a bad value
    ("logprobs must be between 0 and 20", False),
    ("The server had an error while processing your request.", False),
    ("model is not supported", False),
])
def test_which_errors_say_log_probabilities_are_missing(message, missing):
    from psychometrics.engine.probe import names_missing_logprobs

    assert names_missing_logprobs(message) is missing


def test_the_local_backend_says_how_a_reply_ended():
    """llama.cpp in-process: finish reason length when cut at max_tokens, stop otherwise; the GGUF file answers."""
    pytest.importorskip("llama_cpp")
    import asyncio

    from psychometrics.models.base import ModelRequest
    from psychometrics.models.local import LocalModel

    model = LocalModel("local/smollm2-135m", threads=1, threads_batch=1)
    request = _planned(templates=["worded"])[0].request

    async def ask(limit: int):
        try:
            return await model.complete(ModelRequest(request.messages, request.choices, "text", 0.0, 0, limit))
        finally:
            await model.aclose()

    cut, whole = asyncio.run(ask(1)), asyncio.run(ask(200))
    assert cut.finish_reason == "length" and cut.output_tokens == 1
    assert whole.finish_reason == "stop" and whole.output_tokens < 200
    assert cut.served_model == whole.served_model == model.path.name
