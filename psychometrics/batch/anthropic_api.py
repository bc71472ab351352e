"""Anthropic's message batches (``/v1/messages/batches``) for ``anthropic/NAME`` models, in text mode.

Each request is ``{"custom_id": <request id>, "params": <a Messages API body>}``: the system messages
joined as ``system``, the other turns as ``messages``, with ``max_tokens`` and ``temperature`` (Anthropic
takes no seed). The key comes only from ``ANTHROPIC_API_KEY`` (header ``x-api-key``). Log-probabilities
do not exist there, so probs mode is refused before anything is sent.

A message batch carries no metadata, so a run killed between creating a batch and hearing its id finds
it again by what it can see: a batch created after the submission was recorded, with the same number
of requests, that no other submission of the run holds (:meth:`AnthropicBatches.find_batch`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os

from psychometrics.batch.http import BatchAPIError, BatchHTTP
from psychometrics.batch.results import BatchState, LineResult, as_object
from psychometrics.errors import PsytestError
from psychometrics.models.base import ModelReply, TransientModelError
from psychometrics.models.litellm_backend import ModelCallError, check_api_base

KEY_VARIABLE = "ANTHROPIC_API_KEY"
DEFAULT_BASE = "https://api.anthropic.com"
VERSION = "2023-06-01"
MAX_REQUESTS = 100_000
MAX_BYTES = 200 << 20  # under Anthropic's 256 MB per batch
PREFIX = "anthropic/"
#: Anthropic's stop reasons in the words psytest stores (OpenAI's): a reply cut at max_tokens is ``length``.
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


class AnthropicBatches:
    provider = "anthropic"
    needs_upload = False
    max_requests = MAX_REQUESTS
    max_bytes = MAX_BYTES

    def __init__(self, model: str, api_base: str | None, retry):
        self.model = model[len(PREFIX):]
        base = (api_base or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE).rstrip("/")
        check_api_base(base)
        base = base[: -len("/v1")] if base.endswith("/v1") else base
        key = os.environ.get(KEY_VARIABLE, "").strip()
        headers = {"anthropic-version": VERSION, **({"x-api-key": key} if key else {})}
        self.endpoint = base
        self.http = BatchHTTP(base + "/v1", headers, secrets=[key], retry=retry)

    @classmethod
    def for_backend(cls, backend, retry) -> "AnthropicBatches":
        return cls(backend.name, getattr(backend, "api_base", None), retry)

    def check(self, planned: list) -> None:
        if any(p.request.mode != "text" for p in planned):
            raise PsytestError("--batch: Anthropic gives no log-probabilities, so probs mode cannot be batched "
                               "for an anthropic/ model; use --mode text")

    def params(self, request) -> dict:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        params = {"model": self.model, "max_tokens": request.max_tokens, "temperature": request.temperature,
                  "messages": [{"role": m.role, "content": m.content} for m in request.messages if m.role != "system"]}
        if system:
            params["system"] = system
        return params

    def line(self, planned) -> bytes:
        return json.dumps({"custom_id": planned.request_id, "params": self.params(planned.request)},
                          ensure_ascii=False).encode("utf-8")

    async def create(self, submission: str, lines: list[bytes]) -> str:
        answer = await self.http.json("POST", "/messages/batches", body={"requests": [json.loads(line) for line in lines]},
                                     retry=False)
        if not answer.get("id"):
            raise BatchAPIError(f"{self.http.where('/messages/batches')}: the batch was created without an id")
        return str(answer["id"])

    async def find_batch(self, submission: str, known: set[str], since: float, count: int) -> str | None:
        after = None
        while True:
            answer = await self.http.json("GET", "/messages/batches",
                                          params={"limit": "100", **({"after_id": after} if after else {})})
            data = [e for e in answer.get("data") or [] if isinstance(e, dict)]
            for entry in data:
                counts = as_object(entry.get("request_counts"))
                total = sum(int(v) for v in counts.values() if isinstance(v, int))
                created = _timestamp(entry.get("created_at"))
                if (entry.get("id") and str(entry["id"]) not in known and total == count
                        and created is not None and created >= since - 5):
                    return str(entry["id"])
            if not answer.get("has_more") or not data:
                return None
            after = str(data[-1].get("id"))

    async def status(self, batch_id: str) -> BatchState:
        answer = await self.http.json("GET", f"/messages/batches/{batch_id}")
        status = str(answer.get("processing_status") or "unknown")
        if status != "ended":
            return BatchState(False, status)
        return BatchState(True, status, None, (f"/messages/batches/{batch_id}/results",))

    def read(self, raw: bytes, requests: dict) -> LineResult | None:
        try:
            entry = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(entry, dict) or str(entry.get("custom_id")) not in requests:
            return None
        custom_id = str(entry["custom_id"])
        result = as_object(entry.get("result"))
        kind = result.get("type")
        message = as_object(result.get("message"))
        if kind == "succeeded" and message:
            try:
                return LineResult(custom_id, reply=_reply(message).cleaned())
            except (ValueError, TypeError) as exc:
                return LineResult(custom_id, error=exc, retryable=False)
        if kind == "errored":
            error = as_object(result.get("error"))
            inner = as_object(error.get("error")) or error
            kind_, detail = str(inner.get("type") or "error"), str(inner.get("message") or "")
            if kind_ == "invalid_request_error":
                return LineResult(custom_id, error=ModelCallError(f"{self.model}: the provider rejected the request "
                                                                  f"({detail[:200]})"), retryable=False)
            return LineResult(custom_id, error=TransientModelError(f"{kind_}: {detail[:200]}"), retryable=True)
        return LineResult(custom_id, error=TransientModelError(f"batch line not run ({kind or 'no result'})"),
                          retryable=True)

    async def aclose(self) -> None:
        await self.http.aclose()


def _reply(message: dict) -> ModelReply:
    """A Messages API response as a :class:`ModelReply` (input tokens include those read from the cache)."""
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    text = "".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    usage = as_object(message.get("usage"))
    counts = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    cached = counts.get("cache_read_input_tokens")
    inputs = None
    if "input_tokens" in counts:
        inputs = counts["input_tokens"] + (cached or 0) + counts.get("cache_creation_input_tokens", 0)
    stop = message.get("stop_reason")
    return ModelReply(text=text, input_tokens=inputs, output_tokens=counts.get("output_tokens"),
                      finish_reason=FINISH_REASONS.get(stop, stop) if isinstance(stop, str) else None,
                      served_model=message.get("model") if isinstance(message.get("model"), str) else None,
                      cached_input_tokens=cached)


def _timestamp(value) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
