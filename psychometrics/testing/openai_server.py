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
  no log-probabilities.

Faults (``faults``, each request independently with probability ``fault_rate``; the draw for the
n-th request depends only on ``seed`` and n, so a test sees the same faults every time):

``rate_limit``     HTTP 429 with a ``Retry-After`` header (``retry_after``, seconds or an HTTP date)
``server_error``   HTTP 500
``stall``          wait ``stall_s`` before answering (past the client's timeout)
``reset``          drop the connection with a TCP reset, no response
``truncated``      a 200 whose body stops half-way (Content-Length promises more)
``malformed``      a 200 whose body is not JSON
``empty_choices``  a 200 with ``"choices": []``

Optional checks: ``api_key`` (401 unless ``Authorization: Bearer <api_key>``; the 401 message echoes the
key it was given, as careless servers do, so clients' redaction gets tested) and ``models`` (404 for
other model names). Bounded: loopback addresses only, request bodies up to ``max_body_bytes``, at most
``max_connections`` open connections and ``max_in_flight`` requests being answered.

Run in the foreground: ``python -m psychometrics.testing.openai_server --model sim/e=1,seed=1 --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
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
    max_body_bytes: int = 1 << 20
    max_connections: int = 64
    max_in_flight: int = 32
    backend_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {self.fault_rate}")
        if self.latency_s < 0 or self.stall_s < 0:
            raise ValueError("latency_s and stall_s must not be negative")


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


def completion_body(model: str, content: str, logprobs: dict | None, usage: tuple[int, int]) -> dict:
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
                "finish_reason": "stop",
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


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address, handler, app: "OpenAIServer", family: int):
        self.address_family = family
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def verify_request(self, request, client_address) -> bool:
        """Refuse connections beyond ``max_connections`` (they are closed at once)."""
        with self.connections_lock:
            if len(self.connections) >= self.app.config.max_connections:
                return False
            self.connections.add(request)
        return True

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close every open connection (idle keep-alive ones included), so nothing is served after stop."""
        with self.connections_lock:
            open_now = list(self.connections)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "psytest-openai/1"
    timeout = 30  # an idle keep-alive connection does not hold a thread for ever

    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        return

    # -- plumbing ---------------------------------------------------------------------------------
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> str:
        path = urlsplit(self.path).path.rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    def _read_json(self) -> dict | None:
        """The request body as a JSON object, or None after answering with an error."""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._send_json(411, error_body("a Content-Length header is required", "invalid_request_error"))
            return None
        if int(length) > self.server.app.config.max_body_bytes:
            self.close_connection = True
            self._send_json(413, error_body("request body too large", "invalid_request_error"))
            return None
        try:
            body = json.loads(self.rfile.read(int(length)) or b"null")
        except (ValueError, UnicodeDecodeError):
            self._send_json(400, error_body("request body is not valid JSON", "invalid_request_error"))
            return None
        if not isinstance(body, dict):
            self._send_json(400, error_body("request body must be a JSON object", "invalid_request_error"))
            return None
        return body

    # -- routes -----------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self._route() != "/models":
            self._send_json(404, error_body(f"no route {self.path}", "invalid_request_error"))
            return
        names = self.server.app.model_names()
        self._send_json(200, {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "psytest"} for name in names
        ]})

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        if self._route() != "/chat/completions":
            self._send_json(404, error_body(f"no route {self.path}", "invalid_request_error"))
            return
        app = self.server.app
        if not app.in_flight.acquire(blocking=False):
            self._send_json(503, error_body("server busy", "server_error"), {"Retry-After": "1"})
            return
        try:
            body = self._read_json()
            if body is not None and self._authorized() and self._model_known(body):
                self._chat(body)
        finally:
            app.in_flight.release()

    def _authorized(self) -> bool:
        expected = self.server.app.config.api_key
        given = self.headers.get("Authorization", "")
        if expected is None or given == f"Bearer {expected}":
            return True
        key = given.removeprefix("Bearer ").strip()
        message = f"Incorrect API key provided: {key}. You can find your API key in your account settings."
        self._send_json(401, error_body(message, "invalid_request_error", "invalid_api_key"))
        return False

    def _model_known(self, body: dict) -> bool:
        models = self.server.app.config.models
        model = str(body.get("model", ""))
        if models is None or model in models:
            return True
        message = f"The model `{model}` does not exist or you do not have access to it."
        self._send_json(404, error_body(message, "invalid_request_error", "model_not_found"))
        return False

    def _chat(self, body: dict) -> None:
        app = self.server.app
        fault = app.next_fault()
        if fault is not None and self._inject(fault):
            return
        if app.config.latency_s:
            app.stopping.wait(app.config.latency_s)
        try:
            request = build_request(body)
        except (ValueError, TypeError) as exc:
            self._send_json(400, error_body(str(exc), "invalid_request_error"))
            return
        try:
            reply = app.answer(request)
        except Exception as exc:  # noqa: BLE001 - a backend failure is the server's error, reported as 500
            self._send_json(500, error_body(f"backend failed: {type(exc).__name__}: {exc}", "server_error"))
            return
        self._send_json(200, app.response_body(str(body.get("model", "")), body, request, reply))

    def _inject(self, fault: str) -> bool:
        """Carry out ``fault``; True when the response has been dealt with (nothing more to send)."""
        config = self.server.app.config
        if fault == "rate_limit":
            self._send_json(429, error_body("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
                            {"Retry-After": config.retry_after})
        elif fault == "server_error":
            self._send_json(500, error_body("The server had an error while processing your request.", "server_error"))
        elif fault == "stall":
            if self.server.app.stopping.wait(config.stall_s):
                self.close_connection = True
                return True
            return False  # then answer normally, if anyone is still listening
        elif fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif fault == "truncated":
            data = json.dumps(completion_body("x", "1", None, (1, 1))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif fault == "malformed":
            self._send_json(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0,')
        elif fault == "empty_choices":
            body = completion_body("x", "", None, (1, 0))
            body["choices"] = []
            self._send_json(200, body)
        return True

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:  # the client gave up (e.g. after a stall) or the server is stopping
            self.close_connection = True


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
    """A running server: ``base_url``, ``stop()``, and counters: ``requests_served`` (chat requests that
    passed the key and model checks, faulted ones included) and ``faults_injected`` (per kind).
    Also a context manager."""

    def __init__(self, backend: ModelBackend, config: ServerConfig, host: str = "127.0.0.1", port: int = 0):
        self.backend = backend
        self.config = config
        self.in_flight = threading.BoundedSemaphore(config.max_in_flight)
        self.stopping = threading.Event()
        self.requests_served = 0
        self.faults_injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        address, family = _loopback_host(host)
        self._httpd = _HTTPServer((address, port), _Handler, self, family)
        self.host = address
        self.port = self._httpd.server_address[1]
        self._loop = asyncio.new_event_loop()
        self._threads = [
            threading.Thread(target=self._loop.run_forever, name="openai-server-backend", daemon=True),
            threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                             name="openai-server-http", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def model_names(self) -> list[str]:
        return sorted(self.config.models) if self.config.models else [self.backend.name]

    def next_fault(self) -> str | None:
        """Count the request and draw its fault: a function of (seed, request number) only."""
        with self._lock:
            number = self.requests_served
            self.requests_served += 1
        if not self.config.faults or self.config.fault_rate <= 0:
            return None
        rng = random.Random(f"{self.config.seed}:{number}")
        if rng.random() >= self.config.fault_rate:
            return None
        fault = sorted(self.config.faults)[rng.randrange(len(self.config.faults))]
        with self._lock:
            self.faults_injected[fault] += 1
        return fault

    def answer(self, request: ModelRequest) -> ModelReply:
        """Run the backend on the server's own event loop (backends are async)."""
        future = asyncio.run_coroutine_threadsafe(self.backend.complete(request), self._loop)
        return future.result(timeout=self.config.backend_timeout_s)

    def response_body(self, model: str, body: dict, request: ModelRequest, reply: ModelReply) -> dict:
        words = sum(len(m.content.split()) for m in request.messages)
        logprobs = None
        if request.mode == "probs":
            top_n = max(0, min(int(body.get("top_logprobs") or 0), MAX_TOP_LOGPROBS))
            content, logprobs = probs_logprobs(reply, top_n)
            if not self.config.logprobs_supported:
                logprobs = None
        else:
            content = reply.text or ""
        usage = (reply.input_tokens or words, reply.output_tokens or max(1, len(content.split())))
        return completion_body(model, content, logprobs, usage)

    def stop(self) -> None:
        """Stop serving, close every connection and the backend's event loop. Safe to call twice."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.drop_connections()
        self._httpd.server_close()
        try:
            asyncio.run_coroutine_threadsafe(self.backend.aclose(), self._loop).result(timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            for thread in self._threads:
                thread.join(timeout=5)
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
    """Start a server in background threads; ``port=0`` picks a free port. ``options`` are further
    :class:`ServerConfig` fields (``retry_after``, ``stall_s``, ``api_key``, ``models``,
    ``logprobs_supported``, limits)."""
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
    args = parser.parse_args(argv)

    from psychometrics.errors import PsytestError
    from psychometrics.models import resolve_model

    try:
        backend = resolve_model(args.model)
        faults = [f.strip() for f in args.faults.split(",") if f.strip()]
        server = start_server(backend, host=args.host, port=args.port, latency_s=args.latency, faults=faults,
                              fault_rate=args.fault_rate, seed=args.seed,
                              logprobs_supported=not args.no_logprobs)
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
