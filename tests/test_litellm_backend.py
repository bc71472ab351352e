"""The litellm backend over real HTTP: the real litellm client against psytest's loopback OpenAI server.

The server answers from a simulated respondent, so every answer that comes back through litellm can be
checked against the respondent asked directly; its fault injection produces the provider failures
(429 with Retry-After, 500, resets, stalls, broken bodies, 401, 404, no log-probabilities) that the
backend must sort into retryable and final errors without ever showing a key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import math
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("litellm")

from psychometrics.design.plan import Design  # noqa: E402
from psychometrics.errors import ModelSpecError  # noqa: E402
from psychometrics.inventories.library import resolve_inventory  # noqa: E402
from psychometrics.models.base import InvalidReplyError, ModelRequest, TransientModelError  # noqa: E402
from psychometrics.models.litellm_backend import (  # noqa: E402
    LiteLLMBackend,
    ModelCallError,
    map_top_logprobs,
    parse_retry_after,
)
from psychometrics.models.simulated import REFUSAL_TEXT, SimulatedRespondent  # noqa: E402
from psychometrics.engine.parse import parse_reply  # noqa: E402
from psychometrics.design.prompts import TEMPLATES, render_item  # noqa: E402
from psychometrics.run.directory import administer
from psychometrics.run.manifest import read_manifest  # noqa: E402
from psychometrics.run.store import RunStore  # noqa: E402
from psychometrics.testing.waiting import HANG_GUARD_S  # noqa: E402
from psychometrics.testing.openai_server import infer_choices, start_server  # noqa: E402

PLANTED = "sk-psytest-PLANTED-4f9c2a7e1b"
SIM = "sim/e=1,a=-0.5,acquiescence=0.3,noise=0.5,refusal=0.1,seed=1"
MODEL = "openai/psytest-sim"
REVERSED = (5, 4, 3, 2, 1)


@pytest.fixture(autouse=True)
def planted_key(monkeypatch):
    """A dummy key litellm sends; it must never show up in params or error messages."""
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)


@pytest.fixture(scope="module")
def server():
    with start_server(SimulatedRespondent(SIM)) as running:
        yield running


@pytest.fixture(scope="module")
def direct():
    """The same respondent, asked without HTTP: the ground truth for what comes back through litellm."""
    return SimulatedRespondent(SIM)


def backend_for(server, timeout_s: float = 10.0, **kwargs) -> LiteLLMBackend:
    return LiteLLMBackend(MODEL, api_base=server.base_url, timeout_s=timeout_s, **kwargs)


def ask(backend, request: ModelRequest):
    """One request in its own event loop, closing litellm's clients for that loop as a run does."""

    async def once():
        try:
            return await backend.complete(request)
        finally:
            await backend.aclose()

    return asyncio.run(once())


def item_prompt(template: str = "numbered", order=None, index: int = 0):
    inventory = resolve_inventory("mini-ipip")
    item = inventory.items[index]
    prompt = render_item(inventory, item, template=TEMPLATES[template], option_order=order)
    options = tuple(inventory.response_scale.labels[v] for v in prompt.position_values)
    return prompt, options


def failure(mode: str = "text", timeout_s: float = 120.0, **server_options) -> Exception:
    """The exception the backend raises against a server set up with ``server_options``."""
    prompt, _ = item_prompt()
    with start_server(SimulatedRespondent(SIM), **server_options) as faulty:
        with pytest.raises(Exception) as caught:
            ask(backend_for(faulty, timeout_s=timeout_s), ModelRequest(prompt.messages, prompt.choices, mode=mode))
    error = caught.value
    assert PLANTED not in str(error) and "\n" not in str(error)
    return error


# -- answers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["numbered", "lettered", "worded"])
def test_text_replies_parse_and_match_the_respondent(server, direct, template):
    backend = backend_for(server)
    for index, order in ((0, None), (5, REVERSED), (11, None)):
        prompt, options = item_prompt(template, order, index)
        request = ModelRequest(prompt.messages, prompt.choices, temperature=0.7, seed=index, max_tokens=16)
        reply = ask(backend, request)
        expected = ask(direct, request)
        assert reply.text == expected.text
        if reply.text != REFUSAL_TEXT:
            assert parse_reply(reply.text, prompt.choices, options).outcome == "valid"
        assert reply.input_tokens > 0 and reply.output_tokens > 0


@pytest.mark.parametrize("template", ["numbered", "lettered", "worded"])
def test_probs_match_the_respondents_own_distribution(server, direct, template):
    backend = backend_for(server)
    for index, order in ((0, None), (3, REVERSED), (17, REVERSED)):
        prompt, _ = item_prompt(template, order, index)
        request = ModelRequest(prompt.messages, prompt.choices, mode="probs", seed=index)
        reply = ask(backend, request)
        expected = ask(direct, request).choice_logprobs
        assert list(reply.choice_logprobs) == list(prompt.choices)
        for label in prompt.choices:
            assert reply.choice_logprobs[label] == pytest.approx(expected[label], abs=1e-9)
        mass = sum(math.exp(v) for v in reply.choice_logprobs.values())
        assert mass == pytest.approx(0.9, abs=1e-6)  # refusal=0.1 is probability off the options
        top = reply.extra["top_logprobs"]
        assert all(isinstance(t, str) and type(lp) is float for t, lp in top)
        assert "As" in {t for t, _ in top}


def test_token_mapping_rules():
    numbers = ("1", "2", "3", "4", "5")
    merged = map_top_logprobs([("4", math.log(0.3)), (" 4", math.log(0.1)), ("\n2", -2.0), ("x", -2.5)], numbers)
    assert merged == {"2": -2.0, "4": pytest.approx(math.log(0.4))}  # absent labels are left out
    letters = ("A", "B", "C")
    assert map_top_logprobs([("a", -1.5), ("B", -1.0), ("Ab", -2.0)], letters) == {"B": -1.0}
    words = ("Very inaccurate", "Moderately inaccurate", "Neither accurate nor inaccurate",
             "Moderately accurate", "Very accurate")
    mapped = map_top_logprobs([("Very", -1.2), (" neither", -1.0), ("Moder", -1.5), ("Very accurate", -3.0)], words)
    assert mapped == {"Neither accurate nor inaccurate": -1.0, "Very accurate": -3.0}
    two = ("Disagree", "Agree")
    assert map_top_logprobs([(" Dis", -0.7), ("A", -1.0), ("gone", float("-inf"))], two) == {"Disagree": -0.7}
    with pytest.raises(InvalidReplyError, match="not a number"):  # a NaN is a broken reply, not a skipped token
        map_top_logprobs([(" Dis", -0.7), ("nan", float("nan"))], two)


def test_retry_after_header_forms():
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=42), usegmt=True)
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": later}, now=now) == 42.0
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


# -- keys -------------------------------------------------------------------------------------------


def test_params_never_hold_a_key():
    backend = LiteLLMBackend(
        MODEL,
        api_base=f"https://bob:{PLANTED}@llm.example.org:8443/v1?api-version=2024-06-01&api-key={PLANTED}",
        extra_params={
            "top_p": 0.9,
            "max_completion_tokens": 5,
            "aws_secret_access_key": PLANTED,
            "access_token": PLANTED,
            "extra_headers": {"Authorization": f"Bearer {PLANTED}", "X-Trace": "on"},
        },
    )
    params = backend.params
    text = json.dumps(params)
    assert PLANTED not in text and "bob" not in text
    assert "api_base" not in params  # where, not what: the URL is the recorded endpoint, not part of request ids
    assert backend.endpoint == "https://llm.example.org:8443/v1?api-version=2024-06-01" and PLANTED not in backend.endpoint
    assert params["extra_params"] == {"top_p": 0.9, "max_completion_tokens": 5, "extra_headers": {"X-Trace": "on"}}
    with pytest.raises(ModelSpecError) as caught:
        LiteLLMBackend(MODEL, extra_params={"api_key": PLANTED})
    assert PLANTED not in str(caught.value) and "environment" in str(caught.value)


def test_rejected_key_is_a_final_one_line_error_without_the_key():
    error = failure(api_key="the-right-key")  # this server echoes the key it was given in its 401 message
    assert isinstance(error, ModelCallError) and not isinstance(error, TransientModelError)
    assert "authentication failed" in str(error) and "OPENAI_API_KEY" in str(error)


def test_missing_key_says_which_variable_to_set(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    error = failure()
    assert isinstance(error, ModelCallError) and "set OPENAI_API_KEY" in str(error)


def test_unknown_model_is_a_final_one_line_error():
    error = failure(models=["some-other-model"])
    assert isinstance(error, ModelCallError)
    assert "model not found" in str(error) and "psytest-sim" in str(error)


# -- transient failures -----------------------------------------------------------------------------


def test_rate_limit_carries_retry_after_seconds():
    error = failure(faults=["rate_limit"], fault_rate=1.0, retry_after="7")
    assert isinstance(error, TransientModelError) and error.retry_after == 7.0 and "429" in str(error)


def test_rate_limit_carries_retry_after_http_date():
    sent = dt.datetime.now(dt.timezone.utc)
    when = sent + dt.timedelta(seconds=30)
    error = failure(faults=["rate_limit"], fault_rate=1.0, retry_after=email.utils.format_datetime(when, usegmt=True))
    waited = (dt.datetime.now(dt.timezone.utc) - sent).total_seconds()  # however long the call took
    # the date has whole seconds: up to 1 s earlier than ``when``
    assert isinstance(error, TransientModelError) and 30.0 - waited - 1.0 <= error.retry_after <= 30.0


@pytest.mark.parametrize("fault", ["server_error", "reset", "truncated", "malformed", "empty_choices"])
def test_server_faults_are_transient(fault):
    error = failure(faults=[fault], fault_rate=1.0)
    assert isinstance(error, TransientModelError) and error.retry_after is None


def test_stall_past_the_timeout_is_transient():
    # the server stalls until it stops (or the hang guard): only the client's timeout can end the call
    error = failure(timeout_s=0.5, faults=["stall"], fault_rate=1.0, stall_s=HANG_GUARD_S)
    assert isinstance(error, TransientModelError) and "timed out" in str(error)


def test_connection_refused_is_transient():
    with start_server() as gone:
        base_url = gone.base_url
    prompt, _ = item_prompt()
    with pytest.raises(TransientModelError) as caught:
        ask(LiteLLMBackend(MODEL, api_base=base_url, timeout_s=120), ModelRequest(prompt.messages, prompt.choices))
    assert caught.value.unreachable  # counted towards stopping the run (the breaker)


def test_an_oversized_response_is_a_failure_not_a_crash(monkeypatch):
    from psychometrics import limits

    monkeypatch.setattr(limits, "SERVER_BODY_BYTES", 100)  # a normal answer is a few hundred bytes
    error = failure()
    assert isinstance(error, ModelCallError) and "larger than 100 bytes" in str(error)


def test_provider_without_logprobs_gives_the_clear_error():
    error = failure(mode="probs", logprobs_supported=False)
    assert isinstance(error, ModelCallError) and not isinstance(error, TransientModelError)
    assert "no log-probabilities" in str(error) and "text mode" in str(error)


# -- the server itself ------------------------------------------------------------------------------


def test_server_faults_are_seeded_and_latency_is_added(direct):
    prompt, _ = item_prompt()
    request = ModelRequest(prompt.messages, prompt.choices)

    def outcomes(seed: int) -> list[str]:
        with start_server(direct, faults=["server_error", "rate_limit"], fault_rate=0.5, seed=seed) as faulty:
            backend = backend_for(faulty)
            results = []
            for _ in range(12):
                try:
                    ask(backend, request)
                    results.append("ok")
                except TransientModelError as exc:
                    results.append("429" if exc.retry_after is not None else "500")
            assert faulty.requests_served == 12 and sum(faulty.faults_injected.values()) == 12 - results.count("ok")
            return results

    first = outcomes(seed=3)
    assert first == outcomes(seed=3) and {"ok", "429", "500"} <= set(first)
    with start_server(direct, latency_s=0.3) as slow:
        started = time.perf_counter()
        ask(backend_for(slow), request)
        assert time.perf_counter() - started >= 0.3


def test_server_is_loopback_only_and_reads_option_lines():
    with pytest.raises(ValueError, match="loopback"):
        start_server(host="0.0.0.0")
    assert infer_choices("Options:\n1. Very inaccurate\n2. Neither\n\nStatement: x") == ("1", "2")
    assert infer_choices("Choose:\nA. Yes\nB) No\n") == ("A", "B")
    assert infer_choices("Possible answers:\n- Disagree\n- Agree\n\nStatement: x") == ("Disagree", "Agree")


def test_server_runs_in_the_foreground_from_the_command_line():
    process = subprocess.Popen(
        [sys.executable, "-m", "psychometrics.testing.openai_server", "--model", "sim/e=1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        base_url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(f"{base_url}/models", timeout=120) as response:
            models = json.load(response)
        assert [m["id"] for m in models["data"]] == ["sim/e=1"]
    finally:
        process.terminate()
        process.wait(timeout=HANG_GUARD_S)


# -- end to end -------------------------------------------------------------------------------------


def test_mini_ipip_end_to_end_through_litellm(tmp_path):
    inventory = resolve_inventory("mini-ipip")
    design = Design(option_orders=["original", "reversed"], modes=["text", "probs"])
    with start_server(SimulatedRespondent("sim/e=1,a=-0.5,acquiescence=0.3,seed=1")) as server:
        result = administer(backend_for(server), [inventory], design, tmp_path / "run", concurrency=4)
        assert server.requests_served == 80
    assert result.stats.sent == 20 * 2 * 2 and result.stats.failed == 0
    with RunStore(tmp_path / "run" / "responses.sqlite") as store:
        rows = list(store.rows())
    assert len(rows) == 80
    for row in rows:
        assert row.outcome == "valid", (row.mode, row.raw_reply, row.error)
        assert row.value is not None and 1.0 <= row.value <= 5.0
        if row.mode == "probs":
            assert set(row.choice_logprobs) == set(row.choices) and row.option_mass == pytest.approx(1.0)
    manifest = read_manifest(tmp_path / "run")
    assert manifest.backend_params == {"backend": "litellm"}
    assert [(e.url, e.source) for e in manifest.endpoints] == [(server.base_url, "--api-base")]
    assert PLANTED not in (tmp_path / "run" / "manifest.json").read_text()
