"""A lean HTTP/1.1 client on plain asyncio, for ``POST`` to one ``http://`` host and port.

:mod:`.openai_http` sends every request of a run to one server. Through aiohttp each request costs
about a third of a millisecond of CPU (request and response objects, a stream reader, header
multidicts, timers), half of the client's whole CPU per request at 256 in flight; here a request is
one ``transport.write`` of bytes built by the caller and a response is parsed in place from the bytes
that arrive (:class:`ResponseParser`), on a pool of kept-alive connections.

It speaks only what the backend needs, and is strict about the rest: a response is framed by
``Content-Length``, by ``Transfer-Encoding: chunked`` (extensions ignored, trailers skipped) or by the
server closing the connection; interim 1xx responses are skipped; ``gzip``/``deflate`` bodies are
inflated. Anything else (a status line that is not HTTP/1.x, a header line without a name, a bad chunk
size, a head or body past its limit) is an error of its own class, so the caller classifies failures
exactly as it does aiohttp's: :class:`ConnectFailed` and :class:`ConnectTimedOut` (the server never saw
the request), :class:`Disconnected` (closed or reset before the response's head was whole),
:class:`TruncatedBody`, :class:`BadResponse`, :class:`BodyTooLarge`. Nothing is retried here: a retry
is the worker pool's decision.
"""

from __future__ import annotations

import asyncio
import re
import zlib

MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one response
IDLE_S = 4.0  # an idle connection older than this is closed, not reused: servers close theirs after ~5 s
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")


def is_header_name(name: str) -> bool:
    """Whether ``name`` may be sent as a header name (an HTTP token)."""
    return bool(_TOKEN.fullmatch(name))


def is_header_value(value: str) -> bool:
    """Whether ``value`` may be sent as a header value: no line breaks or other control characters."""
    return all(c == "\t" or " " <= c != "\x7f" for c in value)


class HTTPClientError(Exception):
    """Something below HTTP's semantics went wrong; the message says what, without any header value."""


class ConnectFailed(HTTPClientError):
    """No connection could be made (refused, unknown host, no route): the server never saw the request."""


class ConnectTimedOut(HTTPClientError):
    """No connection within the connect timeout."""


class Disconnected(HTTPClientError):
    """The server closed or reset the connection before the response's head was whole."""


class TruncatedBody(HTTPClientError):
    """The connection closed before the whole body arrived."""


class BadResponse(HTTPClientError):
    """Bytes that are not an HTTP/1.x response."""


class BodyTooLarge(HTTPClientError):
    """A body (as sent or as inflated) past the caller's limit."""


class Headers(dict):
    """Response headers by lower-case name (repeated headers joined with ", "); :meth:`get` takes any case."""

    def get(self, name, default=None):  # noqa: D102 - dict's
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())


class ResponseParser:
    """One response at a time, fed bytes as they arrive (:meth:`feed`) and told of the end of the
    stream (:meth:`feed_eof`). When a response is whole, :attr:`done` is set and :attr:`status`,
    :attr:`headers`, :attr:`body` hold it; :attr:`reusable` says whether the connection may carry the
    next request (HTTP/1.1 without ``Connection: close``, a framed body, nothing left over)."""

    HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, UNTIL_CLOSE = range(7)

    def __init__(self, max_body_bytes: int):
        self.max_body_bytes = max_body_bytes
        self.buffer = bytearray()
        self.state = self.HEAD
        self.seen_any = False  # a byte of this response arrived
        self.done = False
        self.status = 0
        self.headers = Headers()
        self.body = b""
        self.reusable = False
        self._keep_alive = False
        self._chunks: list[bytes] = []
        self._size = 0
        self._remaining = 0

    # -- feeding ------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Take ``data``; raise an :class:`HTTPClientError` for bytes that cannot be a response."""
        if data:
            self.seen_any = True
            self.buffer += data
            self._advance()

    def feed_eof(self) -> None:
        """The server closed its side: the end of a body read until close; otherwise an error saying
        what was cut short."""
        if self.done:
            return
        if self.state == self.UNTIL_CLOSE:
            self._take(bytes(self.buffer))
            self.buffer.clear()
            self._finish(reusable=False)
        elif self.state == self.HEAD:
            raise Disconnected("server disconnected" + (" in the middle of the response head" if self.seen_any else ""))
        else:
            raise TruncatedBody("the connection closed before the whole body arrived")

    # -- states -------------------------------------------------------------------------------------
    def _advance(self) -> None:
        buffer = self.buffer
        while not self.done:
            state = self.state
            if state == self.HEAD:
                if not self._head():
                    return
            elif state == self.LENGTH:
                if not buffer:
                    return
                take = min(self._remaining, len(buffer))
                self._chunks.append(bytes(buffer[:take]))
                del buffer[:take]
                self._remaining -= take
                if not self._remaining:
                    self._finish(self._keep_alive)
            elif state == self.CHUNK_SIZE or state == self.TRAILERS:
                end = buffer.find(b"\n")
                if end < 0:
                    if len(buffer) > 4096:
                        raise BadResponse("a chunk-size or trailer line longer than 4096 bytes")
                    return
                line = bytes(buffer[:end]).rstrip(b"\r")
                del buffer[:end + 1]
                if state == self.TRAILERS:
                    if not line:
                        self._finish(self._keep_alive)
                    continue
                match = _CHUNK_SIZE.fullmatch(line)
                if match is None:
                    raise BadResponse("malformed chunk size line")
                size = int(match.group(1), 16)
                if size == 0:
                    self.state = self.TRAILERS
                else:
                    self._check_size(self._size + size)
                    self._remaining = size
                    self.state = self.CHUNK_DATA
            elif state == self.CHUNK_DATA:
                if not buffer:
                    return
                take = min(self._remaining, len(buffer))
                self._take(bytes(buffer[:take]))
                del buffer[:take]
                self._remaining -= take
                if not self._remaining:
                    self.state = self.CHUNK_END
            elif state == self.CHUNK_END:
                if len(buffer) < 2 and buffer[:1] != b"\n":
                    return
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                elif buffer[:1] == b"\n":
                    del buffer[:1]
                else:
                    raise BadResponse("a chunk does not end where its size says")
                self.state = self.CHUNK_SIZE
            else:  # UNTIL_CLOSE
                if buffer:
                    self._take(bytes(buffer))
                    buffer.clear()
                return

    def _head(self) -> bool:
        buffer = self.buffer
        end = _HEAD_END.search(buffer)
        if end is None:
            if len(buffer) > MAX_HEAD_BYTES:
                raise BadResponse(f"a response head longer than {MAX_HEAD_BYTES} bytes")
            if len(buffer) >= 5 and not buffer.startswith(b"HTTP/"):
                raise BadResponse("the server's answer does not start with an HTTP status line")
            return False
        if end.start() > MAX_HEAD_BYTES:
            raise BadResponse(f"a response head longer than {MAX_HEAD_BYTES} bytes")
        lines = bytes(buffer[:end.start()]).split(b"\n")
        del buffer[:end.end()]
        status_line = lines[0].rstrip(b"\r")
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise BadResponse("malformed status line " + repr(status_line[:40].decode("latin-1"))[1:-1][:60])
        status = int(match.group(2))
        headers = Headers()
        for raw in lines[1:]:
            line = raw.rstrip(b"\r").decode("latin-1")
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                raise BadResponse("malformed header line in the response")
            name, value = name.lower(), value.strip(" \t")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if 100 <= status < 200:
            if status == 101:
                raise BadResponse("the server switched protocols (HTTP 101)")
            return True  # an interim response: the real one follows
        self.status, self.headers = status, headers
        connection = headers.get("connection", "").lower()
        if match.group(1) == b"1":
            self._keep_alive = "close" not in connection
        else:
            self._keep_alive = "keep-alive" in connection
        encoding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if status in (204, 304):
            self._finish(self._keep_alive)
        elif encoding is not None:
            codings = [c.strip().lower() for c in encoding.split(",")]
            if codings[-1] == "chunked":
                self.state = self.CHUNK_SIZE
                if length is not None:  # both: chunked wins, but the connection cannot be trusted after
                    self._keep_alive = False
            else:
                self.state, self._keep_alive = self.UNTIL_CLOSE, False
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            if len(values) != 1 or not (value := values.pop()).isdigit() or not value.isascii():
                raise BadResponse("malformed Content-Length in the response")
            self._remaining = int(value)
            self._check_size(self._remaining)
            if self._remaining:
                self.state = self.LENGTH
            else:
                self._finish(self._keep_alive)
        else:
            self.state, self._keep_alive = self.UNTIL_CLOSE, False
        return True

    # -- the body -----------------------------------------------------------------------------------
    def _check_size(self, size: int) -> None:
        if size > self.max_body_bytes:
            raise BodyTooLarge(f"the response is larger than {self.max_body_bytes:,} bytes")

    def _take(self, data: bytes) -> None:
        if data:
            self._size += len(data)
            self._check_size(self._size)
            self._chunks.append(data)

    def _finish(self, reusable: bool) -> None:
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        coding = self.headers.get("content-encoding", "identity").strip().lower()
        if coding in ("gzip", "x-gzip", "deflate") and body:
            body = self._inflate(body, coding)
        elif coding not in ("identity", ""):
            raise BadResponse(f"a response body in an encoding this client does not read ({coding[:40]})")
        self.body = body
        self.done = True
        self.reusable = reusable and not self.buffer

    def _inflate(self, body: bytes, coding: str) -> bytes:
        wbits = 16 + zlib.MAX_WBITS if coding != "deflate" else (zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS)
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, self.max_body_bytes + 1)
        except zlib.error:
            raise BadResponse(f"a {coding} body that does not inflate") from None
        if len(out) > self.max_body_bytes or inflater.unconsumed_tail:
            raise BodyTooLarge(f"the response is larger than {self.max_body_bytes:,} bytes")
        if not inflater.eof:
            raise TruncatedBody(f"the {coding} body ends before its end")
        return out


class _Connection(asyncio.Protocol):
    """One kept-alive connection; carries one request at a time."""

    def __init__(self, max_body_bytes: int):
        self.max_body_bytes = max_body_bytes
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future | None = None
        self.idle_since = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # bytes nobody asked for: the connection cannot carry a request any more
            self.abort()
            return
        try:
            parser.feed(data)
        except HTTPClientError as exc:
            self._fail(exc)
            return
        if parser.done:
            self._resolve()

    def eof_received(self) -> bool:
        parser = self.parser
        if parser is not None:
            try:
                parser.feed_eof()
            except HTTPClientError as exc:
                self._fail(exc)
                return False
            self._resolve()
        self.closed = True
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        parser, waiter = self.parser, self.waiter
        if waiter is not None and not waiter.done():
            if parser is not None and parser.state == parser.HEAD:
                detail = "connection reset by the server" if isinstance(exc, ConnectionResetError) else "server disconnected"
                waiter.set_exception(Disconnected(detail))
            elif parser is not None and parser.state == parser.UNTIL_CLOSE and exc is None:
                self.eof_received()
            else:
                waiter.set_exception(TruncatedBody("the connection closed before the whole body arrived"))

    def _resolve(self) -> None:
        parser, waiter = self.parser, self.waiter
        assert parser is not None  # resolved only while a response is being read
        self.parser = None
        if not parser.reusable:
            self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_result(parser)

    def _fail(self, exc: HTTPClientError) -> None:
        waiter = self.waiter
        self.parser = None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class ConnectionPool:
    """Kept-alive connections to one ``host:port``, as many as requests in flight (no cap, like the
    aiohttp connector it replaces); :meth:`send` writes a whole request and returns the parsed response."""

    def __init__(self, host: str, port: int, *, connect_timeout_s: float, max_body_bytes: int):
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.max_body_bytes = max_body_bytes
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._loop = asyncio.get_running_loop()

    async def _connect(self) -> _Connection:
        loop = self._loop
        max_body = self.max_body_bytes
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, connection = await loop.create_connection(lambda: _Connection(max_body), self.host, self.port)
        except TimeoutError:
            raise ConnectTimedOut(f"no connection within {self.connect_timeout_s:g} s") from None
        except OSError as exc:  # refused, unknown host (gaierror), no route
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from None
        return connection

    async def send(self, request: bytes) -> ResponseParser:
        """Write ``request`` (a whole HTTP/1.1 request) on an idle connection or a new one; the response
        once whole. The connection goes back to the pool only if its response said it may."""
        idle = self._idle
        connection = None
        if idle:
            fresh = self._loop.time() - IDLE_S
            while idle:
                candidate = idle.pop()
                if not candidate.closed and candidate.idle_since > fresh:
                    connection = candidate
                    break
                candidate.abort()  # closed by the server, or idle so long it may be about to be
        if connection is None:
            connection = await self._connect()
        waiter = self._loop.create_future()
        connection.parser = ResponseParser(self.max_body_bytes)
        connection.waiter = waiter
        self._busy.add(connection)
        try:
            assert connection.transport is not None  # connected, or _connect raised
            connection.transport.write(request)
            parser = await waiter
        except BaseException:
            connection.parser = None
            connection.abort()  # mid-request (cancelled, failed): never reused
            raise
        finally:
            connection.waiter = None
            self._busy.discard(connection)
        if not connection.closed:
            connection.idle_since = self._loop.time()
            idle.append(connection)
        return parser

    def close(self) -> None:
        """Close every connection, idle or in use."""
        for connection in [*self._idle, *self._busy]:
            try:
                connection.abort()
            except RuntimeError:  # its loop is closed: the sockets went with it
                pass
        self._idle.clear()
        self._busy.clear()
