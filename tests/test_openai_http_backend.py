"""The direct OpenAI-compatible backend (``openai/NAME --api-base URL``) over real HTTP, and the asyncio
loopback server it is tested against.

As in test_litellm_backend.py, the server answers from a simulated respondent, so what comes back over
HTTP is checked against the respondent asked directly; injected faults (429 with Retry-After in both
forms, 500, resets, stalls, cut-short and broken bodies, 401, 404, no log-probabilities) must come out
as retryable or final one-line errors that never show a key. The server's own HTTP layer is checked
with raw sockets: keep-alive, malformed and oversized requests, connection and in-flight limits, and
latency that delays each request without holding up the others.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import math
import socket
import threading
import time

import pytest

pytest.importorskip("aiohttp")

from psychometrics.engine.pool import RetryPolicy  # noqa: E402
from psychometrics.design.plan import Design  # noqa: E402
from psychometrics.errors import ModelSpecError  # noqa: E402
from psychometrics.inventories.library import resolve_inventory  # noqa: E402
from psychometrics.models import resolve_model  # noqa: E402
from psychometrics.models.base import Message, ModelRequest, TransientModelError  # noqa: E402
from psychometrics.models.litellm_backend import ModelCallError  # noqa: E402
from psychometrics.models.openai_http import OpenAIHTTPBackend, top_logprobs  # noqa: E402
from psychometrics.models.simulated import REFUSAL_TEXT, SimulatedRespondent  # noqa: E402
from psychometrics.engine.parse import parse_reply  # noqa: E402
from psychometrics.design.prompts import TEMPLATES, render_item  # noqa: E402
from psychometrics.run.directory import administer
from psychometrics.run.manifest import read_manifest  # noqa: E402
from psychometrics.run.store import RunStore  # noqa: E402
from psychometrics.testing.waiting import HANG_GUARD_S, wait_for  # noqa: E402
from psychometrics.testing.openai_server import start_server  # noqa: E402

PLANTED = "sk-psytest-PLANTED-9d3e71c0aa"
SIM = "sim/e=1,a=-0.5,acquiescence=0.3,noise=0.5,refusal=0.1,seed=1"
MODEL = "openai/psytest-sim"
REVERSED = (5, 4, 3, 2, 1)


@pytest.fixture(autouse=True)
def planted_key(monkeypatch):
    """A dummy key the backend sends; it must never show up in params or error messages."""
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)


@pytest.fixture(scope="module")
def server():
    with start_server(SimulatedRespondent(SIM)) as running:
        yield running


@pytest.fixture(scope="module")
def direct():
    return SimulatedRespondent(SIM)


def backend_for(server, timeout_s: float = 10.0) -> OpenAIHTTPBackend:
    backend = resolve_model(MODEL, api_base=server.base_url, timeout_s=timeout_s)
    assert isinstance(backend, OpenAIHTTPBackend)  # openai/NAME with --api-base: no litellm
    return backend


def ask(backend, request: ModelRequest):
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
    prompt, _ = item_prompt()
    with start_server(SimulatedRespondent(SIM), **server_options) as faulty:
        with pytest.raises(Exception) as caught:
            ask(backend_for(faulty, timeout_s=timeout_s), ModelRequest(prompt.messages, prompt.choices, mode=mode))
    error = caught.value
    assert PLANTED not in str(error) and "\n" not in str(error)
    return error


# -- answers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["numbered", "lettered", "worded"])
def test_text_replies_match_the_respondent(server, direct, template):
    backend = backend_for(server)
    for index, order in ((0, None), (5, REVERSED), (11, None)):
        prompt, options = item_prompt(template, order, index)
        request = ModelRequest(prompt.messages, prompt.choices, temperature=0.7, seed=index, max_tokens=16)
        reply = ask(backend, request)
        expected = ask(direct, request)
        assert reply.text == expected.text
        if reply.text != REFUSAL_TEXT:
            assert parse_reply(reply.text, prompt.choices, options).outcome == "valid"
        assert reply.input_tokens > 0 and reply.output_tokens > 0 and reply.finish_reason == "stop"


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
        assert sum(math.exp(v) for v in reply.choice_logprobs.values()) == pytest.approx(0.9, abs=1e-6)
        assert "As" in {token for token, _ in reply.extra["top_logprobs"]}


def test_request_body_is_what_litellm_would_send(server):
    backend = backend_for(server)
    prompt, _ = item_prompt()
    probs = backend.request_body(ModelRequest(prompt.messages, prompt.choices, mode="probs", seed=4))
    assert probs["model"] == "psytest-sim" and probs["seed"] == 4
    assert (probs["temperature"], probs["max_tokens"], probs["logprobs"], probs["top_logprobs"]) == (0.0, 1, True, 20)
    text = backend.request_body(ModelRequest(prompt.messages, prompt.choices, temperature=0.7, max_tokens=9))
    assert (text["temperature"], text["max_tokens"]) == (0.7, 9) and "logprobs" not in text and "seed" not in text
    assert text["messages"][-1] == {"role": "user", "content": prompt.messages[-1].content}


@pytest.mark.parametrize("extra", [{}, {"top_p": 0.5, "stop": ["\u00e9", "\n"]}, {"temperature": 0.3, "seed": 1}])
def test_request_bytes_are_the_request_body_whatever_the_settings(extra):
    """The body built from parts made once per run is the body's JSON, for every mode, setting, seed and
    message text (a prompt seen before, a new tuple with other text, non-ASCII, quotes, a lone surrogate
    refused as before); extra parameters a request sets itself take the general path."""
    backend = OpenAIHTTPBackend(MODEL, api_base="http://127.0.0.1:9/v1", extra_params=dict(extra))
    prompt, _ = item_prompt()
    other = (Message("system", 'Say "yes" \u00fcber alles\n\t\\'), Message("user", "\u4f60\u597d \U0001f600"))
    requests = [ModelRequest(messages, prompt.choices, mode=mode, temperature=temperature, max_tokens=tokens, seed=seed)
                for messages in (prompt.messages, other, tuple(prompt.messages))
                for mode in ("text", "probs") for temperature in (0.0, 0.7, 1)
                for tokens in (5, 2048) for seed in (None, 0, 2**31 - 1)]
    for request in requests + requests:  # the second time from the parts already made
        assert json.loads(backend.request_bytes(request)) == backend.request_body(request)
    with pytest.raises(UnicodeEncodeError):
        backend.request_bytes(ModelRequest((Message("user", "half \ud83d"),), ("1",)))


def test_malformed_logprobs_are_ignored_not_fatal():
    choice = {"logprobs": {"content": [{"top_logprobs": [
        {"token": "1", "logprob": -0.1}, {"token": "2", "logprob": "x"}, {"token": "3", "logprob": True}, "junk",
    ]}]}}
    assert top_logprobs(choice) == [("1", -0.1)]
    assert top_logprobs({"logprobs": None}) == [] and top_logprobs({"logprobs": {"content": "x"}}) == []


# -- settings and keys ------------------------------------------------------------------------------


def test_params_never_hold_a_key_and_bad_settings_are_one_line_errors():
    backend = OpenAIHTTPBackend(MODEL, api_base="http://user:hunter22@127.0.0.1:9/v1?api_key=abc&x=1",
                                extra_params={"extra_headers": {"X-Api-Key": "abcdef"}, "top_p": 0.5})
    params = json.dumps(backend.params)
    assert backend.params["backend"] == "openai-http"
    for secret in ("hunter22", "user", "abc", "abcdef", PLANTED):
        assert secret not in params
    assert backend.params["extra_params"] == {"top_p": 0.5, "extra_headers": {}}
    with pytest.raises(ModelSpecError, match="environment"):
        OpenAIHTTPBackend(MODEL, api_base="http://127.0.0.1:9/v1", extra_params={"api_key": "x"})
    for bad in ("127.0.0.1:8000/v1", "ftp://host/v1", "http://host:port/v1"):
        with pytest.raises(ModelSpecError, match="--api-base"):
            OpenAIHTTPBackend(MODEL, api_base=bad)
    with pytest.raises(ModelSpecError, match="timeout"):
        OpenAIHTTPBackend(MODEL, api_base="http://127.0.0.1:9/v1", timeout_s=0)


def test_other_providers_still_go_through_litellm():
    from psychometrics.models.litellm_backend import LiteLLMBackend

    assert isinstance(resolve_model("openai/gpt-4o-mini"), LiteLLMBackend)  # no --api-base: OpenAI itself
    assert isinstance(resolve_model("ollama/llama3", api_base="http://127.0.0.1:11434"), LiteLLMBackend)


def test_the_key_is_sent_as_a_bearer_token_only_from_the_environment(monkeypatch):
    prompt, _ = item_prompt()
    request = ModelRequest(prompt.messages, prompt.choices)
    with start_server(SimulatedRespondent(SIM), api_key=PLANTED) as guarded:
        assert ask(backend_for(guarded), request).text  # accepted with the planted key
        monkeypatch.delenv("OPENAI_API_KEY")
        with pytest.raises(ModelCallError) as missing:
            ask(backend_for(guarded), request)
    assert "authentication failed" in str(missing.value) and "set OPENAI_API_KEY" in str(missing.value)


def test_credentials_in_the_url_become_basic_auth_and_stay_hidden():
    prompt, _ = item_prompt()
    with start_server(SimulatedRespondent(SIM), api_key="never-matches") as guarded:
        base = guarded.base_url.replace("http://", "http://alice:s3cret-pass@")
        with pytest.raises(ModelCallError) as caught:
            ask(OpenAIHTTPBackend(MODEL, api_base=base), ModelRequest(prompt.messages, prompt.choices))
    message = str(caught.value)
    assert "authentication failed" in message and "s3cret-pass" not in message and "YWxpY2" not in message


def test_rejected_key_is_a_final_one_line_error_without_the_key():
    error = failure(api_key="the-right-key-123")
    assert isinstance(error, ModelCallError) and not isinstance(error, TransientModelError)
    assert "authentication failed" in str(error) and "check the key in OPENAI_API_KEY" in str(error)


def test_unknown_model_is_a_final_one_line_error():
    error = failure(models=["another-model"])
    assert isinstance(error, ModelCallError) and "model not found" in str(error) and "--api-base" in str(error)


def test_provider_without_logprobs_gives_the_clear_error():
    error = failure(mode="probs", logprobs_supported=False)
    assert isinstance(error, ModelCallError) and "no log-probabilities" in str(error) and "text mode" in str(error)


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


@pytest.mark.parametrize("fault, words", [
    ("server_error", "HTTP 500"), ("reset", "connection reset"), ("truncated", "truncated response"),
    ("malformed", "malformed response"), ("empty_choices", "without choices"),
])
def test_server_faults_are_transient(fault, words):
    error = failure(faults=[fault], fault_rate=1.0)
    assert isinstance(error, TransientModelError) and error.retry_after is None and words in str(error)


def test_stall_past_the_timeout_is_transient():
    # the server stalls until it stops (or the hang guard): only the client's timeout can end the call
    error = failure(timeout_s=0.5, faults=["stall"], fault_rate=1.0, stall_s=HANG_GUARD_S)
    assert isinstance(error, TransientModelError) and "timed out after 0.5 s" in str(error)


def test_connection_refused_is_transient():
    with start_server() as gone:
        base_url = gone.base_url
    prompt, _ = item_prompt()
    with pytest.raises(TransientModelError, match="nothing answers") as caught:
        ask(OpenAIHTTPBackend(MODEL, api_base=base_url, timeout_s=120), ModelRequest(prompt.messages, prompt.choices))
    assert caught.value.unreachable  # counted towards stopping the run (the breaker), unlike a reset


def test_an_oversized_response_is_a_failure_not_a_crash(monkeypatch):
    import psychometrics.models.openai_http as openai_http

    monkeypatch.setattr(openai_http, "MAX_RESPONSE_BYTES", 100)
    error = failure()
    assert isinstance(error, ModelCallError) and "larger than 100 bytes" in str(error)


# -- through administer: retries honour Retry-After, answers committed --------------------------------


def test_administer_retries_no_sooner_than_retry_after(tmp_path):
    inventory = resolve_inventory("mini-ipip")
    with start_server(SimulatedRespondent(SIM), faults=["rate_limit"], fault_rate=1.0, retry_after="0.3") as server:
        started = time.perf_counter()
        result = administer(backend_for(server), [inventory], Design(), tmp_path / "run", concurrency=20,
                            retry=RetryPolicy(max_retries=2, base_s=0.001))
        elapsed = time.perf_counter() - started
        assert server.requests_served == 20 * 3
    assert result.stats.retries == 20 * 2 and result.stats.failed == 20
    assert elapsed >= 2 * 0.3  # two waits of at least Retry-After, not the 1 ms backoff
    with RunStore(tmp_path / "run" / "responses.sqlite") as store:
        rows = list(store.rows())
    assert len(rows) == 20 and all(r.outcome == "error" and "retry after 0.3 s" in r.error for r in rows)
    assert all(PLANTED not in r.error for r in rows)


def test_mini_ipip_end_to_end(tmp_path):
    inventory = resolve_inventory("mini-ipip")
    design = Design(option_orders=["original", "reversed"], modes=["text", "probs"])
    with start_server(SimulatedRespondent("sim/e=1,a=-0.5,acquiescence=0.3,seed=1"), faults=["server_error", "reset"],
                      fault_rate=0.2, seed=5) as server:
        result = administer(backend_for(server), [inventory], design, tmp_path / "run", concurrency=8,
                            retry=RetryPolicy(max_retries=8, base_s=0.001))
        assert server.requests_served == 80 + result.stats.retries and result.stats.retries > 0
    assert result.stats.sent == 80 and result.stats.failed == 0
    with RunStore(tmp_path / "run" / "responses.sqlite") as store:
        rows = list(store.rows())
    assert len(rows) == 80
    for row in rows:
        assert row.outcome == "valid", (row.mode, row.raw_reply, row.error)
        if row.mode == "probs":
            assert set(row.choice_logprobs) == set(row.choices) and row.option_mass == pytest.approx(1.0)
    manifest = read_manifest(tmp_path / "run")
    assert manifest.backend_params == {"backend": "openai-http"}
    assert [(e.url, e.source) for e in manifest.endpoints] == [(server.base_url, "--api-base")]
    assert PLANTED not in (tmp_path / "run" / "manifest.json").read_text()


# -- the server's HTTP layer ------------------------------------------------------------------------


def raw_exchange(server, data: bytes, read_until_close: bool = True) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=120) as conn:
        conn.sendall(data)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)


def post(body: bytes, extra: str = "", close: bool = True) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{connection}{extra}\r\n"
            .encode() + body)


def test_keep_alive_serves_several_requests_on_one_connection(server):
    prompt, _ = item_prompt()
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt.messages[-1].content}]}).encode()
    data = post(body, close=False) + b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n" + post(body, close=True)
    reply = raw_exchange(server, data)
    assert reply.count(b"HTTP/1.1 200 OK") == 3 and reply.count(b"chat.completion\"") == 2


@pytest.mark.parametrize("data, status", [
    (b"NONSENSE\r\n\r\n", b"400"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n", b"411"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", b"411"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", b"413"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -3\r\n\r\n", b"400"),
    (b"GET /v1/x HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
    (post(b"{not json"), b"400"),
    (post(b"[1, 2]"), b"400"),
    (post(b'{"messages": "nope"}'), b"400"),
    (b"DELETE /v1/chat/completions HTTP/1.1\r\nConnection: close\r\n\r\n", b"405"),
    (b"GET /v1/elsewhere HTTP/1.1\r\nConnection: close\r\n\r\n", b"404"),
])
def test_malformed_and_oversized_requests_get_an_error_status(server, data, status):
    reply = raw_exchange(server, data)
    assert reply.startswith(b"HTTP/1.1 " + status)
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["message"]


def test_latency_delays_each_request_without_holding_up_the_others(direct):
    prompt, _ = item_prompt()
    request = ModelRequest(prompt.messages, prompt.choices)
    with start_server(direct, latency_s=0.4) as slow:
        backend = backend_for(slow)

        async def many():
            try:
                started = time.perf_counter()
                replies = await asyncio.gather(*(backend.complete(request) for _ in range(20)))
                return time.perf_counter() - started, replies
            finally:
                await backend.aclose()

        elapsed, replies = asyncio.run(many())
    assert all(r.text for r in replies) and slow.requests_served == 20
    assert elapsed >= 0.4  # each waited
    # not one after the other: requests were answered while others waited out their latency (a server
    # that held up the others would never have two in flight, however fast the machine)
    assert slow.peak_in_flight >= 2


def test_connection_and_in_flight_limits(direct):
    prompt, _ = item_prompt()
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt.messages[-1].content}]}).encode()
    with start_server(direct, max_in_flight=1, max_connections=2, hold_after=0) as limited:
        answered = []
        first = threading.Thread(target=lambda: answered.append(raw_exchange(limited, post(body))))
        first.start()
        wait_for(lambda: limited.held == 1, "the first request held")  # being answered until released
        busy = raw_exchange(limited, post(body))
        assert busy.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in busy
        # the first request's connection and one more are open: the limit; the server accepts in order
        with socket.create_connection((limited.host, limited.port)), socket.create_connection((limited.host, limited.port)):
            try:
                refused = raw_exchange(limited, post(body))
            except ConnectionResetError:
                refused = b""
            assert refused == b""  # a third connection is closed at once, unanswered
        limited.release()
        first.join()
    assert answered[0].startswith(b"HTTP/1.1 200") and limited.requests_served == 1


def test_stop_closes_idle_keep_alive_connections(direct):
    with start_server(direct) as server:
        conn = socket.create_connection((server.host, server.port), timeout=120)
        conn.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
    conn.settimeout(120)
    try:
        assert conn.recv(65536) == b""  # closed by stop(), not left hanging
    except ConnectionResetError:
        pass
    finally:
        conn.close()
