"""OpenAI-compatible servers (vLLM, llama.cpp, Ollama, LM Studio, gateways) spoken to directly over HTTP.

``--model openai/NAME --api-base URL`` uses this backend instead of litellm: kept-alive connections per
event loop, and nothing between the worker pool and the socket but a JSON body. A plain ``http://`` URL
without a proxy (a local or in-cluster server) goes through :mod:`.http1`, a lean HTTP/1.1 client on
asyncio that costs a fraction of aiohttp's CPU per request; https, proxies and headers that are not plain
text go through aiohttp. Both raise the same errors in the same words.
litellm costs several milliseconds of CPU per call (about 10x this backend), which caps a 2-core
machine at a few hundred requests per second whatever the server could take; other providers still go
through :mod:`.litellm_backend`.

Behaviour matches the litellm backend:

* ``POST {api_base}/chat/completions`` with model ``NAME``; ``text`` mode is one chat completion,
  ``probs`` mode a one-token completion at temperature 0 with ``logprobs=True, top_logprobs=20`` whose
  first token's alternatives are mapped onto the displayed labels (:func:`.map_top_logprobs`).
* The key comes only from ``OPENAI_API_KEY`` in the environment (sent as a bearer token when set; local
  servers usually need none). It is never part of :attr:`params` and never appears in an error.
* Rate limits (429), overload (5xx, 408, 409, 425), timeouts, dropped connections, truncated or
  malformed bodies and responses without choices raise :class:`TransientModelError` (with the server's
  Retry-After, in seconds or as an HTTP date); a rejected key, an unknown model, a bad request or a
  server without log-probabilities raise :class:`ModelCallError`, one line that says what to do.
* A rejected key (401), a refused permission (403), an unknown model or a URL with no chat completions
  (404, with a hint to add ``/v1`` when the URL lacks it), a method not allowed (405), a web page where the
  API should be (a 2xx ``text/html`` body) and a parameter the server says it does not support raise
  :class:`EndpointCallError`: every request would get the same, so a
  few in a row stop the run (:class:`psychometrics.engine.pool.Breaker`). A connection that cannot be made
  (refused, unknown host, no route, :data:`DEFAULT_CONNECT_TIMEOUT_S` to connect) is transient but marked
  ``unreachable``: a few in a row stop the run instead of retrying every request for minutes.
* ``timeout_s`` counts from when the server could start on a request, not from sending it
  (:mod:`.progress`): work queued at the server keeps its place while the server answers others.
* Response bodies are read up to :data:`MAX_RESPONSE_BYTES`; a larger one is a failure, not a crash.
* :attr:`params` (part of request ids) hold no URL: ``--api-base`` says where the model is, not which
  model it is, so a run resumes on a new port or host; the URL is :attr:`endpoint`, recorded in the
  manifest, and the served model name and fingerprint are stored with every answer.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from psychometrics import limits
from psychometrics.errors import ModelSpecError
from psychometrics.models.base import ModelBackend, ModelReply, ModelRequest, TransientModelError
from psychometrics.models.litellm_backend import (
    TOP_LOGPROBS,
    NOT_SUPPORTED,
    EndpointCallError,
    ModelCallError,
    _nested_secret_values,
    check_api_base,
    endpoint_url,
    fill_reply_metadata,
    is_secret_name,
    as_float,
    map_top_logprobs,
    missing_version_hint,
    parse_retry_after,
    public_params,
    public_url,
    reply_text,
    scrub,
    split_credentials,
)
from psychometrics.models.progress import ProgressClock, QueueTimeout

KEY_VARIABLE = "OPENAI_API_KEY"
DEFAULT_TIMEOUT_S = 600.0  # the OpenAI client's own default
DEFAULT_CONNECT_TIMEOUT_S = 10.0  # to open a connection (TCP and TLS): a live server accepts in milliseconds
MAX_RESPONSE_BYTES = limits.SERVER_BODY_BYTES
PREFIX = "openai/"


def chat_url(api_base: str) -> tuple[str, str | None]:
    """(``{api_base}/chat/completions`` without credentials, keeping any query string; the ``Basic``
    Authorization value for ``user:password@`` in ``api_base``, or None). ModelSpecError for an unusable URL."""
    check_api_base(api_base)
    url, basic = split_credentials(api_base.strip())
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/chat/completions", parts.query, "")), basic


def _parsed_url(url: str):
    """``url`` parsed once for aiohttp (a yarl URL; the string itself if yarl cannot take it: aiohttp then
    says why on the first request)."""
    try:
        from yarl import URL

        return URL(url)
    except (ImportError, ValueError, TypeError):
        return url


def proxy_for(url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``, ...) asks for ``url``;
    None for a direct connection. Loopback addresses are always reached directly."""
    import urllib.request

    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in ("localhost", "127.0.0.1", "::1") or host.startswith("127."):
        return None
    try:
        if urllib.request.proxy_bypass(host):
            return None
    except OSError:
        pass
    return urllib.request.getproxies().get(parts.scheme)


def _raw_target(url: str) -> tuple[str, int, str, str] | None:
    """(host, port, Host header, request target) when ``url`` can go through the lean client
    (:mod:`.http1`): plain ``http://`` with a printable ASCII path; None sends it through aiohttp."""
    parts = urlsplit(url)
    try:
        port = parts.port or 80
    except ValueError:
        return None
    host, netloc = parts.hostname, parts.netloc.rpartition("@")[2]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme != "http" or not host or not all(33 <= ord(c) < 127 for c in target + netloc):
        return None
    return host, port, netloc, target


def top_logprobs(choice: dict) -> list[tuple[str, float]]:
    """The (token, log-probability) alternatives of a choice's first generated token; [] when there are
    none or they are malformed."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        return []
    top = content[0].get("top_logprobs")
    return [(str(entry.get("token")), number) for entry in (top if isinstance(top, list) else ())
            if isinstance(entry, dict) and (number := as_float(entry.get("logprob"))) is not None]


def _error_detail(raw: bytes, secrets: list[str]) -> tuple[str, str]:
    """(message, code) from an error body: OpenAI's ``{"error": {...}}`` if present, else the text."""
    message, code = "", ""
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if isinstance(payload, Mapping):
        error = payload.get("error", payload)
        if isinstance(error, Mapping):
            message, code = str(error.get("message") or ""), str(error.get("code") or error.get("type") or "")
        elif isinstance(error, str):
            message = error
    if not message:
        message = raw[:400].decode("utf-8", "replace")
    text = scrub(message, secrets).strip(" .-:")
    return text[:200] + ("..." if len(text) > 200 else ""), code


class OpenAIHTTPBackend(ModelBackend):
    """``openai/NAME`` at ``api_base``, over :mod:`.http1` or aiohttp. See the module docstring for modes, keys and errors."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str,
        timeout_s: float | None = None,
        connect_timeout_s: float | None = None,
        extra_params: dict | None = None,
        endpoint_source: str = "--api-base",
    ):
        if not model.startswith(PREFIX) or not model[len(PREFIX):].strip():
            raise ModelSpecError(f"--model {model}: an OpenAI-compatible model is written openai/NAME")
        extra = dict(extra_params or {})
        if "api_key" in extra:
            raise ModelSpecError(
                f"--model {model}: pass API keys through the environment ({KEY_VARIABLE}), not as a parameter"
            )
        if timeout_s is not None and not timeout_s > 0:
            raise ModelSpecError(f"--model {model}: timeout must be positive, got {timeout_s}")
        if connect_timeout_s is not None and not connect_timeout_s > 0:
            raise ModelSpecError(f"--connect-timeout must be positive, got {connect_timeout_s}")
        self.name = model
        self.served_name = model[len(PREFIX):]
        self.api_base = api_base
        self.url, self._basic_auth = chat_url(api_base)
        self.endpoint = endpoint_url(api_base)
        self.endpoint_source = endpoint_source
        self.times_own_requests = True
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s or DEFAULT_CONNECT_TIMEOUT_S
        self._clock = ProgressClock()
        self.extra_headers = {str(k): str(v) for k, v in (extra.pop("extra_headers", None) or {}).items()}
        self.extra_params = extra
        self.proxy = proxy_for(self.url)
        # request_bytes' parts, made once: the head of every body (None: an extra parameter a request sets)
        per_request = {"model", "messages", "temperature", "max_tokens", "logprobs", "top_logprobs", "seed"}
        self._fixed_head = (None if per_request & set(extra) else
                            json.dumps({**extra, "model": self.served_name}, ensure_ascii=False)[:-1] + ', "messages": ')
        self._messages_json: dict[int, tuple] = {}
        self._tails: dict[tuple, str] = {}
        self._session_headers: dict[str, str] = {}
        self._session_url = None
        self._session = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._raw_target = _raw_target(self.url) if self.proxy is None else None
        self._pool = None  # the lean client's connections (http1.ConnectionPool) when _raw_target is set
        self._pool_head = b""
        self._pool_loop: asyncio.AbstractEventLoop | None = None

    @property
    def params(self) -> dict[str, Any]:
        """Settings that change answers: the backend and any extra request parameters. Not the URL (where
        the model is served: :attr:`endpoint`), nor credentials (the key lives only in the environment)."""
        params: dict[str, Any] = {"backend": "openai-http"}
        extra = dict(self.extra_params)
        if self.extra_headers:
            extra["extra_headers"] = self.extra_headers
        if extra:
            params["extra_params"] = public_params(extra)
        return params

    # -- calling ----------------------------------------------------------------------------------
    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self.extra_params,
            "model": self.served_name,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.mode == "probs":
            body.update(temperature=0.0, max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
        else:
            body.update(temperature=request.temperature, max_tokens=request.max_tokens)
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    def request_bytes(self, request: ModelRequest) -> bytes:
        """:meth:`request_body` as the JSON bytes sent, built from parts made once per run: the fixed
        head (extra parameters and model), each prompt's messages (samples of one prompt share them) and
        each setting's tail, so a request costs a few string joins instead of a JSON encoding of its dict.
        Extra parameters that a request sets itself (temperature, ...) take the general path."""
        if self._fixed_head is None:
            return json.dumps(self.request_body(request), ensure_ascii=False).encode("utf-8")
        messages = self._messages_json.get(id(request.messages))
        if messages is None or messages[0] is not request.messages:
            if len(self._messages_json) >= 4096:
                self._messages_json.clear()
            text = json.dumps([{"role": m.role, "content": m.content} for m in request.messages], ensure_ascii=False)
            messages = self._messages_json[id(request.messages)] = (request.messages, text)  # holds the tuple: ids stay unique
        key = (request.mode, request.temperature, request.max_tokens)
        tail = self._tails.get(key)
        if tail is None:
            settings = ({"temperature": 0.0, "max_tokens": 1, "logprobs": True, "top_logprobs": TOP_LOGPROBS}
                        if request.mode == "probs" else {"temperature": request.temperature, "max_tokens": request.max_tokens})
            tail = self._tails[key] = ", " + json.dumps(settings)[1:-1]
        seed = request.seed
        seed_part = "" if seed is None else f', "seed": {seed if type(seed) is int else json.dumps(seed)}'
        return f"{self._fixed_head}{messages[1]}{tail}{seed_part}}}".encode("utf-8")

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.extra_headers}
        key = os.environ.get(KEY_VARIABLE, "").strip()
        if self._basic_auth:  # user:password@ in --api-base
            headers["Authorization"] = self._basic_auth
        elif key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _session_for_loop(self):
        """The aiohttp session of the running event loop (sessions are bound to the loop that made them)."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            # no total limit here: a request is timed from when the server could start on it (_clock)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s)
            # trust_env=False: aiohttp would look up .netrc and proxies in a thread on every request;
            # the proxy is looked up once instead (self.proxy)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                                  cookie_jar=aiohttp.DummyCookieJar())
            self._session_loop = loop
            # what every request of this session sends alike, made once (the key read from the environment now)
            self._session_headers = self._headers()
            self._session_url = _parsed_url(self.url)
        return self._session

    def _pool_for_loop(self):
        """The lean client's connection pool of the running event loop, or None when this endpoint goes
        through aiohttp (https, a proxy, headers that are not plain latin-1 text)."""
        loop = asyncio.get_running_loop()
        if self._pool_loop is loop:
            return self._pool
        from psychometrics.models import http1

        self._pool, self._pool_loop = None, loop
        host, port, netloc, target = self._raw_target
        lines = [f"POST {target} HTTP/1.1", f"Host: {netloc}", "User-Agent: psytest", "Accept: application/json"]
        for name, value in self._headers().items():
            if not http1.is_header_name(name) or not http1.is_header_value(value):
                return None  # aiohttp says what is wrong with it, as before
            lines.append(f"{name}: {value}")
        try:
            self._pool_head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        except UnicodeEncodeError:
            return None
        self._pool = http1.ConnectionPool(host, port, connect_timeout_s=self.connect_timeout_s,
                                          max_body_bytes=MAX_RESPONSE_BYTES)
        return self._pool

    async def complete(self, request: ModelRequest) -> ModelReply:
        if self._raw_target is not None and (pool := self._pool_for_loop()) is not None:
            return await self._complete_raw(pool, request)
        import aiohttp

        session = self._session_for_loop()
        data = self.request_bytes(request)

        async def post() -> tuple[int, Any, bytes]:
            async with session.post(self._session_url, data=data, headers=self._session_headers,
                                    proxy=self.proxy) as response:
                return response.status, response.headers, await self._read(response)

        limit = self.timeout_s or DEFAULT_TIMEOUT_S
        try:
            status, headers, raw = await self._clock.run(post(), limit)
        except aiohttp.ConnectionTimeoutError:
            raise self._no_connection() from None
        except (QueueTimeout, asyncio.TimeoutError, TimeoutError):
            raise self._timed_out(limit) from None
        except aiohttp.InvalidURL:
            raise EndpointCallError(f"{self.name}: --api-base {public_url(self.api_base)} is not a usable URL") from None
        except aiohttp.ClientConnectorError as exc:  # refused, unknown host, no route: the server never saw it
            raise TransientModelError(
                f"{self.name}: nothing answers at {public_url(self.api_base)} ({self._transport_detail(exc)})",
                unreachable=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientModelError(
                f"{self.name}: provider unavailable at {public_url(self.api_base)} ({self._transport_detail(exc)})"
            ) from None
        return self._answer(status, headers, raw, request)

    def _no_connection(self) -> TransientModelError:
        """No connection within the connect timeout (either HTTP client)."""
        return TransientModelError(f"{self.name}: no connection to {public_url(self.api_base)} within "
                                   f"{self.connect_timeout_s:g} s", unreachable=True)

    def _timed_out(self, limit: float) -> TransientModelError:
        """No progress at the server within ``limit`` seconds (either HTTP client)."""
        return TransientModelError(f"{self.name}: request timed out after {limit:g} s without progress at the "
                                   "server", timed_out=True)

    async def _complete_raw(self, pool, request: ModelRequest) -> ModelReply:
        """:meth:`complete` through the lean client (:mod:`.http1`): the same requests, the same errors
        in the same words as through aiohttp."""
        from psychometrics.models import http1

        data = self.request_bytes(request)
        message = b"%b%d\r\n\r\n%b" % (self._pool_head, len(data), data)
        limit = self.timeout_s or DEFAULT_TIMEOUT_S
        try:
            response = await self._clock.run(pool.send(message), limit)
        except http1.ConnectTimedOut:
            raise self._no_connection() from None
        except (QueueTimeout, asyncio.TimeoutError, TimeoutError):
            raise self._timed_out(limit) from None
        except http1.ConnectFailed as exc:  # refused, unknown host, no route: the server never saw it
            detail = scrub(f"connection error: {exc}", self._secrets())[:200]
            raise TransientModelError(f"{self.name}: nothing answers at {public_url(self.api_base)} ({detail})",
                                      unreachable=True) from None
        except http1.BodyTooLarge:
            raise ModelCallError(f"{self.name}: the response from {public_url(self.api_base)} is larger than "
                                 f"{pool.max_body_bytes:,} bytes; check --api-base") from None
        except (http1.HTTPClientError, OSError) as exc:
            if isinstance(exc, http1.TruncatedBody):
                detail = "truncated response: the connection closed before the whole body arrived"
            elif isinstance(exc, (http1.Disconnected, ConnectionResetError)):
                detail = "connection reset by the server"
            else:
                detail = "connection error: " + scrub(f"{type(exc).__name__}: {exc}", self._secrets())[:200]
            raise TransientModelError(f"{self.name}: provider unavailable at {public_url(self.api_base)} ({detail})"
                                      ) from None
        return self._answer(response.status, response.headers, response.body, request)

    def _answer(self, status: int, headers: Mapping[str, str], raw: bytes, request: ModelRequest) -> ModelReply:
        """The reply in a response's status, headers and body; the error it is otherwise."""
        if not 200 <= status < 300:
            raise self._http_error(status, headers, raw, request)
        if "html" in str(headers.get("Content-Type", "")).lower():  # a web page (a UI, a proxy's login): not the API
            raise EndpointCallError(f"{self.name}: {self.url} answers with a web page, not the chat completions "
                                    "API; check --api-base" + missing_version_hint(self.api_base))
        reply = self._reply(raw, request)
        self._clock.answered()
        return reply

    async def _read(self, response) -> bytes:
        """The body, at most MAX_RESPONSE_BYTES (a bigger one is a ModelCallError)."""
        if response.content_length is not None and response.content_length <= MAX_RESPONSE_BYTES:
            return await response.read()
        chunks, size = [], 0
        while chunk := await response.content.read(1 << 16):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ModelCallError(
                    f"{self.name}: the response from {public_url(self.api_base)} is larger than "
                    f"{MAX_RESPONSE_BYTES:,} bytes; check --api-base"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _reply(self, raw: bytes, request: ModelRequest) -> ModelReply:
        try:
            payload = json.loads(raw)
        except ValueError:
            raise TransientModelError(
                f"{self.name}: provider unavailable at {public_url(self.api_base)} "
                "(malformed response: the body is not JSON)"
            ) from None
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise TransientModelError(f"{self.name}: the provider returned a response without choices")
        reply = fill_reply_metadata(ModelReply(), payload, choices[0])
        reply.text = reply_text(choices[0].get("message"), request.mode)
        if request.mode == "probs":
            top = top_logprobs(choices[0])
            if not top:
                raise self._no_logprobs_error()
            reply.extra["top_logprobs"] = [[token, float(logprob)] for token, logprob in top]
            reply.choice_logprobs = map_top_logprobs(top, request.choices)
        return reply

    def _no_logprobs_error(self) -> ModelCallError:
        return EndpointCallError(
            f"{self.name}: the provider gives no log-probabilities, so probs mode cannot score the options; "
            "use text mode (--mode text) for this model"
        )

    async def aclose(self) -> None:
        """Close the session (and its connections) if it belongs to the running loop; forget it anyway."""
        pool, self._pool, self._pool_loop = self._pool, None, None
        if pool is not None:
            pool.close()
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                if self._session_loop is asyncio.get_running_loop():
                    await session.close()
            except RuntimeError:
                pass
        self._session_loop = None

    # -- errors -----------------------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        secrets = _nested_secret_values(self.extra_params)
        secrets += [v for k, v in self.extra_headers.items() if is_secret_name(k)]
        key = os.environ.get(KEY_VARIABLE)
        if key:
            secrets.append(key)
        parts = urlsplit(self.api_base)
        secrets += [s for s in (parts.username, parts.password) if s]
        if self._basic_auth:
            secrets.append(self._basic_auth.split(" ", 1)[1])
        return secrets

    def _transport_detail(self, exc: BaseException) -> str:
        """What went wrong below HTTP, in the same words as the litellm backend."""
        import aiohttp

        if isinstance(exc, aiohttp.ClientPayloadError):
            return "truncated response: the connection closed before the whole body arrived"
        if isinstance(exc, aiohttp.ServerDisconnectedError) or isinstance(
            getattr(exc, "os_error", exc), ConnectionResetError
        ) or isinstance(exc.__cause__, ConnectionResetError):
            return "connection reset by the server"
        detail = scrub(f"{type(exc).__name__}: {exc}", self._secrets())
        return f"connection error: {detail[:200]}"

    def _http_error(self, status: int, headers: Mapping[str, str], raw: bytes, request: ModelRequest) -> Exception:
        """A non-200 answer as TransientModelError (worth retrying) or ModelCallError (not)."""
        detail, code = _error_detail(raw, self._secrets())
        where = f" at {public_url(self.api_base)}"
        if status == 401:
            hint = (f"check the key in {KEY_VARIABLE}" if os.environ.get(KEY_VARIABLE)
                    else f"set {KEY_VARIABLE} in the environment")
            return EndpointCallError(f"{self.name}: authentication failed{where} ({detail}); {hint}")
        if status == 429:
            retry_after = parse_retry_after(headers)
            wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            return TransientModelError(f"{self.name}: rate limited (HTTP 429){wait}: {detail}", retry_after)
        if request.mode == "probs" and status in (400, 422, 500, 501) and "logprob" in detail.lower():
            return self._no_logprobs_error()
        if status == 403:
            return EndpointCallError(f"{self.name}: permission denied{where} ({detail}); check that the key may use this model")
        if status == 404:
            hint = missing_version_hint(self.api_base)
            if hint:
                return EndpointCallError(f"{self.name}: no chat completions{where} (HTTP 404: {detail}){hint}")
            return EndpointCallError(
                f"{self.name}: model not found{where} ({detail}); check the model name ({self.served_name}) and --api-base"
            )
        if status == 405:
            return EndpointCallError(f"{self.name}: {self.url} does not take chat completions (HTTP 405: {detail}); "
                                     "check --api-base" + missing_version_hint(self.api_base))
        if status in (400, 422, 500, 501) and NOT_SUPPORTED.search(detail):
            return EndpointCallError(f"{self.name}: the server{where} does not support what this run asks "
                                     f"(HTTP {status}: {detail}); change the option it names, or use another server")
        if status == 400 and (code == "context_length_exceeded" or "context length" in detail.lower()):
            return ModelCallError(f"{self.name}: the prompt is longer than the model's context window ({detail})")
        if status in (408, 409, 425) or status >= 500:
            return TransientModelError(f"{self.name}: provider unavailable{where} (HTTP {status}): {detail}",
                                       parse_retry_after(headers))
        return ModelCallError(f"{self.name}: the provider rejected the request (HTTP {status}): {detail}")
