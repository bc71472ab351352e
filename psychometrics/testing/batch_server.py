"""A loopback server of the providers' batch APIs, answering from any psytest backend, for tests of ``--batch``.

Why: a batch run is paid once and waits up to a day, so what must be tested is what happens around
the answers: a client killed after uploading, after creating a batch, half-way through its results;
batches that expire with part of their work done, fail validation, or carry per-request errors. This
server plays both providers on one port, counts every submission, and can hold any step until the
test releases it, so a test stops the client at a point it knows (an event, never a clock).

Routes (``/v1`` prefix):

* OpenAI-compatible: ``POST /files`` (multipart, ``purpose=batch``), ``GET /files``, ``GET /files/{id}/content``,
  ``POST /batches`` (``input_file_id``, ``endpoint``, ``completion_window``, ``metadata``), ``GET /batches``
  (paged with ``after`` and ``limit``), ``GET /batches/{id}``, ``POST /batches/{id}/cancel``.
* Anthropic message batches: ``POST /messages/batches`` (``requests``: ``custom_id`` + ``params``),
  ``GET /messages/batches`` (paged with ``after_id``), ``GET /messages/batches/{id}``,
  ``GET /messages/batches/{id}/results``.

A batch's lines are answered when it is created (text or log-probabilities, as
:mod:`psychometrics.testing.openai_server` answers one request), and it reports itself finished at the
``polls_to_finish``-th status request. Knobs (:class:`BatchServerConfig`):

``polls_to_finish``  status requests a batch answers as in progress before it has ended
``expire``           creation ordinals (0 = the first batch created) of batches that expire: only the
                     first ``expire_keep`` of their lines have results, the rest are reported expired
``fail``             creation ordinals of batches that fail validation (no results at all)
``line_error_every`` every k-th line of a batch (k, 2k, ...) gets a per-line error with
                     ``line_error_status`` (500: transient, 400: a rejected request), on the first
                     submission of its ``custom_id`` only, so that a resubmission succeeds
``hold``             steps held, the first time each is reached, until :meth:`BatchServer.release`:
                     ``upload`` (the file is stored, the answer held), ``create`` (received, nothing
                     created), ``created`` (the batch exists, the answer held), ``poll`` (a status
                     request), ``results`` (after ``hold_results_after`` lines of a result file are sent).
                     ``release(drop=True)`` ends held requests without going on (a 503, or the result
                     stream cut), as for a client that was killed meanwhile.

``api_key``          every call without ``Authorization: Bearer <api_key>`` or ``x-api-key: <api_key>`` gets a 401
                     whose message echoes the key it was given (as careless servers do)
``rewrite_lines``    a function of a finished batch's result lines (dicts) returning the lines to serve:
                     hostile results (unknown or repeated custom ids, broken JSON as a ``str`` line)

Counters: ``uploads``, ``batches_created``, ``submissions`` (a ``Counter`` of custom ids over every created
batch), ``status_polls``, ``result_downloads``; :meth:`BatchServer.reached` tells whether a held step was hit.
Loopback addresses only; request bodies up to ``max_body_bytes``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from psychometrics.models.base import Message, ModelBackend, ModelRequest
from psychometrics.testing.openai_server import DEFAULT_MODEL, _loopback_host, build_request, error_body, infer_choices

HOLD_STEPS = ("upload", "create", "created", "poll", "results")


@dataclass(frozen=True)
class BatchServerConfig:
    """How the server behaves; see the module docstring."""

    polls_to_finish: int = 1
    expire: frozenset[int] = frozenset()
    expire_keep: int = 1
    fail: frozenset[int] = frozenset()
    line_error_every: int = 0
    line_error_status: int = 500
    hold: frozenset[str] = frozenset()
    hold_results_after: int = 0
    max_body_bytes: int = 64 << 20
    api_key: str | None = None
    rewrite_lines: Callable[[list], list] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.hold) - set(HOLD_STEPS)
        if unknown:
            raise ValueError(f"unknown hold steps {sorted(unknown)}; choose from {', '.join(HOLD_STEPS)}")
        if self.polls_to_finish < 1 or self.line_error_every < 0 or self.expire_keep < 0:
            raise ValueError("polls_to_finish must be at least 1; line_error_every and expire_keep not negative")


@dataclass
class _Batch:
    id: str
    kind: str  # "openai" or "anthropic"
    ordinal: int
    created_at: float
    lines: list[dict]  # OpenAI: output/error lines; Anthropic: result lines
    metadata: dict = field(default_factory=dict)
    input_file_id: str | None = None
    endpoint: str = "/v1/chat/completions"
    polls: int = 0
    outcome: str = "completed"  # completed, expired, failed
    cancelled: bool = False

    @property
    def ended(self) -> bool:
        return self.cancelled or self.polls >= self._polls_needed

    _polls_needed: int = 1


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat().replace("+00:00", "Z")


class BatchServer:
    """A running server (``base_url``, ``stop()``, ``release()``, counters; a context manager). One
    asyncio loop in a background thread serves every request and runs the backend."""

    def __init__(self, backend: ModelBackend, config: BatchServerConfig, host: str = "127.0.0.1", port: int = 0):
        self.backend = backend
        self.config = config
        self.files: dict[str, dict] = {}
        self.batches: dict[str, _Batch] = {}
        self.uploads = 0
        self.batches_created = 0
        self.submissions: Counter[str] = Counter()
        self.status_polls = 0
        self.result_downloads = 0
        self.lines_sent = 0
        self._reached: set[str] = set()
        self._drop = False
        self._lock = threading.Lock()
        self.host, _ = _loopback_host(host)
        self._loop = asyncio.new_event_loop()
        self._released: Any = None  # an asyncio.Event of the server's loop

        from aiohttp import web

        @web.middleware
        async def check_key(request, handler):
            return await self._check_key_impl(request, handler)

        self._check_key = check_key
        self._runner: Any = None
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self.port = self._loop.run_until_complete(self._start(port))
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="batch-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]

    async def _start(self, port: int) -> int:
        from aiohttp import web

        self._released = asyncio.Event()
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[self._check_key])
        app.add_routes([
            web.post("/v1/files", self._upload), web.get("/v1/files", self._list_files),
            web.get("/v1/files/{id}/content", self._file_content),
            web.post("/v1/batches", self._create_openai), web.get("/v1/batches", self._list_openai),
            web.get("/v1/batches/{id}", self._get_openai), web.post("/v1/batches/{id}/cancel", self._cancel),
            web.post("/v1/messages/batches", self._create_anthropic),
            web.get("/v1/messages/batches", self._list_anthropic),
            web.get("/v1/messages/batches/{id}", self._get_anthropic),
            web.get("/v1/messages/batches/{id}/results", self._anthropic_results),
        ])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        return int(self._runner.addresses[0][1])

    @staticmethod
    def _key_given(request) -> str:
        return request.headers.get("x-api-key") or request.headers.get("Authorization", "").removeprefix("Bearer ")

    async def _check_key_impl(self, request, handler):
        from aiohttp import web

        expected = self.config.api_key
        if expected is not None and self._key_given(request) != expected:
            return web.json_response(error_body(f"Incorrect API key provided: {self._key_given(request)}.",
                                                "invalid_request_error", "invalid_api_key"), status=401)
        return await handler(request)

    # -- the handle -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (``.../v1``); Anthropic clients use it without ``/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reached(self, step: str) -> bool:
        """Whether a held step (``hold``) has been reached."""
        with self._lock:
            return step in self._reached

    def release(self, drop: bool = False) -> None:
        """Let every held step go on; with ``drop``, end the held requests instead (nothing more done)."""
        self._drop = drop
        self._loop.call_soon_threadsafe(self._released.set)

    def submitted_twice(self) -> list[str]:
        """Custom ids that were in more than one created batch."""
        with self._lock:
            return sorted(k for k, n in self.submissions.items() if n > 1)

    def stop(self) -> None:
        if not self._loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    async def _stop(self) -> None:
        self._released.set()
        await self._runner.cleanup()
        await self.backend.aclose()

    def __enter__(self) -> "BatchServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _hold(self, step: str) -> bool:
        """Hold ``step`` the first time it is reached (see ``hold``); whether the held request is dropped."""
        with self._lock:
            if step not in self.config.hold or step in self._reached or self._released.is_set():
                return False
            self._reached.add(step)
        await self._released.wait()
        return self._drop

    def _dropped(self):
        from aiohttp import web

        return web.json_response(error_body("dropped", "server_error"), status=503)

    # -- answering one request ----------------------------------------------------------------------
    async def _answer_openai(self, body: dict) -> tuple[int, dict]:
        from psychometrics.testing.openai_server import completion_body, probs_logprobs, MAX_TOP_LOGPROBS

        try:
            request = build_request(body)
        except (ValueError, TypeError) as exc:
            return 400, error_body(str(exc), "invalid_request_error")
        reply = await self.backend.complete(request)
        words = sum(len(m.content.split()) for m in request.messages)
        if request.mode == "probs":
            content, logprobs = probs_logprobs(reply, max(0, min(int(body.get("top_logprobs") or 0), MAX_TOP_LOGPROBS)))
        else:
            content, logprobs = reply.text or "", None
        return 200, completion_body(str(body.get("model", "")), content, logprobs,
                                    (words, max(1, len(content.split()))))

    async def _answer_anthropic(self, params: dict) -> dict:
        messages = [Message("system", str(params.get("system")))] if params.get("system") else []
        for entry in params.get("messages") or []:
            content = entry.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            messages.append(Message(entry.get("role", "user"), str(content)))
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        request = ModelRequest(messages=tuple(messages), choices=infer_choices(last_user), mode="text",
                               temperature=float(params.get("temperature", 1.0)),
                               max_tokens=int(params.get("max_tokens") or 16))
        reply = await self.backend.complete(request)
        text = reply.text or ""
        return {"id": f"msg_{uuid.uuid4().hex[:20]}", "type": "message", "role": "assistant",
                "model": str(params.get("model", "")), "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": sum(len(m.content.split()) for m in messages),
                          "output_tokens": max(1, len(text.split())), "cache_read_input_tokens": 0}}

    def _new_batch(self, kind: str, custom_ids: list[str]) -> tuple[int, bool]:
        """Count a created batch; (its creation ordinal, whether it fails validation)."""
        with self._lock:
            ordinal = self.batches_created
            self.batches_created += 1
            self.submissions.update(custom_ids)
        return ordinal, ordinal in self.config.fail

    def _line_fails(self, index: int, custom_id: str) -> bool:
        every = self.config.line_error_every
        with self._lock:
            first = self.submissions[custom_id] == 1
        return bool(every) and first and (index + 1) % every == 0

    # -- OpenAI files and batches -------------------------------------------------------------------
    async def _upload(self, request):
        from aiohttp import web

        form = await request.post()
        upload = form.get("file")
        if form.get("purpose") != "batch" or upload is None or not hasattr(upload, "file"):
            return web.json_response(error_body("purpose=batch and a file are required", "invalid_request_error"),
                                     status=400)
        data = upload.file.read()
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        with self._lock:
            self.uploads += 1
            self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(_now()),
                                   "filename": upload.filename, "purpose": "batch", "data": data}
        if await self._hold("upload"):
            return self._dropped()
        return web.json_response(self._file_object(file_id))

    def _file_object(self, file_id: str) -> dict:
        return {k: v for k, v in self.files[file_id].items() if k != "data"}

    async def _list_files(self, request):
        from aiohttp import web

        purpose = request.query.get("purpose")
        data = [self._file_object(f) for f, v in self.files.items() if purpose in (None, v["purpose"])]
        return web.json_response({"object": "list", "data": data[::-1], "has_more": False})

    async def _file_content(self, request):
        from aiohttp import web

        entry = self.files.get(request.match_info["id"])
        if entry is None:
            return web.json_response(error_body("no such file", "invalid_request_error"), status=404)
        if entry["purpose"] != "batch_output":
            return web.Response(body=entry["data"], content_type="application/jsonl")
        return await self._stream_lines(request, entry["data"].splitlines(keepends=True))

    async def _stream_lines(self, request, lines: list[bytes]):
        """Send ``lines`` in pieces as they are ready; the ``results`` hold stops after ``hold_results_after``."""
        from aiohttp import web

        with self._lock:
            self.result_downloads += 1
        response = web.StreamResponse(headers={"Content-Type": "application/jsonl"})
        await response.prepare(request)
        for index, line in enumerate(lines):
            if index == self.config.hold_results_after and index and await self._hold("results"):
                if request.transport is not None:
                    request.transport.abort()  # the stream cut, as a dead client's
                return response
            await response.write(line)
            with self._lock:
                self.lines_sent += 1
        await response.write_eof()
        return response

    async def _create_openai(self, request):
        from aiohttp import web

        body = await request.json()
        if await self._hold("create"):
            return self._dropped()
        entry = self.files.get(str(body.get("input_file_id")))
        if entry is None:
            return web.json_response(error_body("input_file_id: no such file", "invalid_request_error"), status=400)
        if body.get("endpoint") != "/v1/chat/completions":
            return web.json_response(error_body("endpoint must be /v1/chat/completions", "invalid_request_error"),
                                     status=400)
        lines = [json.loads(line) for line in entry["data"].splitlines() if line.strip()]
        ordinal, fails = self._new_batch("openai", [str(line.get("custom_id")) for line in lines])
        batch = _Batch(f"batch_{uuid.uuid4().hex[:24]}", "openai", ordinal, _now(), [],
                       metadata=dict(body.get("metadata") or {}), input_file_id=entry["id"])
        batch._polls_needed = self.config.polls_to_finish
        if fails:
            batch.outcome = "failed"
        else:
            expired = ordinal in self.config.expire
            for index, line in enumerate(lines):
                custom_id = str(line.get("custom_id"))
                if expired and index >= self.config.expire_keep:
                    batch.outcome = "expired"
                    batch.lines.append({"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": custom_id,
                                        "response": None, "error": {"code": "batch_expired",
                                                                    "message": "This request could not be executed "
                                                                               "before the completion window expired."}})
                    continue
                if self._line_fails(index, custom_id):
                    status, payload = self.config.line_error_status, error_body("injected per-line error",
                                                                                "server_error")
                else:
                    status, payload = await self._answer_openai(line.get("body") or {})
                batch.lines.append({"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": custom_id,
                                    "response": {"status_code": status, "request_id": uuid.uuid4().hex,
                                                 "body": payload}, "error": None})
        self.batches[batch.id] = batch
        if await self._hold("created"):
            return self._dropped()
        return web.json_response(self._openai_object(batch, count=False))

    def _openai_object(self, batch: _Batch, *, count: bool = True) -> dict:
        if count:
            batch.polls += 1
        status = "in_progress" if not batch.ended else ("cancelled" if batch.cancelled else batch.outcome)
        output_id = error_id = None
        if batch.ended and batch.outcome != "failed":
            output_id, error_id = self._output_files(batch)
        ok = sum(1 for line in batch.lines if line["response"] and line["response"]["status_code"] == 200)
        return {"id": batch.id, "object": "batch", "endpoint": batch.endpoint,
                "errors": ({"object": "list", "data": [{"code": "invalid_request", "message": "injected "
                           "validation failure", "param": None, "line": 1}]} if batch.outcome == "failed" else None),
                "input_file_id": batch.input_file_id, "completion_window": "24h", "status": status,
                "output_file_id": output_id, "error_file_id": error_id, "created_at": int(batch.created_at),
                "request_counts": {"total": len(batch.lines), "completed": ok if batch.ended else 0,
                                   "failed": len(batch.lines) - ok if batch.ended else 0},
                "metadata": batch.metadata}

    def _output_files(self, batch: _Batch) -> tuple[str | None, str | None]:
        key = f"{batch.id}:files"
        if key not in self.files:
            served = self._served(batch)
            good = [line for line in served
                    if not isinstance(line, dict) or (line.get("response") or {}).get("status_code") == 200]
            bad = [line for line in served if line not in good]
            ids: list[str | None] = []
            for lines in (good, bad):
                if not lines:
                    ids.append(None)
                    continue
                file_id = f"file-{uuid.uuid4().hex[:24]}"
                data = b"".join(_encode(line) for line in lines)
                self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(_now()),
                                       "filename": f"{batch.id}_output.jsonl", "purpose": "batch_output", "data": data}
                ids.append(file_id)
            self.files[key] = {"purpose": "index", "ids": ids}
        return tuple(self.files[key]["ids"])

    async def _get_openai(self, request):
        from aiohttp import web

        batch = self.batches.get(request.match_info["id"])
        if batch is None or batch.kind != "openai":
            return web.json_response(error_body("no such batch", "invalid_request_error"), status=404)
        with self._lock:
            self.status_polls += 1
        if await self._hold("poll"):
            return self._dropped()
        return web.json_response(self._openai_object(batch))

    async def _list_openai(self, request):
        from aiohttp import web

        items = [b for b in self.batches.values() if b.kind == "openai"][::-1]  # newest first
        after = request.query.get("after")
        if after:
            ids = [b.id for b in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        limit = int(request.query.get("limit", 20))
        page = items[:limit]
        return web.json_response({"object": "list", "data": [self._openai_object(b, count=False) for b in page],
                                  "has_more": len(items) > limit,
                                  "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None})

    async def _cancel(self, request):
        from aiohttp import web

        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return web.json_response(error_body("no such batch", "invalid_request_error"), status=404)
        batch.cancelled = True
        return web.json_response(self._openai_object(batch, count=False))

    # -- Anthropic message batches ------------------------------------------------------------------
    async def _create_anthropic(self, request):
        from aiohttp import web

        body = await request.json()
        if await self._hold("create"):
            return self._dropped()
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return web.json_response({"type": "error", "error": {"type": "invalid_request_error",
                                                                 "message": "requests: a non-empty list"}}, status=400)
        ordinal, fails = self._new_batch("anthropic", [str(r.get("custom_id")) for r in requests])
        batch = _Batch(f"msgbatch_{uuid.uuid4().hex[:24]}", "anthropic", ordinal, _now(), [])
        batch._polls_needed = self.config.polls_to_finish
        expired = ordinal in self.config.expire
        for index, entry in enumerate(requests):
            custom_id = str(entry.get("custom_id"))
            if fails or (expired and index >= self.config.expire_keep):
                result = {"type": "expired"}
                batch.outcome = "expired"
            elif self._line_fails(index, custom_id):
                kind = "api_error" if self.config.line_error_status >= 500 else "invalid_request_error"
                result = {"type": "errored", "error": {"type": "error", "error": {"type": kind,
                                                                                  "message": "injected per-line error"}}}
            else:
                result = {"type": "succeeded", "message": await self._answer_anthropic(entry.get("params") or {})}
            batch.lines.append({"custom_id": custom_id, "result": result})
        self.batches[batch.id] = batch
        if await self._hold("created"):
            return self._dropped()
        return web.json_response(self._anthropic_object(batch, count=False))

    def _anthropic_object(self, batch: _Batch, *, count: bool = True) -> dict:
        if count:
            batch.polls += 1
        counts = Counter(line["result"]["type"] for line in batch.lines) if batch.ended else Counter()
        return {"id": batch.id, "type": "message_batch",
                "processing_status": "ended" if batch.ended else "in_progress",
                "request_counts": {"processing": 0 if batch.ended else len(batch.lines),
                                   "succeeded": counts["succeeded"], "errored": counts["errored"],
                                   "canceled": counts["canceled"], "expired": counts["expired"]},
                "created_at": _iso(batch.created_at), "ended_at": _iso(_now()) if batch.ended else None,
                "expires_at": _iso(batch.created_at + 86400), "cancel_initiated_at": None,
                "results_url": f"{self.root_url}/v1/messages/batches/{batch.id}/results" if batch.ended else None}

    async def _get_anthropic(self, request):
        from aiohttp import web

        batch = self.batches.get(request.match_info["id"])
        if batch is None or batch.kind != "anthropic":
            return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": "no such batch"}},
                                     status=404)
        with self._lock:
            self.status_polls += 1
        if await self._hold("poll"):
            return self._dropped()
        return web.json_response(self._anthropic_object(batch))

    async def _list_anthropic(self, request):
        from aiohttp import web

        items = [b for b in self.batches.values() if b.kind == "anthropic"][::-1]
        after = request.query.get("after_id")
        if after:
            ids = [b.id for b in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        limit = int(request.query.get("limit", 20))
        page = items[:limit]
        return web.json_response({"data": [self._anthropic_object(b, count=False) for b in page],
                                  "has_more": len(items) > limit,
                                  "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None})

    async def _anthropic_results(self, request):
        from aiohttp import web

        batch = self.batches.get(request.match_info["id"])
        if batch is None or not batch.ended:
            return web.json_response({"type": "error", "error": {"type": "not_found_error",
                                                                 "message": "no results (yet)"}}, status=404)
        return await self._stream_lines(request, [_encode(line) for line in self._served(batch)])

    def _served(self, batch: _Batch) -> list:
        """The result lines served for ``batch`` (``rewrite_lines`` applied)."""
        rewrite = self.config.rewrite_lines
        return rewrite(list(batch.lines)) if rewrite is not None else batch.lines


def _encode(line: Any) -> bytes:
    """A result line as served: a ``str`` as it is (broken JSON on purpose), anything else as one JSON line."""
    return (line if isinstance(line, str) else json.dumps(line)).encode("utf-8") + b"\n"


def _now() -> float:
    import time

    return time.time()


def start_batch_server(backend: ModelBackend | None = None, *, host: str = "127.0.0.1", port: int = 0,
                       **options: Any) -> BatchServer:
    """Start a batch server in a background thread (``port=0``: a free port); ``options`` are
    :class:`BatchServerConfig` fields (sets may be given as any iterable)."""
    if backend is None:
        from psychometrics.models.simulated import SimulatedRespondent

        backend = SimulatedRespondent(DEFAULT_MODEL)
    for name in ("expire", "fail", "hold"):
        if name in options:
            options[name] = frozenset(options[name])
    return BatchServer(backend, BatchServerConfig(**options), host, port)
