"""OpenAI's batch API (``/v1/files`` + ``/v1/batches``), also served by OpenAI-compatible servers.

The input is a JSONL file, one ``POST /v1/chat/completions`` per line with the psytest request id as its
``custom_id`` and exactly the body the direct backend would send (:meth:`OpenAIHTTPBackend.request_body`),
uploaded with ``purpose=batch`` under the file name ``psytest-<submission>.jsonl``; the batch is created
with ``metadata.psytest_submission = <submission>``. Both names let a run killed between a call and its
answer find the file or batch it created (:meth:`find_upload`, :meth:`find_batch`) instead of making
another. Results come from the output file and the error file; each line is read as the direct backend
reads a response (same token, finish-reason, served-model and fingerprint fields; same errors).
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit, urlunsplit

from psychometrics.batch.http import BatchAPIError, BatchHTTP
from psychometrics.batch.results import BatchState, LineResult, as_object
from psychometrics.models.base import InvalidReplyError, TransientModelError
from psychometrics.models.openai_http import OpenAIHTTPBackend

DEFAULT_BASE = "https://api.openai.com/v1"
ENDED = ("completed", "expired", "cancelled", "failed")
MAX_REQUESTS = 50_000  # OpenAI's limit per batch
MAX_FILE_BYTES = 190 << 20  # under OpenAI's 200 MB per input file
CHAT_PATH = "/v1/chat/completions"


class OpenAIBatches:
    """The batch API at ``api_base`` for ``openai/NAME`` (``helper``: the direct backend, for bodies and replies)."""

    provider = "openai"
    needs_upload = True
    max_requests = MAX_REQUESTS
    max_bytes = MAX_FILE_BYTES

    def __init__(self, helper: OpenAIHTTPBackend, retry):
        self.helper = helper
        parts = urlsplit(helper.url)
        base = urlunsplit((parts.scheme, parts.netloc, parts.path[: -len("/chat/completions")], "", ""))
        self.endpoint = base
        headers = {k: v for k, v in helper._headers().items() if k.lower() != "content-type"}
        secrets = helper._secrets()
        self.http = BatchHTTP(base, headers, secrets=secrets, retry=retry)

    @classmethod
    def for_backend(cls, backend, retry) -> "OpenAIBatches":
        helper = backend if isinstance(backend, OpenAIHTTPBackend) else OpenAIHTTPBackend(
            backend.name, api_base=getattr(backend, "api_base", None) or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE)
        return cls(helper, retry)

    def line(self, planned) -> bytes:
        body = {"custom_id": planned.request_id, "method": "POST", "url": CHAT_PATH,
                "body": self.helper.request_body(planned.request)}
        return json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n"

    async def upload(self, submission: str, lines: list[bytes]) -> str:
        import aiohttp

        data = b"".join(lines)

        def form():
            form = aiohttp.FormData()
            form.add_field("purpose", "batch")
            form.add_field("file", data, filename=f"psytest-{submission}.jsonl", content_type="application/jsonl")
            return form

        answer = await self.http.json("POST", "/files", data=form)
        return _id(answer, "the file upload", self.http.where("/files"))

    async def find_upload(self, submission: str) -> str | None:
        answer = await self.http.json("GET", "/files", params={"purpose": "batch"})
        for entry in answer.get("data") or []:
            if isinstance(entry, dict) and entry.get("filename") == f"psytest-{submission}.jsonl" and entry.get("id"):
                return str(entry["id"])
        return None

    async def create(self, submission: str, file_id: str) -> str:
        answer = await self.http.json("POST", "/batches", body={
            "input_file_id": file_id, "endpoint": CHAT_PATH, "completion_window": "24h",
            "metadata": {"psytest_submission": submission}}, retry=False)
        return _id(answer, "the batch creation", self.http.where("/batches"))

    async def find_batch(self, submission: str, known: set[str]) -> str | None:
        """The batch created for ``submission`` (by its metadata), looking through every page of batches."""
        after = None
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            answer = await self.http.json("GET", "/batches", params=params)
            data = [e for e in answer.get("data") or [] if isinstance(e, dict)]
            for entry in data:
                metadata = as_object(entry.get("metadata"))
                if metadata.get("psytest_submission") == submission and entry.get("id"):
                    return str(entry["id"])
            if not answer.get("has_more") or not data:
                return None
            after = str(data[-1].get("id"))

    async def status(self, batch_id: str) -> BatchState:
        answer = await self.http.json("GET", f"/batches/{batch_id}")
        status = str(answer.get("status") or "unknown")
        if status not in ENDED:
            return BatchState(False, status)
        error = None
        if status == "failed":
            errors = as_object(answer.get("errors")).get("data")
            messages = [str(e.get("message")) for e in (errors if isinstance(errors, list) else [])
                        if isinstance(e, dict) and e.get("message")]
            error = "; ".join(messages[:3]) or "the provider gave no reason"
        paths = tuple(f"/files/{answer[key]}/content" for key in ("output_file_id", "error_file_id") if answer.get(key))
        return BatchState(True, status, error, paths)

    def read(self, raw: bytes, requests: dict) -> LineResult | None:
        """One output or error line as a :class:`LineResult`; None when it is not a line of this run."""
        try:
            entry = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(entry, dict) or str(entry.get("custom_id")) not in requests:
            return None
        custom_id = str(entry["custom_id"])
        request = requests[custom_id].request
        response = as_object(entry.get("response"))
        if not response:
            error = as_object(entry.get("error"))
            code, message = str(error.get("code") or "no result"), str(error.get("message") or "")
            return LineResult(custom_id, error=TransientModelError(f"batch line not run ({code}): {message}"[:500]),
                              retryable=True)
        status = response.get("status_code")
        body = json.dumps(response.get("body")).encode("utf-8")
        try:
            if status != 200:
                raise self.helper._http_error(int(status) if isinstance(status, int) else 500, {}, body, request)
            return LineResult(custom_id, reply=self.helper._reply(body, request).cleaned())
        except TransientModelError as exc:
            return LineResult(custom_id, error=exc, retryable=True)
        except (InvalidReplyError, BatchAPIError, ValueError) as exc:
            return LineResult(custom_id, error=exc, retryable=False)

    async def aclose(self) -> None:
        await self.http.aclose()


def _id(answer: dict, what: str, where: str) -> str:
    if not answer.get("id"):
        raise BatchAPIError(f"{where}: {what} was answered without an id; check --api-base")
    return str(answer["id"])
