"""The lean HTTP/1.1 client (psychometrics/models/http1.py) against hostile responses: split reads,
chunked bodies with extensions and trailers, bodies past the cap, bodies read until close, interim 1xx
responses, garbage where the status line or a header should be, connections reset or closed half-way.
Each is checked on the parser fed byte by byte and, through a raw socket server, on the backend, whose
errors must be classified as through aiohttp."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import zlib

import pytest

from psychometrics.models import http1
from psychometrics.models.base import Message, ModelRequest, TransientModelError
from psychometrics.models.litellm_backend import ModelCallError
from psychometrics.models.openai_http import OpenAIHTTPBackend, _raw_target

GUARD_S = 60.0  # a hang guard for each exchange here (never reached when the client works)

REPLY = json.dumps({"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                   "message": {"role": "assistant", "content": "3"}}]}).encode()
REQUEST = ModelRequest((Message("user", "How are you?\n1. Well\n2. Badly\n3. Fine"),), ("1", "2", "3"))


def response(body: bytes = REPLY, *headers: str, status: str = "200 OK", length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int = 7, extension: str = ";name=value", trailer: str = "X-Trailer: yes\r\n") -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    out = b"".join(b"%x%b\r\n%b\r\n" % (len(p), extension.encode(), p) for p in pieces)
    return out + b"0" + extension.encode() + b"\r\n" + trailer.encode() + b"\r\n"


def parse(data: bytes, step: int | None = None, eof: bool = False, cap: int = 1 << 20) -> http1.ResponseParser:
    """``data`` fed to a parser ``step`` bytes at a time (all at once when None), then EOF if asked."""
    parser = http1.ResponseParser(cap)
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        parser.feed(data[i:i + step])
    if eof:
        parser.feed_eof()
    return parser


# -- the parser ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 2, 3, 5, 64, None])
@pytest.mark.parametrize("data, reusable", [
    (response(), True),
    (response(REPLY, "Transfer-Encoding: chunked", length=False)[:-len(REPLY)] + chunked(REPLY), True),
    (response(REPLY, "Transfer-Encoding: chunked", length=False)[:-len(REPLY)] + chunked(REPLY, 1, "", ""), True),
    (response(REPLY, "Transfer-Encoding: gzip, chunked", length=False)[:-len(REPLY)], None),  # below
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + response(), True),
    (response(REPLY, "Connection: close"), False),
    (response().replace(b"HTTP/1.1", b"HTTP/1.0"), False),
    (response(REPLY, "Connection: keep-alive").replace(b"HTTP/1.1", b"HTTP/1.0"), True),
    (response().replace(b"\r\n", b"\n"), True),  # bare line feeds, as lenient parsers take them
])
def test_a_response_split_anywhere_parses_the_same(data, reusable, step):
    if reusable is None:  # gzip, then chunked
        data = data + chunked(gzip.compress(REPLY))
        data = data.replace(b"Transfer-Encoding: gzip, chunked", b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked")
        reusable = True
    parser = parse(data, step)
    assert parser.done and parser.status == 200 and parser.body == REPLY and parser.reusable is reusable
    assert parser.headers.get("content-type") == parser.headers.get("Content-Type") == "application/json"


def test_trailers_and_extensions_do_not_reach_the_body_and_a_chunk_of_one_byte_each_works():
    data = response(b"", "Transfer-Encoding: chunked", length=False) + chunked(REPLY, 1, ';a="b;c"', "A: 1\r\nB: 2\r\n")
    assert parse(data, 3).body == REPLY


def test_a_body_read_until_close_ends_at_eof_and_the_connection_is_not_reused():
    data = response(length=False)
    parser = parse(data, 4)
    assert not parser.done  # no length: the body may go on
    parser.feed_eof()
    assert parser.done and parser.body == REPLY and not parser.reusable


def test_204_and_an_empty_length_have_no_body():
    assert parse(b"HTTP/1.1 204 No Content\r\n\r\n").body == b""
    assert parse(response(b"")).done and parse(response(b"")).body == b""


def test_bytes_after_the_response_make_the_connection_unusable():
    parser = parse(response() + b"HTTP/1.1 200 OK\r\n")
    assert parser.done and parser.body == REPLY and not parser.reusable


@pytest.mark.parametrize("data, error, words", [
    (b"garbage\r\n\r\n", http1.BadResponse, "status line"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", http1.BadResponse, "does not start with an HTTP status line"),
    (b"HTTP/2 200\r\n\r\n", http1.BadResponse, "status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", http1.BadResponse, "status line"),
    (b"HTTP/1.1 OK 200\r\n\r\n", http1.BadResponse, "status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", http1.BadResponse, "header line"),
    (b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n", http1.BadResponse, "header line"),
    (b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n", http1.BadResponse, "header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", http1.BadResponse, "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", http1.BadResponse, "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: \xd9\xa3\r\n\r\n", http1.BadResponse, "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", http1.BodyTooLarge, "larger than"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", http1.BadResponse, "101"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", http1.BadResponse, "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 17 + b"\r\n", http1.BadResponse, "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY", http1.BadResponse, "chunk does not end"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffff\r\n", http1.BodyTooLarge, "larger than"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1" + b" " * 5000, http1.BadResponse, "longer than"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nab", http1.BadResponse, "encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nab", http1.BadResponse, "inflate"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"x" * (http1.MAX_HEAD_BYTES + 10), http1.BadResponse, "head longer"),
])
def test_hostile_bytes_are_an_error_of_their_own_class(data, error, words):
    for step in (1, 7, None):
        with pytest.raises(error, match=words):
            parse(data, step, cap=1000)


def test_a_body_past_the_cap_is_refused_however_it_is_framed():
    body = b"x" * 1001
    for data in (response(body), response(b"", "Transfer-Encoding: chunked", length=False) + chunked(body, 100),
                 response(body, length=False)):
        with pytest.raises(http1.BodyTooLarge):
            parse(data, 64, eof=True, cap=1000)
    bomb = gzip.compress(b"\0" * 10**6)  # 1 MB that arrives as 1 kB
    with pytest.raises(http1.BodyTooLarge):
        parse(response(bomb, "Content-Encoding: gzip"), cap=10**5)
    assert parse(response(zlib.compress(REPLY), "Content-Encoding: deflate")).body == REPLY


@pytest.mark.parametrize("data, error", [
    (b"", http1.Disconnected),
    (b"HTTP/1.1 200 OK\r\nContent-Le", http1.Disconnected),
    (response()[:-5], http1.TruncatedBody),
    (response(b"", "Transfer-Encoding: chunked", length=False) + chunked(REPLY)[:-3], http1.TruncatedBody),
    (response(gzip.compress(REPLY)[:-8], "Content-Encoding: gzip", length=False), http1.TruncatedBody),
])
def test_an_end_of_stream_too_early_says_what_was_cut(data, error):
    with pytest.raises(error):
        parse(data, 5, eof=True)


# -- through the backend, on a raw socket server ------------------------------------------------------------


class RawServer:
    """A TCP server on loopback that answers each request with the next scripted action: bytes (sent in
    pieces of ``step`` bytes with a pause between them), "reset" (an RST) or "close" (FIN, no answer)."""

    def __init__(self, actions, step: int | None = None):
        self.actions = list(actions)
        self.step = step
        self.connections = 0
        self.requests: list[bytes] = []
        self.answered = 0  # answers written whole

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                self.requests.append(head + await reader.readexactly(length))
                action = self.actions.pop(0) if self.actions else response()
                close = isinstance(action, tuple)  # (bytes,): close once they are sent
                action = action[0] if close else action
                if action == "reset":
                    writer.transport.abort()  # with unsent data gone, the peer sees a reset or an EOF
                    return
                if action == "close":
                    writer.close()
                    return
                step = self.step or len(action)
                for i in range(0, len(action), step):
                    writer.write(action[i:i + step])
                    await writer.drain()
                    await asyncio.sleep(0)
                self.answered += 1
                if close or (b"Content-Length" not in action and b"chunked" not in action):
                    return  # a body without a length ends when the connection closes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ask(actions, step: int | None = None, times: int = 1, **backend):
    """The backend's replies (or errors) for ``times`` requests in a row against a RawServer."""

    async def go():
        async with RawServer(actions, step) as server:
            client = OpenAIHTTPBackend("openai/m", api_base=server.url, timeout_s=GUARD_S, **backend)
            outcomes = []
            try:
                for _ in range(times):
                    try:
                        outcomes.append(await client.complete(REQUEST))
                    except Exception as exc:  # noqa: BLE001 - the outcome under test
                        outcomes.append(exc)
                assert client._pool is not None  # the lean client, not aiohttp
            finally:
                await client.aclose()
            return outcomes, server

    return asyncio.run(asyncio.wait_for(go(), GUARD_S))


def test_answers_arrive_split_into_pieces_over_one_kept_alive_connection():
    chunk_reply = response(b"", "Transfer-Encoding: chunked", length=False) + chunked(REPLY, 5)
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + response()
    outcomes, server = ask([response(), chunk_reply, interim, response()], step=3, times=4)
    assert [o.text for o in outcomes] == ["3"] * 4 and server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert json.loads(first.split(b"\r\n\r\n", 1)[1])["model"] == "m"


def test_a_body_until_close_is_read_and_the_next_request_opens_a_new_connection():
    outcomes, server = ask([response(length=False), response()], step=4, times=2)
    assert [o.text for o in outcomes] == ["3", "3"] and server.connections == 2


@pytest.mark.parametrize("action, kind, words", [
    ("reset", TransientModelError, "connection reset by the server"),
    ("close", TransientModelError, "connection reset by the server"),
    ((response()[:-10],), TransientModelError, "truncated response"),
    ((response(b"", "Transfer-Encoding: chunked", length=False) + chunked(REPLY)[:-9],), TransientModelError,
     "truncated response"),
    ((b"HTTP/1.1 200 OK\r\nContent-Le",), TransientModelError, "connection reset by the server"),
    (b"garbage\r\n\r\n", TransientModelError, "provider unavailable at .*malformed status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", ModelCallError, "larger than 1,000 bytes"),
    (response(b"not json"), TransientModelError, "malformed response: the body is not JSON"),
    (response(REPLY, status="503 Busy", ), TransientModelError, r"HTTP 503"),
    (response(b"<html></html>", "Content-Type: text/html"), ModelCallError, "web page"),
])
def test_hostile_answers_are_classified_as_through_aiohttp(action, kind, words, monkeypatch):
    import psychometrics.models.openai_http as openai_http

    monkeypatch.setattr(openai_http, "MAX_RESPONSE_BYTES", 1000)
    (outcome, after), server = ask([action], step=7, times=2)
    assert isinstance(outcome, kind) and re.search(words, str(outcome)), str(outcome)
    assert after.text == "3"  # the next request gets through (on a new connection if the last one broke)


def test_a_refused_connection_is_unreachable():
    async def port_of_a_closed_server():
        async with RawServer([]) as server:
            return server.url

    url = asyncio.run(port_of_a_closed_server())
    client = OpenAIHTTPBackend("openai/m", api_base=url, timeout_s=GUARD_S)
    with pytest.raises(TransientModelError, match="nothing answers at .*ConnectionRefusedError") as caught:
        asyncio.run(client.complete(REQUEST))
    assert caught.value.unreachable


def test_a_cancelled_request_leaves_no_connection_for_the_next():
    async def go():
        async with RawServer([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nabc"]) as server:
            client = OpenAIHTTPBackend("openai/m", api_base=server.url, timeout_s=GUARD_S)
            task = asyncio.ensure_future(client.complete(REQUEST))
            while not server.answered:  # the head and 3 of the 50 bytes promised are on their way
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            reply = await client.complete(REQUEST)  # must not read the rest of the cancelled answer
            await client.aclose()
            return reply, server.connections

    reply, connections = asyncio.run(asyncio.wait_for(go(), GUARD_S))
    assert reply.text == "3" and connections == 2


def test_only_plain_http_without_a_proxy_or_odd_headers_takes_the_lean_client(monkeypatch):
    assert _raw_target("http://127.0.0.1:8000/v1/chat/completions?x=1") == (
        "127.0.0.1", 8000, "127.0.0.1:8000", "/v1/chat/completions?x=1")
    assert _raw_target("http://[::1]/v1/chat/completions") == ("::1", 80, "[::1]", "/v1/chat/completions")
    assert _raw_target("https://api.example.com/v1/chat/completions") is None
    assert _raw_target("http://example.com/caf\u00e9/chat/completions") is None  # aiohttp quotes it
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert OpenAIHTTPBackend("openai/m", api_base="http://models.example/v1")._raw_target is None
    assert OpenAIHTTPBackend("openai/m", api_base="http://127.0.0.1:9/v1")._raw_target is not None

    async def pool_of(backend):
        try:
            return backend._pool_for_loop()
        finally:
            await backend.aclose()

    odd = OpenAIHTTPBackend("openai/m", api_base="http://127.0.0.1:9/v1",
                            extra_params={"extra_headers": {"X-A": "1\r\nX-Injected: 2"}})
    assert asyncio.run(pool_of(odd)) is None  # a line break in a header: aiohttp refuses it, as before


def test_a_connection_idle_past_its_time_is_not_reused(monkeypatch):
    monkeypatch.setattr(http1, "IDLE_S", -1.0)  # every idle connection is past its time
    outcomes, server = ask([], times=3)
    assert [o.text for o in outcomes] == ["3"] * 3 and server.connections == 3
