"""Any model litellm can reach (OpenAI, Anthropic, Ollama, vLLM or llama.cpp servers, ...) as a psytest backend.

``model`` is a litellm model string: ``openai/gpt-4o-mini``, ``anthropic/claude-3-5-haiku-latest``,
``ollama/llama3``, or ``openai/NAME`` with ``api_base`` for any OpenAI-compatible server.

* API keys come only from the environment (litellm reads ``OPENAI_API_KEY`` and the like itself). They
  are never part of :attr:`LiteLLMBackend.params` (which goes into run manifests and request ids) and
  never appear in an error message.
* ``text`` mode is one chat completion. ``probs`` mode is a one-token completion at temperature 0 with
  ``logprobs=True, top_logprobs=20``; the first generated token's top alternatives are mapped onto the
  displayed labels by :func:`map_top_logprobs`.
* Rate limits, overload (5xx), timeouts and dropped connections raise
  :class:`~psychometrics.models.base.TransientModelError` (with the server's Retry-After, if any; a
  connection that cannot be made is marked ``unreachable``); bad requests raise :class:`ModelCallError`,
  one line that says what to do; refusals every request would get (key, permission, unknown model, an
  unsupported parameter) raise :class:`EndpointCallError`, and a few in a row stop the run.
* ``timeout_s`` counts from when the provider could start on a request (:mod:`.progress`).
* The URL is not part of :attr:`LiteLLMBackend.params`: it is :attr:`~LiteLLMBackend.endpoint`, recorded
  in the manifest (also when litellm takes it from ``OPENAI_BASE_URL``).
* Prompt caching: for Anthropic's Claude models the system message (persona + instructions, the fixed
  prefix of every prompt) is sent as a text block marked ``cache_control: ephemeral``
  (:mod:`psychometrics.cost.caching`); OpenAI caches repeated prefixes without a mark. Cached and
  cache-written prompt tokens are read from the usage (:func:`fill_reply_metadata`).

litellm takes seconds to import, so it is imported on first use only.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import math
import os
import re
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psychometrics.cost.caching import mark_system_cacheable, needs_cache_mark
from psychometrics.errors import ModelSpecError, PsytestError
from psychometrics.models.base import EndpointRefused, ModelBackend, ModelReply, ModelRequest, TransientModelError
from psychometrics.models.progress import ProgressClock, QueueTimeout

TOP_LOGPROBS = 20
_SECRET_NAME = re.compile(r"key|token(?!s)|secret|passw|auth|credential|cookie|signature", re.I)
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s,;'\"]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)(api[ _-]?key provided:?\s*)[^\s,;'\"]+"), r"\1[redacted]"),
    (re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{6,}"), "[redacted]"),
    (re.compile(r"(?i)\b((?:api[_-]?)?key|token|secret|password)=[^\s&,;'\"]+"), r"\1=[redacted]"),
    (re.compile(r"(?i)(https?://)[^/@\s:]+:[^/@\s]+@"), r"\1[redacted]@"),
)
_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+:\s*)?(?:\w+Error:\s*)?(?:\w+Exception\s*-\s*)?")
_MISSING_KEY = re.compile(
    r"missing credentials|api_key client option must be set|api[ _]?key (?:is )?(?:missing|required|not (?:set|found))",
    re.I,
)


class ModelCallError(PsytestError):
    """A request the provider refused for a reason retrying will not fix (key, model name, bad request)."""


class EndpointCallError(ModelCallError, EndpointRefused):
    """A refusal every request to this endpoint will get (key, permission, model name, URL, an unsupported
    parameter): a few in a row stop the run with this message."""


#: A provider's words for a request it will never serve, whatever is retried (llama.cpp, vLLM, gateways).
NOT_SUPPORTED = re.compile(r"(?i)\bnot (?:supported|implemented)\b|\bunsupported\b")
HANG_GUARD_S = 3600.0  # litellm's own limit on one call; the run's --timeout is applied by ProgressClock
_VERSION_SEGMENT = re.compile(r"/v\d+(?:beta\d*|alpha\d*)?(?:/|$)")


def missing_version_hint(api_base: str | None) -> str:
    """``"; ..."`` telling to add ``/v1`` when ``api_base`` has no version segment (OpenAI-compatible
    servers serve ``/v1/chat/completions``), else ``""``."""
    if not api_base:
        return ""
    path = urlsplit(api_base.strip()).path
    if _VERSION_SEGMENT.search(path):
        return ""
    return f"; the URL has no /v1: OpenAI-compatible servers answer under it, try --api-base {endpoint_url(api_base)}/v1"


def endpoint_url(url: str | None) -> str | None:
    """``url`` as the manifest records an endpoint: without credentials (:func:`public_url`), scheme and
    host in lower case, without a trailing slash. Only a record: endpoints are never part of a run's
    identity, so ``localhost`` and ``127.0.0.1`` need not be made equal."""
    if not url:
        return url
    public = public_url(url.strip()) or ""
    parts = urlsplit(public)
    if not parts.netloc:
        return public.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


# -- litellm, imported once and quietly ------------------------------------------------------------


@lru_cache(maxsize=1)
def _litellm():
    """Import litellm on first use, offline (bundled cost map) and without its debug output."""
    import logging
    import warnings

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # litellm's types make pydantic warn once, on the first call, about TypedDict ReadOnly items
    warnings.filterwarnings("ignore", message=r".*is using the `ReadOnly` qualifier", category=UserWarning)
    # a reply whose content is not text makes litellm's models warn on stderr before they fail (handled below)
    warnings.filterwarnings("ignore", message=r"(?s).*PydanticSerializationUnexpectedValue", category=UserWarning)
    import litellm

    litellm.suppress_debug_info = True
    litellm.turn_off_message_logging = True
    if hasattr(litellm, "telemetry"):
        litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return litellm


# -- keeping secrets out of params and messages ----------------------------------------------------


def is_secret_name(name: str) -> bool:
    """Whether a parameter or header name looks like it holds a credential (``max_tokens`` does not)."""
    return bool(_SECRET_NAME.search(name))


def public_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without credential-like entries, recursively (headers inside ``extra_headers`` too)."""
    public = {}
    for name, value in params.items():
        if is_secret_name(str(name)):
            continue
        public[name] = public_params(value) if isinstance(value, Mapping) else value
    return public


def public_url(url: str | None) -> str | None:
    """``url`` without user:password@ and without credential-like query parameters."""
    if not url:
        return url
    parts = urlsplit(url)
    if not parts.netloc:  # no scheme ("host:8000/v1"): at least drop anything up to an "@"
        return url.rsplit("@", 1)[-1]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:  # a malformed port is kept out rather than failing here; litellm will complain
        netloc = host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_secret_name(k)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def check_api_base(url: str) -> None:
    """A one-line :class:`ModelSpecError` unless ``url`` is an http(s) URL with a host and a numeric port."""
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in range
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        usable = False
    if not usable:
        raise ModelSpecError(
            f"--api-base {public_url(url)}: give the server's http(s) URL, e.g. http://127.0.0.1:8000/v1"
        )


def split_credentials(url: str) -> tuple[str, str | None]:
    """(``url`` without ``user:password@``, the matching ``Basic`` Authorization value or None).

    litellm's HTTP client refuses a URL with credentials next to its own Authorization header, so the
    credentials travel as a header instead (as curl and httpx send them); the URL keeps its query.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    import base64
    from urllib.parse import unquote

    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    netloc = parts.netloc.rsplit("@", 1)[1]
    token = base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), f"Basic {token}"


def _secret_values(extra: Iterable[str]) -> list[str]:
    """Credential values that must never be shown: secret-named environment variables and ``extra``."""
    values = {v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= 8 and not any(c.isspace() for c in v)}
    values.update(v for v in extra if v and len(v) >= 4)
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` on one line with every known secret value and key-looking string replaced."""
    for secret in _secret_values(secrets):
        text = text.replace(secret, "[redacted]")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def _nested_secret_values(params: Mapping[str, Any]) -> list[str]:
    found = []
    for name, value in params.items():
        if isinstance(value, Mapping):
            found += _nested_secret_values(value)
        elif is_secret_name(str(name)) and isinstance(value, str):
            found.append(value)
    return found


# -- probability mode ------------------------------------------------------------------------------


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _is_word_label(label: str) -> bool:
    """Word labels ("Very accurate") may be matched by a first-token prefix; "1", "A", "10" only exactly."""
    return len(label) > 1 and not label.isdigit()


def label_for_token(token: str, choices: Sequence[str]) -> str | None:
    """The displayed label a generated token stands for, or None.

    Whitespace around the token is ignored. Number and letter labels match exactly (case-sensitive:
    "a" is the English article, not option "A"). A word label also matches, ignoring case, a token of
    two or more characters that begins it ("Neither" for "Neither accurate nor inaccurate") as long as
    no other displayed label begins the same way ("Very" is left out when both "Very accurate" and
    "Very inaccurate" are shown).
    """
    text = token.strip()
    if not text:
        return None
    if text in choices:
        return text
    if len(text) < 2:
        return None
    folded = text.casefold()
    candidates = [c for c in choices if _is_word_label(c) and c.casefold().startswith(folded)]
    if len(candidates) == 1 and not any(
        c.casefold().startswith(folded) for c in choices if c != candidates[0]
    ):
        return candidates[0]
    return None


def distinct_top_logprobs(top: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """A server's top alternatives checked to be a distribution over distinct tokens.

    An entry repeated exactly (same token, same log-probability) is one token listed twice and is kept
    once. Every log-probability must be a finite number at most 0 (``-inf``, probability 0, is dropped;
    a value above 0 within rounding, :data:`~psychometrics.models.base.LOGPROB_TOLERANCE`, is read as 0),
    and the tokens' probabilities may not sum to more than 1 (same tolerance).
    :class:`~psychometrics.models.base.InvalidReplyError` otherwise: the request is recorded as failed.
    """
    from psychometrics.models.base import LOGPROB_TOLERANCE, InvalidReplyError

    seen: set[tuple[str, float]] = set()
    distinct = []
    for token, logprob in top:
        if logprob is None or logprob != logprob or logprob == math.inf:
            raise InvalidReplyError(f"the server's log-probability of token {token!r} is {logprob!r}, not a number")
        if logprob == -math.inf or (token, logprob) in seen:
            continue
        if logprob > LOGPROB_TOLERANCE:
            raise InvalidReplyError(f"the server's log-probability of token {token!r} is {logprob:g}, above 0 "
                                    "(a probability above 1)")
        seen.add((token, logprob))
        distinct.append((token, min(float(logprob), 0.0)))
    total = sum(math.exp(logprob) for _, logprob in distinct)
    if total > 1 + LOGPROB_TOLERANCE:
        raise InvalidReplyError(f"the server's top log-probabilities sum to a probability of {total:.4g}, more "
                                "than 1 (repeated or invalid entries)")
    return distinct


def map_top_logprobs(top: Sequence[tuple[str, float]], choices: Sequence[str]) -> dict[str, float]:
    """Label log-probabilities from a first token's top alternatives (checked first by
    :func:`distinct_top_logprobs`).

    Distinct tokens standing for the same label (" 4" and "4") are one label: their probabilities are
    summed (log-sum-exp). Labels absent from the list are left out (their probability is below the
    list's cut-off, not known to be zero).
    """
    grouped: dict[str, list[float]] = {}
    for token, logprob in distinct_top_logprobs(top):
        label = label_for_token(token, choices)
        if label is not None and logprob is not None and math.isfinite(logprob):
            grouped.setdefault(label, []).append(float(logprob))
    return {label: _logsumexp(grouped[label]) for label in choices if label in grouped}


def _field(obj: Any, name: str) -> Any:
    """Attribute or mapping entry ``name`` of a litellm response part (providers return either)."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


_TEXT_PARTS = ("text", "output_text")


def reply_text(message: Any, mode: str = "text") -> str | None:
    """The text of a chat completion's ``message``, read the same way by every HTTP backend.

    A string is the text. A list of content parts (``[{"type": "text", "text": "4"}]``) is the text of
    its text parts joined; parts of other kinds (images, audio) are left out. A null content with a
    ``refusal`` is that refusal. Anything else (a number, an object, a list without text, null with no
    refusal) is not an answer: in text mode :class:`~psychometrics.models.base.InvalidReplyError`, so
    the request is recorded as failed with the reason and sent again on the next run, never stored as
    the model's unreadable answer; in probability mode, where the answer is the log-probabilities,
    the text is None.
    """
    from psychometrics.models.base import InvalidReplyError

    content = _field(message, "content") if message is not None else None
    if isinstance(content, str):
        return content
    problem = None
    if isinstance(content, list):
        texts = []
        for part in content:
            kind, text = _field(part, "type"), _field(part, "text")
            if kind in _TEXT_PARTS and isinstance(text, str):
                texts.append(text)
            elif kind in _TEXT_PARTS:
                problem = f"a text part whose text is {type(text).__name__}"
                break
            elif kind == "refusal" and isinstance(_field(part, "refusal"), str):
                texts.append(_field(part, "refusal"))
        else:
            if texts:
                return "".join(texts)
            problem = "a list of content parts with no text" if content else "an empty list of content parts"
    elif content is None:
        refusal = _field(message, "refusal") if message is not None else None
        if refusal is None and message is not None:  # litellm keeps fields it does not model here
            refusal = _field(_field(message, "provider_specific_fields") or {}, "refusal")
        if isinstance(refusal, str) and refusal.strip():
            return refusal
        problem = "null (no text and no refusal)"
    if mode != "text":
        return None
    problem = problem or f"{'a number' if isinstance(content, (int, float)) else 'an object'} " \
                         f"({type(content).__name__}), not text"
    raise InvalidReplyError(f"the server's reply content is {problem}; not stored as an answer")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def fill_reply_metadata(reply: ModelReply, response: Any, choice: Any) -> ModelReply:
    """Copy what a chat-completion response says about its reply onto ``reply`` (a dict body or
    litellm's objects alike): token counts, the choice's ``finish_reason``, the answering ``model`` and
    ``system_fingerprint``, and prompt tokens served from the provider's cache (OpenAI's
    ``usage.prompt_tokens_details.cached_tokens``, Anthropic's ``usage.cache_read_input_tokens``)."""
    usage = _field(response, "usage")
    if usage is not None:
        reply.input_tokens = _count(_field(usage, "prompt_tokens"))
        reply.output_tokens = _count(_field(usage, "completion_tokens"))
        details = _field(usage, "prompt_tokens_details")
        cached = _count(_field(details, "cached_tokens")) if details is not None else None
        if cached is None:
            cached = _count(_field(usage, "cache_read_input_tokens"))
        reply.cached_input_tokens = cached
        written = _count(_field(usage, "cache_creation_input_tokens"))  # Anthropic: billed above the input price
        if written:
            reply.extra["cache_write_input_tokens"] = written
    reason = _field(choice, "finish_reason")
    reply.finish_reason = reason if isinstance(reason, str) else None
    for name, target in (("model", "served_model"), ("system_fingerprint", "system_fingerprint")):
        value = _field(response, name)
        setattr(reply, target, value if isinstance(value, str) and value else None)
    return reply


def first_token_top_logprobs(choice: Any) -> list[tuple[str, float]]:
    """The (token, log-probability) alternatives of the first generated token; [] when there are none."""
    logprobs = _field(choice, "logprobs")
    content = _field(logprobs, "content") if logprobs is not None else None
    if not content:
        return []
    top = _field(content[0], "top_logprobs") or []
    return [(str(_field(t, "token")), number) for t in top if (number := as_float(_field(t, "logprob"))) is not None]


def as_float(value: Any) -> float | None:
    """A token's log-probability as a float, or None when it is not a number (a string, an object, a
    boolean, an integer too large for a float): that alternative is left out. Whether a number is a
    log-probability at all is checked for the labels (:func:`psychometrics.models.base.label_logprobs`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


_RESPONSE_OBJECT = "'response_object': {"
_MAX_RECOVERED_CHARS = 1 << 20


def unreadable_response(exc: BaseException) -> dict | None:
    """The provider's response body that litellm could not turn into its own objects, or None.

    litellm validates a reply's ``content`` as a string; a list of content parts, a number or an object
    makes it fail with "Invalid response object", quoting the body it received (``received_args``) as a
    Python literal. That body is read back here, so the litellm path reads such a reply exactly as the
    direct HTTP backend does (:func:`reply_text`) instead of retrying it as a server error."""
    text = str(exc)
    start = text.find(_RESPONSE_OBJECT)
    if "Invalid response object" not in text or start < 0 or len(text) > _MAX_RECOVERED_CHARS:
        return None
    start += len(_RESPONSE_OBJECT) - 1
    depth, quote, index = 0, None, start
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
            if depth == 0:
                break
        index += 1
    import ast

    try:
        body = ast.literal_eval(text[start:index + 1])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


# -- errors ----------------------------------------------------------------------------------------


def _headers_of(exc: BaseException) -> Mapping[str, str]:
    """Response headers of a failed call. litellm keeps them in ``litellm_response_headers``; its
    ``response.headers`` is often empty (1.106.2 rebuilds the response without them)."""
    for candidate in (
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if candidate:
            return candidate
    return {}


def parse_retry_after(headers: Mapping[str, str], now: _dt.datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), if given."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = lowered.get(name) or lowered.get(f"llm_provider-{name}")
        if raw is None:
            continue
        try:
            seconds = float(raw.strip()) * scale
        except ValueError:
            if scale != 1.0:
                continue
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=_dt.timezone.utc)
            seconds = (when - (now or _dt.datetime.now(_dt.timezone.utc))).total_seconds()
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _provider_detail(exc: BaseException, secrets: Iterable[str]) -> str:
    """The provider's own words about a failure, without litellm's prefixes, secrets or newlines."""
    text = scrub(str(exc), secrets)
    text = _LITELLM_PREFIX.sub("", text).strip(" .-:")
    text = re.sub(r"\s*Received Model Group=.*$|\s*LiteLLM Retried:.*$", "", text)
    return text[:200] + ("..." if len(text) > 200 else "")


_CUT_SHORT = ("ContentLengthError", "ClientPayloadError", "RemoteProtocolError", "IncompleteRead", "TransferEncodingError")


def transport_failure(exc: BaseException) -> str | None:
    """What went wrong under litellm's generic "Connection error" (which it reports as HTTP 500): a
    reset connection, a body cut short, or a body that is not JSON; None for anything else."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        name = type(cause).__name__
        if isinstance(cause, ValueError) and name == "JSONDecodeError":
            return f"malformed response: the body is not JSON ({getattr(cause, 'msg', cause)})"
        if name in _CUT_SHORT:
            return "truncated response: the connection closed before the whole body arrived"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the server"
        cause = cause.__cause__ or cause.__context__
    return None


_NO_CONNECTION = ("ConnectError", "ConnectTimeout", "ConnectionRefusedError", "gaierror", "ClientConnectorError",
                  "ClientConnectorDNSError", "ConnectionTimeoutError")


def connection_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a connection that could not be made: refused, unknown host,
    no route, a connect timeout. The server never saw the request."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if type(cause).__name__ in _NO_CONNECTION:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _endpoint_of(model: str, api_base: str | None) -> tuple[str | None, str | None]:
    """(where ``model`` is served, how that was given): ``--api-base``, else the base URL litellm takes
    from the environment for OpenAI models (``OPENAI_BASE_URL``, ``OPENAI_API_BASE``), else (None, None)
    for the provider's own. Recorded in the manifest, so a run sent to a gateway does not look like OpenAI."""
    if api_base:
        return endpoint_url(api_base), "--api-base"
    if model.startswith("openai/"):
        for variable in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
            value = os.environ.get(variable, "").strip()
            if value:
                return endpoint_url(value), variable
    return None, None


class ResponseTooLarge(Exception):
    """A response body above :data:`psychometrics.limits.SERVER_BODY_BYTES`, stopped while it arrived."""


def _body_cap() -> int:
    from psychometrics import limits

    return limits.SERVER_BODY_BYTES


async def _cap_body(response: Any) -> None:
    """An httpx response hook: refuse a body declared larger than the cap, and count the bytes of one that
    is not declared, so a hostile or broken server cannot fill memory through litellm either."""
    import httpx

    cap = _body_cap()
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        await response.aclose()
        raise ResponseTooLarge(f"the response is larger than {cap:,} bytes")
    inner = response.stream

    class Capped(httpx.AsyncByteStream):
        async def __aiter__(self):
            size = 0
            async for chunk in inner:
                size += len(chunk)
                if size > cap:
                    raise ResponseTooLarge(f"the response is larger than {cap:,} bytes")
                yield chunk

        async def aclose(self) -> None:
            await inner.aclose()

    response.stream = Capped()


_capped_sessions: dict[int, Any] = {}


def capped_session() -> Any:
    """This event loop's httpx client for litellm's OpenAI-style providers (``litellm.aclient_session``),
    whose response hook caps the body (:func:`_cap_body`). Closed by :meth:`LiteLLMBackend.aclose`."""
    import asyncio

    import httpx

    key = id(asyncio.get_running_loop())
    if key not in _capped_sessions or _capped_sessions[key].is_closed:
        _capped_sessions[key] = httpx.AsyncClient(event_hooks={"response": [_cap_body]}, follow_redirects=True)
    return _capped_sessions[key]


def _too_large(exc: BaseException) -> bool:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ResponseTooLarge):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


async def _close_client(client: Any) -> None:
    """Close an SDK or httpx client (``close()`` on OpenAI's async client, ``aclose()`` on httpx's)."""
    import inspect

    for method in ("aclose", "close"):
        closer = getattr(client, method, None)
        if callable(closer):
            try:
                result = closer()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            return


# -- the backend -----------------------------------------------------------------------------------


class LiteLLMBackend(ModelBackend):
    """A model reached through litellm. See the module docstring for modes, keys and errors."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        timeout_s: float | None = None,
        extra_params: dict | None = None,
    ):
        if not model or not model.strip():
            raise ModelSpecError("--model: empty litellm model string; use e.g. 'openai/gpt-4o-mini'")
        extra = dict(extra_params or {})
        if "api_key" in extra:
            raise ModelSpecError(
                f"--model {model}: pass API keys through the environment (e.g. OPENAI_API_KEY), not as a parameter"
            )
        if timeout_s is not None and not timeout_s > 0:
            raise ModelSpecError(f"--model {model}: timeout must be positive, got {timeout_s}")
        if api_base is not None:
            check_api_base(api_base)
        self.name = model
        self.api_base = api_base
        self.endpoint, self.endpoint_source = _endpoint_of(model, api_base)
        self.times_own_requests = True
        self.timeout_s = timeout_s
        self.extra_params = extra
        self._clock = ProgressClock()

    @property
    def params(self) -> dict[str, Any]:
        """Settings that change answers: the backend and any extra request parameters. Not the URL (where
        the model is served: :attr:`endpoint`), nor credentials (keys live only in the environment)."""
        params: dict[str, Any] = {"backend": "litellm"}
        if self.extra_params:
            params["extra_params"] = public_params(self.extra_params)
        return params

    def prepare(self, inventories, persona_set=None) -> None:
        """Import litellm now (seconds), not inside the run's event loop where it would stall every request."""
        _litellm()

    # -- calling ----------------------------------------------------------------------------------
    def _call_kwargs(self, request: ModelRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            **self.extra_params,
            "model": self.name,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "num_retries": 0,
        }
        if needs_cache_mark(self.name):  # the fixed prefix (persona + instructions) read from the provider's cache
            kwargs["messages"] = mark_system_cacheable(kwargs["messages"])
        if request.mode == "probs":
            kwargs.update(temperature=0.0, max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
        else:
            kwargs.update(temperature=request.temperature, max_tokens=request.max_tokens)
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if self.api_base:
            kwargs["api_base"], basic = split_credentials(self.api_base)
            if basic:  # user:password@ in --api-base: sent as a Basic Authorization header
                kwargs["extra_headers"] = {**(kwargs.get("extra_headers") or {}), "Authorization": basic}
        if self.timeout_s is not None:  # a hang guard only: complete() times the request from when it could start
            kwargs["timeout"] = max(self.timeout_s, HANG_GUARD_S)
        return kwargs

    async def complete(self, request: ModelRequest) -> ModelReply:
        litellm = _litellm()
        litellm.aclient_session = capped_session()  # OpenAI-style providers read replies through it, capped
        try:
            response = await self._clock.run(self._acompletion(litellm, self._call_kwargs(request)), self.timeout_s)
        except QueueTimeout:
            raise TransientModelError(f"{self.name}: request timed out after {self.timeout_s:g} s without progress "
                                      "at the provider", timed_out=True) from None
        except Exception as exc:  # noqa: BLE001 - every provider failure is classified below
            response = unreadable_response(exc)  # a body litellm could not model: read it as the HTTP backend does
            if response is None:
                raise self._translate(exc, request) from None
        self._clock.answered()
        choices = _field(response, "choices") or []
        if not choices:
            raise TransientModelError(f"{self.name}: the provider returned a response without choices")
        reply = fill_reply_metadata(ModelReply(), response, choices[0])
        reply.text = reply_text(_field(choices[0], "message"), request.mode)
        if request.mode == "probs":
            self._fill_probs(reply, choices[0], request)
        return reply

    async def _acompletion(self, litellm: Any, kwargs: dict[str, Any]) -> Any:
        """One chat completion (a router backend sends it through its router instead)."""
        return await litellm.acompletion(**kwargs)

    def _fill_probs(self, reply: ModelReply, choice: Any, request: ModelRequest) -> None:
        top = first_token_top_logprobs(choice)
        if not top:
            raise self._no_logprobs_error()
        reply.extra["top_logprobs"] = [[token, float(logprob)] for token, logprob in top]
        reply.choice_logprobs = map_top_logprobs(top, request.choices)

    def _no_logprobs_error(self) -> ModelCallError:
        return EndpointCallError(
            f"{self.name}: the provider gives no log-probabilities, so probs mode cannot score the options; "
            "use text mode (--mode text) for this model"
        )

    async def aclose(self) -> None:
        """Close the HTTP clients litellm cached for the running event loop and forget them.

        litellm keys its client cache by ``id(loop)``; a client left there outlives its loop (leaking
        its sockets) and could be handed to a later loop that happens to get the same id.
        """
        if _litellm.cache_info().currsize == 0:
            return  # litellm was never imported, so it holds no clients
        import asyncio

        cache = getattr(_litellm(), "in_memory_llm_clients_cache", None)
        entries = getattr(cache, "cache_dict", None)
        if not isinstance(entries, dict):
            return
        suffix = f"-{id(asyncio.get_running_loop())}"
        for key in [k for k in list(entries) if isinstance(k, str) and k.endswith(suffix)]:
            client = entries.pop(key, None)
            getattr(cache, "ttl_dict", {}).pop(key, None)
            await _close_client(client)
        session = _capped_sessions.pop(id(asyncio.get_running_loop()), None)
        if session is not None:
            if _litellm().aclient_session is session:
                _litellm().aclient_session = None
            await _close_client(session)

    # -- errors -----------------------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        secrets = _nested_secret_values(self.extra_params)
        if self.api_base:
            parts = urlsplit(self.api_base)
            secrets += [s for s in (parts.username, parts.password) if s]
            basic = split_credentials(self.api_base)[1]
            if basic:
                secrets.append(basic.split(" ", 1)[1])
        return secrets

    def _key_hint(self) -> str:
        """Which environment variable to set, as litellm knows it for this provider."""
        litellm = _litellm()
        try:
            missing = litellm.validate_environment(model=self.name, api_base=self.api_base).get("missing_keys") or []
            provider = litellm.get_llm_provider(self.name)[1]
        except Exception:  # noqa: BLE001 - an unknown provider still gets a generic hint
            missing, provider = [], None
        missing = [name for name in missing if is_secret_name(name)]
        if missing:
            return f"set {' or '.join(missing)} in the environment"
        variable = f"{provider.upper()}_API_KEY" if provider else "the provider's API key variable"
        return f"check the key in {variable}"

    def _translate(self, exc: BaseException, request: ModelRequest) -> Exception:
        """A litellm failure as TransientModelError (worth retrying) or ModelCallError (not)."""
        litellm = _litellm()
        errors = litellm.exceptions
        detail = _provider_detail(exc, self._secrets())
        status = getattr(exc, "status_code", None)
        status = status if isinstance(status, int) else None
        where = f" at {public_url(self.api_base)}" if self.api_base else ""

        if _too_large(exc):
            return ModelCallError(f"{self.name}: the response{where} is larger than {_body_cap():,} bytes; check "
                                  + ("--api-base" if self.api_base else "the provider"))
        if isinstance(exc, errors.Timeout) or isinstance(exc, TimeoutError):
            limit = f" after {self.timeout_s:g} s" if self.timeout_s else ""
            return TransientModelError(f"{self.name}: request timed out{limit}", timed_out=True)
        if _MISSING_KEY.search(str(exc)) or status == 401 or isinstance(exc, errors.AuthenticationError):
            return EndpointCallError(f"{self.name}: authentication failed{where} ({detail}); {self._key_hint()}")
        if status == 429 or isinstance(exc, errors.RateLimitError):
            retry_after = parse_retry_after(_headers_of(exc))
            wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            return TransientModelError(f"{self.name}: rate limited (HTTP 429){wait}: {detail}", retry_after)
        if request.mode == "probs" and (
            isinstance(exc, errors.UnsupportedParamsError)
            or (status in (400, 422, 500, 501) and "logprob" in detail.lower())
        ):
            return self._no_logprobs_error()
        if status == 403 or isinstance(exc, errors.PermissionDeniedError):
            return EndpointCallError(f"{self.name}: permission denied{where} ({detail}); check that the key may use this model")
        if status == 404 or isinstance(exc, errors.NotFoundError):
            hint = missing_version_hint(self.api_base) if self.endpoint_source == "--api-base" else ""
            return EndpointCallError(
                f"{self.name}: model not found{where} ({detail}); check the model name and provider prefix"
                + (" and --api-base" if self.api_base else "") + hint
            )
        if isinstance(exc, errors.UnsupportedParamsError) or (
            status in (400, 422, 500, 501) and NOT_SUPPORTED.search(detail)
        ):
            return EndpointCallError(f"{self.name}: the provider{where} does not support what this run asks "
                                     f"({detail}); change the option it names, or use another model")
        if isinstance(exc, errors.ContextWindowExceededError):
            return ModelCallError(f"{self.name}: the prompt is longer than the model's context window ({detail})")
        transport = transport_failure(exc)
        if transport is not None:
            return TransientModelError(f"{self.name}: provider unavailable{where} ({transport})")
        if connection_refused(exc):
            return TransientModelError(f"{self.name}: nothing answers{where} ({detail})", unreachable=True)
        if status in (408, 409, 425) or (status is not None and status >= 500) or isinstance(
            exc, (errors.APIConnectionError, errors.ServiceUnavailableError, ConnectionError, OSError)
        ):
            code = f"HTTP {status}" if status else "connection error"
            retry_after = parse_retry_after(_headers_of(exc))
            return TransientModelError(f"{self.name}: provider unavailable{where} ({code}): {detail}", retry_after)
        if status is not None and 400 <= status < 500:
            return ModelCallError(f"{self.name}: the provider rejected the request (HTTP {status}): {detail}")
        return ModelCallError(f"{self.name}: request failed ({type(exc).__name__}): {detail}")
