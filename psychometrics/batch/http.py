"""JSON over HTTP for the batch APIs: one aiohttp session, transient failures retried, the rest one line.

A batch API call is cheap and idempotent to retry except creating a batch, which psytest makes safe
another way (a created batch is found again by its submission key, :mod:`psychometrics.engine.batch`).
Rate limits, 5xx, 408/409/425, timeouts and dropped connections are retried with the run's
:class:`~psychometrics.engine.pool.RetryPolicy`; anything else raises :class:`BatchAPIError`, whose
message names the endpoint and says what to change. Keys travel in headers and never appear in errors.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any, AsyncIterator, Mapping

from psychometrics import limits
from psychometrics.errors import PsytestError
from psychometrics.models.litellm_backend import parse_retry_after, public_url, scrub

#: A status or list answer larger than this is refused (result files are streamed, not held).
MAX_JSON_BYTES = limits.SERVER_BODY_BYTES
TRANSIENT_STATUS = frozenset({408, 409, 425, 429})


class BatchAPIError(PsytestError):
    """The batch API refused a call for a reason retrying will not fix (key, endpoint, model, body)."""


class TransientBatchError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BatchHTTP:
    """Calls to one provider's batch API at ``base`` (a URL without trailing slash) with ``headers``.
    ``secrets`` are scrubbed from every error message."""

    def __init__(self, base: str, headers: Mapping[str, str], *, secrets: list[str], retry, timeout_s: float = 600.0):
        self.base = base.rstrip("/")
        self.headers = dict(headers)
        self.secrets = [s for s in secrets if s]
        self.retry = retry
        self.timeout_s = timeout_s
        self.retries = 0
        self._session = None
        self._jitter = random.Random()

    def url(self, path: str) -> str:
        return self.base + path

    def _session_now(self):
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=60,
                                                                               sock_read=self.timeout_s),
                                                  trust_env=True, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def pause(self, attempt: int, error: TransientBatchError) -> None:
        """Wait before the next try of a call retried by its caller (counted in :attr:`retries`)."""
        self.retries += 1
        await asyncio.sleep(self.retry.wait(attempt, error.retry_after, self._jitter))

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def where(self, path: str) -> str:
        return public_url(self.url(path)) or self.url(path)

    async def json(self, method: str, path: str, *, body: Any = None, data: Any = None,
                   params: Mapping[str, str] | None = None, retry: bool = True) -> dict:
        """The JSON object a call answers, retrying transient failures (see the module docstring); with
        ``retry=False`` a transient failure is raised as :class:`TransientBatchError` (for a call that
        may have taken effect, which the caller checks before trying again)."""
        for attempt in range(self.retry.max_retries + 1):
            try:
                return await self._once(method, path, body=body, data=data, params=params)
            except TransientBatchError as exc:
                if not retry:
                    raise
                if attempt == self.retry.max_retries:
                    raise BatchAPIError(f"the batch API at {self.where(path)} keeps failing ({exc}); the submitted "
                                        "batches are stored in the run: re-run the same command later to go on") from None
                self.retries += 1
                await asyncio.sleep(self.retry.wait(attempt, exc.retry_after, self._jitter))
        raise AssertionError("unreachable")

    async def _once(self, method: str, path: str, *, body: Any, data: Any, params) -> dict:
        import aiohttp

        headers = dict(self.headers)
        payload = None
        if body is not None:
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif data is not None:
            payload = data() if callable(data) else data  # a fresh multipart form per try
            headers.pop("Content-Type", None)
        try:
            async with self._session_now().request(method, self.url(path), data=payload, headers=headers,
                                                   params=params) as response:
                raw = await response.content.read(MAX_JSON_BYTES + 1)
                status, response_headers = response.status, response.headers
        except (asyncio.TimeoutError, TimeoutError):
            raise TransientBatchError(f"no answer within {self.timeout_s:g} s") from None
        except aiohttp.InvalidURL:
            raise BatchAPIError(f"--api-base: {self.where(path)} is not a usable URL") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientBatchError(f"connection error: {scrub(f'{type(exc).__name__}: {exc}', self.secrets)[:200]}") from None
        if len(raw) > MAX_JSON_BYTES:
            raise BatchAPIError(f"the answer of {self.where(path)} is larger than {MAX_JSON_BYTES:,} bytes; check --api-base")
        if not 200 <= status < 300:
            raise self._error(status, response_headers, raw, path)
        try:
            answer = json.loads(raw)
        except ValueError:
            raise TransientBatchError(f"{self.where(path)} answered with a body that is not JSON") from None
        if not isinstance(answer, dict):
            raise TransientBatchError(f"{self.where(path)} answered with JSON that is not an object")
        return answer

    def _error(self, status: int, headers, raw: bytes, path: str) -> Exception:
        detail = _detail(raw, self.secrets)
        if status in TRANSIENT_STATUS or status >= 500:
            return TransientBatchError(f"HTTP {status}: {detail}", parse_retry_after(headers))
        where = self.where(path)
        if status in (401, 403):
            return BatchAPIError(f"the batch API at {where} refused the key (HTTP {status}: {detail}); check the "
                                 "provider's key variable in the environment")
        if status == 404:
            return BatchAPIError(f"the batch API at {where} answered 404 ({detail}); the server has no batch API "
                                 "there: check --api-base (it ends in /v1 for OpenAI-compatible servers) or run "
                                 "without --batch")
        return BatchAPIError(f"the batch API at {where} refused the call (HTTP {status}: {detail})")

    async def lines(self, path: str) -> AsyncIterator[list[bytes]]:
        """The lines of a JSONL result file, yielded in groups as they arrive (each group the complete
        lines received so far). Transient failures before the first byte are retried; one later is
        raised as :class:`TransientBatchError` (the caller reads the file again: committing is idempotent)."""
        import aiohttp

        for attempt in range(self.retry.max_retries + 1):
            try:
                async with self._session_now().get(self.url(path), headers=self.headers) as response:
                    if not 200 <= response.status < 300:
                        raise self._error(response.status, response.headers, await response.content.read(65536), path)
                    tail = b""
                    async for chunk in response.content.iter_any():
                        tail += chunk
                        complete, _, tail = tail.rpartition(b"\n")
                        if complete:
                            yield complete.split(b"\n")
                        if len(tail) > limits.SERVER_BODY_BYTES:
                            raise BatchAPIError(f"{self.where(path)}: a result line longer than "
                                                f"{limits.SERVER_BODY_BYTES:,} bytes; check --api-base")
                    if tail.strip():
                        yield [tail]
                    return
            except TransientBatchError as exc:
                if attempt == self.retry.max_retries:
                    raise BatchAPIError(f"the batch API at {self.where(path)} keeps failing ({exc}); re-run the same "
                                        "command later to collect the results") from None
                self.retries += 1
                await asyncio.sleep(self.retry.wait(attempt, exc.retry_after, self._jitter))
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                if attempt == self.retry.max_retries:
                    raise BatchAPIError(f"reading {self.where(path)} keeps failing ({type(exc).__name__}); re-run "
                                        "the same command later to collect the results") from None
                self.retries += 1
                await asyncio.sleep(self.retry.wait(attempt, None, self._jitter))


def _detail(raw: bytes, secrets: list[str]) -> str:
    """The message of an error body (OpenAI's or Anthropic's ``error`` object), else its start, scrubbed."""
    message = ""
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            message = str(error.get("message") or "")
        elif isinstance(error, str):
            message = error
    if not message:
        message = raw[:300].decode("utf-8", "replace")
    text = " ".join(scrub(message, secrets).split())
    return text[:200] + ("..." if len(text) > 200 else "")
