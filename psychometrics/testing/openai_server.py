"""A small OpenAI-compatible chat-completions server on loopback, answering from any psytest backend.

Why: clients that speak the OpenAI API (the litellm backend, vLLM / llama.cpp style setups) can be
tested over real HTTP against answers whose ground truth is known (a simulated respondent), with
injected faults, and without network access or real API keys.

Routes: ``POST /v1/chat/completions`` and ``GET /v1/models`` (also without the ``/v1`` prefix).

* A text request is answered with the backend's reply text.
* A request with ``logprobs: true`` is answered in probability mode: the answer labels are read from
  the option lines of the last user message (``1. Very inaccurate``, ``A. ...``, ``- Very accurate``),
  the backend scores them, and the labels come back as the first token's ``top_logprobs`` (sorted,
  at most ``top_logprobs`` of them), with the most probable label as the content. Each label is one
  "token" (a whole-option tokenizer); probability the backend puts off the options is reported as the
  token ``As``. With ``logprobs_supported=False`` the server ignores the flag, like providers that give
  no log-probabilities; with ``logprobs_refused=True`` it answers such a request HTTP 500 "logprobs is not
  supported ...", as llama.cpp's server does when started without ``logits_all``.
* Replies are limited to the request's ``max_tokens``, one word being one token: a longer reply is cut
  there with ``finish_reason: length`` (else ``stop``). ``preamble`` (words put before every text reply,
  as a chatty or reasoning model writes before its answer) makes replies long enough to be cut.

Faults (``faults``, each request independently with probability ``fault_rate``; the draw for the
n-th request depends only on ``seed`` and n, so a test sees the same faults every time):

``rate_limit``     HTTP 429 with a ``Retry-After`` header (``retry_after``, seconds or an HTTP date)
``server_error``   HTTP 500
``stall``          wait ``stall_s`` before answering (past the client's timeout)
``reset``          drop the connection with a TCP reset, no response
``truncated``      a 200 whose body stops half-way (Content-Length promises more)
``malformed``      a 200 whose body is not JSON
``empty_choices``  a 200 with ``"choices": []``

``rewrite`` (a function of the response body) changes every successful answer, to serve the shapes
careless or hostile servers send: content as a list of parts or a number, positive log-probabilities.
Holding (``hold_after=N``): the first N chat requests are answered, every later one is received (and
counted and logged) but left unanswered until :meth:`OpenAIServer.release`. A test can so stop a
client at a point it knows (exactly N answers) on a machine of any speed, then kill it, or let it go.

Prompt caching (``prompt_cache``): the server remembers every system message it was sent; a request
whose system message was seen before reports that message's tokens (words, as the usage counts them)
as served from the cache: ``"openai"`` in ``usage.prompt_tokens_details.cached_tokens``,
``"anthropic"`` as ``cache_read_input_tokens``, and the first request with a prefix as
``cache_creation_input_tokens``. ``keep_bodies`` keeps every chat request body (``bodies``) so tests
can read what a client sent (e.g. a ``cache_control`` mark).

Optional checks: ``api_key`` (401 unless ``Authorization: Bearer <api_key>``; the 401 message echoes the
key it was given, as careless servers do, so clients' redaction gets tested) and ``models`` (404 for
other model names). Bounded: loopback addresses only, request bodies up to ``max_body_bytes``, at most
``max_connections`` open connections and ``max_in_flight`` requests being answered.

The server is one asyncio event loop (in a background thread, or in the foreground from the command
line): the added latency is a real per-request delay during which other requests are served.

Run in the foreground: ``python -m psychometrics.testing.openai_server --model sim/e=1,seed=1 --port 8000``
(``--port 0`` picks a free port; the first line printed gives the base URL).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from psychometrics.models.base import Message, ModelBackend, ModelReply, ModelRequest

DEFAULT_MODEL = "sim/e=1,seed=1"
FAULT_KINDS = ("rate_limit", "server_error", "stall", "reset", "truncated", "malformed", "empty_choices")
OFF_OPTIONS_TOKEN = "As"  # first token of a refusal ("As an AI, ..."): where off-option probability goes
MAX_TOP_LOGPROBS = 20

_LABELLED_LINE = re.compile(r"^\s*\(?(\d{1,2}|[A-Za-z])[.):]\s+\S")
_DASHED_LINE = re.compile(r"^\s*[-*\u2022]\s+(\S.*?)\s*$")


@dataclass(frozen=True)
class ServerConfig:
    """How the server behaves; see the module docstring."""

    latency_s: float = 0.0
    faults: frozenset[str] = frozenset()
    fault_rate: float = 0.0
    seed: int = 0
    retry_after: str = "1"
    stall_s: float = 10.0
    api_key: str | None = None
    models: frozenset[str] | None = None
    logprobs_supported: bool = True
    logprobs_refused: bool = False  # answer logprobs requests HTTP 500 "not supported" (llama.cpp without logits_all)
    preamble: str = ""  # words before every text reply (then cut at max_tokens words, finish_reason length)
    max_body_bytes: int = 1 << 20
    max_connections: int = 256
    max_in_flight: int = 128
    backend_timeout_s: float = 60.0
    log_requests: bool = True  # keep ``request_log`` (off for long runs: it grows with every request)
    rewrite: Callable[[dict], dict] | None = None  # changes every successful response body (hostile replies)
    hold_after: int | None = None  # answer this many chat requests, hold the rest until release()
    prompt_cache: str | None = None  # "openai" or "anthropic": report repeated system prompts as cached
    keep_bodies: bool = False  # keep every chat request body in ``bodies``

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {self.fault_rate}")
        if self.latency_s < 0 or self.stall_s < 0:
            raise ValueError("latency_s and stall_s must not be negative")
        if self.max_connections < 1 or self.max_in_flight < 1 or self.max_body_bytes < 1:
            raise ValueError("max_connections, max_in_flight and max_body_bytes must be at least 1")
        if self.hold_after is not None and self.hold_after < 0:
            raise ValueError("hold_after must not be negative")
        if self.prompt_cache not in (None, "openai", "anthropic"):
            raise ValueError(f"prompt_cache must be None, 'openai' or 'anthropic', got {self.prompt_cache!r}")


# -- reading requests -----------------------------------------------------------------------------


def infer_choices(prompt: str) -> tuple[str, ...]:
    """The answer labels shown in ``prompt``: ``1.``/``A)`` style labels if any, else dashed option words."""
    lines = prompt.splitlines()
    labelled = [m.group(1) for m in map(_LABELLED_LINE.match, lines) if m]
    if labelled:
        return tuple(dict.fromkeys(labelled))
    return tuple(dict.fromkeys(m.group(1) for m in map(_DASHED_LINE.match, lines) if m))


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def parse_messages(raw: Any) -> tuple[Message, ...]:
    """OpenAI chat messages -> psytest messages (``developer`` counts as ``system``; tool turns dropped)."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("'messages' must be a non-empty list")
    messages = []
    for entry in raw:
        if not isinstance(entry, dict) or "role" not in entry:
            raise ValueError("every message needs a 'role' and 'content'")
        role = "system" if entry["role"] == "developer" else entry["role"]
        if role in ("system", "user", "assistant"):
            messages.append(Message(role, _content_text(entry.get("content"))))
    return tuple(messages)


def build_request(body: dict) -> ModelRequest:
    """The psytest request for an OpenAI request body (probability mode when logprobs are asked for)."""
    messages = parse_messages(body.get("messages"))
    last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    choices = infer_choices(last_user)
    probs = bool(body.get("logprobs")) and len(choices) > 0
    seed = body.get("seed")
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 16
    return ModelRequest(
        messages=messages,
        choices=choices,
        mode="probs" if probs else "text",
        temperature=float(body.get("temperature", 1.0) if not probs else 0.0),
        seed=int(seed) if isinstance(seed, (int, float)) else None,
        max_tokens=int(max_tokens),
    )


def request_key(body: Any) -> str | None:
    """A digest of what decides the answer to a request body (messages, mode, seed): every re-send of
    one request has the same key, so tests can count how often each was sent. None if unreadable."""
    try:
        request = build_request(body)
    except (ValueError, TypeError, AttributeError):
        return None
    return model_request_key(request)


def model_request_key(request: ModelRequest) -> str:
    """:func:`request_key` of the body a client sends for ``request``."""
    payload = [[[m.role, m.content] for m in request.messages], request.mode, request.seed]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()


# -- building responses ---------------------------------------------------------------------------


def _token_entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": float(logprob), "bytes": list(token.encode("utf-8"))}


def probs_logprobs(reply: ModelReply, top_n: int) -> tuple[str, dict]:
    """(content, OpenAI ``logprobs`` object) for a probability-mode reply: labels as first-token options."""
    entries = sorted((reply.choice_logprobs or {}).items(), key=lambda kv: kv[1], reverse=True)
    off_options = 1.0 - sum(math.exp(lp) for _, lp in entries)
    if off_options > 1e-9:
        entries.append((OFF_OPTIONS_TOKEN, math.log(off_options)))
        entries.sort(key=lambda kv: kv[1], reverse=True)
    token, logprob = entries[0]
    first = _token_entry(token, logprob)
    first["top_logprobs"] = [_token_entry(t, lp) for t, lp in entries[:top_n]]
    return token, {"content": [first]}


def cut_at_tokens(text: str, max_tokens: int) -> tuple[str, bool]:
    """``text`` cut after its first ``max_tokens`` words (a word is a token here), and whether it was cut."""
    words = list(re.finditer(r"\S+", text))
    if len(words) <= max_tokens:
        return text, False
    return text[: words[max_tokens - 1].end()], True


def completion_body(model: str, content: str, logprobs: dict | None, usage: tuple[int, int],
                    finish_reason: str = "stop") -> dict:
    prompt_tokens, completion_tokens = usage
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "psytest-openai-server",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_body(message: str, kind: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# -- the HTTP layer -------------------------------------------------------------------------------

IDLE_TIMEOUT_S = 30.0  # an idle keep-alive connection, or a client sending a request too slowly, is closed
MAX_HEADER_BYTES = 64 * 1024
_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
}


@dataclass
class _Request:
    method: str
    route: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    keep_alive: bool


def _response_bytes(status: int, payload: Any, headers: dict[str, str] | None, keep_alive: bool) -> bytes:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Server: psytest-openai/1",
             "Content-Type: application/json", f"Content-Length: {len(data)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def _route(target: str) -> str:
    path = urlsplit(target).path.rstrip("/")
    return path[3:] if path.startswith("/v1/") else path


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str], bool] | None:
    """(method, route, headers, keep-alive) of a request head, or None when it is not valid HTTP/1.x."""
    lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
        return None
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if parts[2] == "HTTP/1.1" else connection == "keep-alive"
    return parts[0], _route(parts[1]), headers, keep_alive


class _Reply(Exception):
    """Answer with ``status`` and close the connection (a request the server cannot read safely)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# -- the handle -----------------------------------------------------------------------------------


def _loopback_host(host: str) -> tuple[str, int]:
    """(address, socket family) for ``host``, which must be a loopback address."""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be a loopback IP address (127.0.0.1 or ::1), got {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"host must be a loopback address; {host} is not (this server is for tests only)")
    return host, socket.AF_INET6 if address.version == 6 else socket.AF_INET


class OpenAIServer:
    """A running server: ``base_url``, ``stop()``, ``release()`` (of held requests), and counters:
    ``requests_served`` (chat requests that passed the key and model checks, faulted and held ones
    included), ``faults_injected`` (per kind), ``request_log`` (each such request's time,
    :func:`request_key` and fault), ``limits_asked`` (each such request's ``max_tokens``, None when not
    given), ``held`` (requests held so far), ``peak_in_flight`` (most requests
    being answered at once) and ``open_connections``. Also a context manager.

    One asyncio event loop in a background thread serves every connection and runs the backend, so
    the added latency is a real per-request delay that never holds up other requests.
    """

    def __init__(self, backend: ModelBackend, config: ServerConfig, host: str = "127.0.0.1", port: int = 0):
        self.backend = backend
        self.config = config
        self.stopping = threading.Event()
        self.requests_served = 0
        self.faults_injected: Counter[str] = Counter()
        self.request_log: list[tuple[float, str | None, str | None]] = []
        self.bodies: list[dict] = []
        self._cached_prefixes: set[str] = set()
        self.limits_asked: list[int | None] = []
        self.held = 0
        self.peak_in_flight = 0
        self._in_flight = 0
        self._released: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        address, family = _loopback_host(host)
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((address, port))
            listener.listen(1024)
        except OSError:
            listener.close()
            raise
        self.host = address
        self.port = listener.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._stop_event: asyncio.Event | None = None
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._listen(listener))
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="openai-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._loop.close()
            raise failure[0]

    async def _listen(self, listener: socket.socket) -> None:
        self._stop_event = asyncio.Event()
        self._released = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, sock=listener, limit=MAX_HEADER_BYTES)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def open_connections(self) -> int:
        """Client connections open now (a killed client's are closed once the server has read all it sent)."""
        return len(self._writers)

    def release(self) -> None:
        """Answer the held requests, and every later one (see ``hold_after``)."""
        self._loop.call_soon_threadsafe(self._released.set)

    def model_names(self) -> list[str]:
        return sorted(self.config.models) if self.config.models else [self.backend.name]

    def next_fault(self, body: dict | None = None) -> str | None:
        """Count the request, draw its fault (a function of (seed, request number) only) and log it in
        ``request_log`` as (monotonic time, :func:`request_key` of ``body``, fault or None)."""
        number = self.requests_served
        self.requests_served += 1
        fault = None
        if self.config.faults and self.config.fault_rate > 0:
            rng = random.Random(f"{self.config.seed}:{number}")
            if rng.random() < self.config.fault_rate:
                fault = sorted(self.config.faults)[rng.randrange(len(self.config.faults))]
                self.faults_injected[fault] += 1
        if self.config.log_requests:
            self.request_log.append((time.monotonic(), request_key(body), fault))
            limit = (body.get("max_tokens") or body.get("max_completion_tokens")) if isinstance(body, dict) else None
            self.limits_asked.append(limit if isinstance(limit, int) else None)
        return fault

    # -- connections ------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= self.config.max_connections or self.stopping.is_set():
            writer.transport.abort()  # refused: closed at once
            return
        task = asyncio.current_task()
        self._writers.add(writer)
        self._tasks.add(task)
        try:
            while True:
                try:
                    request = await self._read_request(reader, writer)
                except _Reply as refusal:
                    writer.write(_response_bytes(refusal.status, error_body(str(refusal), "invalid_request_error"),
                                                 None, keep_alive=False))
                    await writer.drain()
                    break
                if request is None or not await self._respond(request, writer) or not request.keep_alive:
                    break
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            if not self.stopping.is_set():
                raise
            # stop() cancelled this connection: end quietly (asyncio would log a cancelled handler)
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            if self.stopping.is_set():
                writer.transport.abort()
            else:
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
        """The next request on the connection; None when the client closed it or was too slow."""
        watchdog = self._loop.call_later(IDLE_TIMEOUT_S, writer.transport.abort)
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError:
                raise _Reply(431, "request headers too large") from None
            parsed = _parse_head(head)
            if parsed is None:
                raise _Reply(400, "malformed HTTP request")
            method, route, headers, keep_alive = parsed
            length = headers.get("content-length")
            if "transfer-encoding" in headers or (length is None and method == "POST"):
                raise _Reply(411, "a Content-Length header is required")
            if length is not None and not length.isdigit():
                raise _Reply(400, "Content-Length must be a number")
            if length is not None and int(length) > self.config.max_body_bytes:
                raise _Reply(413, "request body too large")
            body = await reader.readexactly(int(length)) if length else b""
            return _Request(method, route, headers, body, keep_alive)
        finally:
            watchdog.cancel()

    async def _send(self, writer: asyncio.StreamWriter, status: int, payload: Any, keep_alive: bool,
                    headers: dict[str, str] | None = None) -> bool:
        writer.write(_response_bytes(status, payload, headers, keep_alive))
        await writer.drain()
        return keep_alive

    async def _respond(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must be closed."""
        keep = request.keep_alive
        if request.method == "GET" and request.route == "/models":
            return await self._send(writer, 200, {"object": "list", "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "psytest"} for name in self.model_names()
            ]}, keep)
        if request.route not in ("/models", "/chat/completions"):
            return await self._send(writer, 404, error_body(f"no route {request.route}", "invalid_request_error"), keep)
        if request.method != "POST" or request.route != "/chat/completions":
            return await self._send(writer, 405, error_body(f"{request.method} is not allowed here",
                                                            "invalid_request_error"), keep)
        if self._in_flight >= self.config.max_in_flight:
            return await self._send(writer, 503, error_body("server busy", "server_error"), keep, {"Retry-After": "1"})
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            return await self._chat(request, writer)
        finally:
            self._in_flight -= 1

    async def _chat(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        keep = request.keep_alive
        try:
            body = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError):
            return await self._send(writer, 400, error_body("request body is not valid JSON", "invalid_request_error"), keep)
        if not isinstance(body, dict):
            return await self._send(writer, 400, error_body("request body must be a JSON object", "invalid_request_error"), keep)
        refusal = self._check_key(request.headers) or self._check_model(body)
        if refusal is not None:
            return await self._send(writer, *refusal, keep)
        if self.config.keep_bodies:
            self.bodies.append(body)
        number = self.requests_served
        fault = self.next_fault(body)
        if self.config.hold_after is not None and number >= self.config.hold_after and not self._released.is_set():
            self.held += 1
            await self._released.wait()
        if fault is not None:
            outcome = await self._inject(fault, writer, keep)
            if outcome is not None:
                return outcome
        if self.config.latency_s:
            await asyncio.sleep(self.config.latency_s)
        try:
            model_request = build_request(body)
        except (ValueError, TypeError) as exc:
            return await self._send(writer, 400, error_body(str(exc), "invalid_request_error"), keep)
        if self.config.logprobs_refused and body.get("logprobs"):
            return await self._send(writer, 500, error_body(
                "logprobs is not supported by this server: start it with log-probabilities enabled", "server_error"), keep)
        try:
            reply = await asyncio.wait_for(self.backend.complete(model_request), self.config.backend_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a backend failure is the server's error, reported as 500
            return await self._send(writer, 500, error_body(f"backend failed: {type(exc).__name__}: {exc}",
                                                            "server_error"), keep)
        payload = self.response_body(str(body.get("model", "")), body, model_request, reply)
        if self.config.rewrite is not None:
            payload = self.config.rewrite(payload)
        return await self._send(writer, 200, payload, keep)

    def _check_key(self, headers: dict[str, str]) -> tuple[int, dict] | None:
        expected = self.config.api_key
        given = headers.get("authorization", "")
        if expected is None or given == f"Bearer {expected}":
            return None
        key = given.removeprefix("Bearer ").strip()
        message = f"Incorrect API key provided: {key}. You can find your API key in your account settings."
        return 401, error_body(message, "invalid_request_error", "invalid_api_key")

    def _check_model(self, body: dict) -> tuple[int, dict] | None:
        model = str(body.get("model", ""))
        if self.config.models is None or model in self.config.models:
            return None
        message = f"The model `{model}` does not exist or you do not have access to it."
        return 404, error_body(message, "invalid_request_error", "model_not_found")

    async def _inject(self, fault: str, writer: asyncio.StreamWriter, keep: bool) -> bool | None:
        """Carry out ``fault``: whether to keep the connection, or None to go on and answer normally."""
        config = self.config
        if fault == "rate_limit":
            return await self._send(writer, 429, error_body("Rate limit reached for requests", "requests",
                                                            "rate_limit_exceeded"), keep, {"Retry-After": config.retry_after})
        if fault == "server_error":
            return await self._send(writer, 500, error_body("The server had an error while processing your request.",
                                                            "server_error"), keep)
        if fault == "stall":
            try:
                await asyncio.wait_for(self._stop_event.wait(), config.stall_s)
            except asyncio.TimeoutError:
                return None  # then answer normally, if anyone is still listening
            return False
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "truncated":
            data = _response_bytes(200, completion_body("x", "1", None, (1, 1)), None, keep_alive=False)
            writer.write(data[: len(data) - 40])  # the body stops short of its Content-Length
            await writer.drain()
            return False
        if fault == "malformed":
            return await self._send(writer, 200, b'{"id": "chatcmpl-broken", "object": "chat.completion", '
                                                 b'"choices": [{"index": 0,', keep)
        body = completion_body("x", "", None, (1, 0))  # empty_choices
        body["choices"] = []
        return await self._send(writer, 200, body, keep)

    def response_body(self, model: str, body: dict, request: ModelRequest, reply: ModelReply) -> dict:
        words = sum(len(m.content.split()) for m in request.messages)
        logprobs = None
        if request.mode == "probs":
            top_n = max(0, min(int(body.get("top_logprobs") or 0), MAX_TOP_LOGPROBS))
            content, logprobs = probs_logprobs(reply, top_n)
            if not self.config.logprobs_supported:
                logprobs = None
        cut = False
        if request.mode != "probs":
            preamble = self.config.preamble.strip()
            content = f"{preamble} {reply.text or ''}" if preamble else (reply.text or "")
            content, cut = cut_at_tokens(content, max(1, request.max_tokens))
            cut = cut or reply.finish_reason == "length"
        output = max(1, len(content.split())) if cut or self.config.preamble else reply.output_tokens
        usage = (reply.input_tokens or words, output or max(1, len(content.split())))
        payload = completion_body(model, content, logprobs, usage, "length" if cut else "stop")
        if self.config.prompt_cache:
            self._report_cache(body, payload["usage"])
        return payload

    def _report_cache(self, body: dict, usage: dict) -> None:
        """Add what a provider's prompt cache would report for this request's system prompt to ``usage``."""
        raw = body.get("messages") if isinstance(body.get("messages"), list) else []
        system = "\n".join(_content_text(m.get("content")) for m in raw
                           if isinstance(m, dict) and m.get("role") in ("system", "developer"))
        tokens = min(len(system.split()), usage["prompt_tokens"])
        seen = system in self._cached_prefixes
        self._cached_prefixes.add(system)
        if not system:
            return
        if self.config.prompt_cache == "openai":
            usage["prompt_tokens_details"] = {"cached_tokens": tokens if seen else 0}
        else:
            usage["cache_read_input_tokens"] = tokens if seen else 0
            usage["cache_creation_input_tokens"] = 0 if seen else tokens

    # -- stopping ---------------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        self._stop_event.set()
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.backend.aclose()

    def stop(self) -> None:
        """Stop serving, close every connection and the backend's event loop. Safe to call twice."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> "OpenAIServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server(
    backend: ModelBackend | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    latency_s: float = 0.0,
    faults: Iterable[str] | None = None,
    fault_rate: float = 0.0,
    seed: int = 0,
    **options: Any,
) -> OpenAIServer:
    """Start a server in a background thread; ``port=0`` picks a free port. ``options`` are further
    :class:`ServerConfig` fields (``retry_after``, ``stall_s``, ``api_key``, ``models``,
    ``logprobs_supported``, ``logprobs_refused``, ``preamble``, ``hold_after``, limits)."""
    if backend is None:
        from psychometrics.models.simulated import SimulatedRespondent

        backend = SimulatedRespondent(DEFAULT_MODEL)
    if options.get("models") is not None:
        options["models"] = frozenset(options["models"])
    config = ServerConfig(latency_s=latency_s, faults=frozenset(faults or ()), fault_rate=fault_rate,
                          seed=seed, **options)
    return OpenAIServer(backend, config, host, port)


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m psychometrics.testing.openai_server",
                                     description="OpenAI-compatible test server on loopback.")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"psytest model string (default {DEFAULT_MODEL})")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--faults", default="", help=f"comma-separated fault kinds: {', '.join(FAULT_KINDS)}")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault per request")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--no-logprobs", action="store_true", help="ignore logprobs requests")
    parser.add_argument("--refuse-logprobs", action="store_true", help="answer logprobs requests HTTP 500")
    parser.add_argument("--preamble", default="", help="words put before every text reply (cut at max_tokens)")
    parser.add_argument("--max-connections", type=int, default=ServerConfig.max_connections,
                        help="open connections beyond this are closed at once")
    parser.add_argument("--max-in-flight", type=int, default=ServerConfig.max_in_flight,
                        help="requests being answered beyond this get 503 with Retry-After")
    args = parser.parse_args(argv)

    from psychometrics.errors import PsytestError
    from psychometrics.models import resolve_model

    try:
        backend = resolve_model(args.model)
        faults = [f.strip() for f in args.faults.split(",") if f.strip()]
        server = start_server(backend, host=args.host, port=args.port, latency_s=args.latency, faults=faults,
                              fault_rate=args.fault_rate, seed=args.seed,
                              logprobs_supported=not args.no_logprobs, logprobs_refused=args.refuse_logprobs,
                              preamble=args.preamble, max_connections=args.max_connections,
                              max_in_flight=args.max_in_flight, log_requests=False)
    except (PsytestError, ValueError, OSError) as exc:
        parser.exit(2, f"openai_server: error: {exc}\n")
    print(f"serving {args.model} at {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        server.stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
