"""A lean HTTP/1.1 client for one upstream origin: kept-alive connections, parsed by httptools.

The ``openai_upstream`` backend sends every request through it. It does what that backend needs and no
more: one origin (http or https), a bounded pool of kept-alive connections, a connect timeout, a timeout on
each wait for bytes, chunked and content-length bodies, gzip/deflate answers, and back-pressure on a slow
reader. No cookies, redirects, proxies or tracing: an upstream is a fixed endpoint the operator declared.

Why not aiohttp: on the gateway's upstream path at one request at a time, aiohttp's client cost about
0.2 ms of the front's CPU a request more than this one (the same uvicorn front, the same mock upstream, on
loopback); the overhead benchmark's c=1 figure is mostly such fixed costs.

Failures are this module's types, so a caller can tell the ones that got no answer at all (safe to send
again) from the ones that did: ``ConnectFailed``, ``ConnectTimeout`` and ``Disconnected`` with
``answered=False`` mean the upstream sent nothing back; ``PoolTimeout`` means no connection was free.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

IDLE_KEEP_S = 15.0
"""An idle connection older than this is closed rather than reused (servers close theirs after 5-75 s)."""
_PAUSE_AT = 1 << 20
"""Bytes buffered from the upstream before reading pauses until the caller takes them."""


class HttpError(Exception):
    """A request that did not get a whole answer."""


class ConnectFailed(HttpError):
    """No connection could be opened (refused, unreachable, name or TLS failure): nothing was sent."""


class ConnectTimeout(HttpError, TimeoutError):
    """No connection was opened within the connect timeout: nothing was sent."""


class PoolTimeout(HttpError, TimeoutError):
    """Every connection stayed busy for as long as a request may wait for one: nothing was sent."""


class ReadTimeout(HttpError, TimeoutError):
    """The upstream sent nothing for as long as a read may wait."""


class Disconnected(HttpError):
    """The connection closed or broke; ``answered``: after the upstream had begun its answer."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host, port and the path every request path is appended to."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class _Connection(asyncio.Protocol):
    """One socket to the origin, answering one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.error: HttpError | None = None
        self.answered = False  # the current request's status line has come
        self.complete = False  # ... and its whole body
        self.keep_alive = False  # ... and the connection stays open after it
        self.status = 0
        self.headers: dict[str, str] = {}
        self.pieces: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.idle_since = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Disconnected(f"unreadable answer ({exc})", answered=self.answered))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            reason = "reset" if exc is not None else "closed"
            self._fail(Disconnected(f"the upstream {reason} the connection", answered=self.answered))

    # -- httptools callbacks ------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:  # httptools joins a header split over reads
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # read now: the parser resets after the body
        self.answered = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)
        self.buffered += len(body)
        if self.buffered > _PAUSE_AT and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # -- used by the pool and the response ----------------------------------------------------------

    def begin(self) -> None:
        self.answered = self.complete = self.keep_alive = False
        self.status, self.headers, self.error = 0, {}, None
        self.pieces.clear()
        self.buffered = 0

    def take(self) -> bytes:
        data = b"".join(self.pieces)
        self.pieces.clear()
        self.buffered = 0
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        return data

    async def wait(self, timeout_s: float) -> None:
        """Until the parser has news (or the connection an error); ReadTimeout after ``timeout_s``."""
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None
        if self.error is not None:
            raise self.error

    def reusable(self, now: float) -> bool:
        return not self.closed and now - self.idle_since < IDLE_KEEP_S

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # at once: the upstream sees the request go away

    def _fail(self, error: HttpError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout("the upstream sent nothing in time"))


class Response:
    """An answer's status and headers; its body is read with ``read`` or ``pieces``, then the connection
    goes back to the pool (``release``) or is closed (``close``, also on any failure)."""

    def __init__(self, pool: Http1Pool, connection: _Connection, read_timeout_s: float) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self.status = connection.status
        self.headers: Mapping[str, str] = connection.headers
        self.read_timeout_s = read_timeout_s
        encoding = connection.headers.get("content-encoding", "identity").lower()
        self._inflate = None  # most answers are not compressed: no decompressor for them
        if encoding in ("gzip", "deflate"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)

    async def pieces(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, each wait for bytes limited to ``read_timeout_s``."""
        connection = self._require()
        try:
            while True:
                if connection.pieces:
                    yield self._decode(connection.take())
                    continue
                if connection.complete:
                    break
                await connection.wait(self.read_timeout_s)
            if self._inflate is not None:
                yield self._inflate.flush()
        except BaseException:
            self.close()
            raise
        self.release()

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (or its first ``limit`` bytes, closing the connection if more remain)."""
        pieces = self.pieces()
        parts: list[bytes] = []
        size = 0
        try:
            async for piece in pieces:
                parts.append(piece)
                size += len(piece)
                if limit is not None and size >= limit:
                    self.close()
                    break
        finally:
            await pieces.aclose()
        return b"".join(parts)[:limit]

    def release(self) -> None:
        """Back to the pool if the answer was read to its end on a connection that stays open."""
        connection = self._connection
        if connection is not None and connection.complete and connection.keep_alive and not connection.closed:
            self._connection = None
            self._pool._put_back(connection)
        else:
            self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            self._pool._gone()

    def _require(self) -> _Connection:
        if self._connection is None:
            raise Disconnected("the answer was already read or closed", answered=True)
        return self._connection

    def _decode(self, data: bytes) -> bytes:
        if self._inflate is None:
            return data
        try:
            return self._inflate.decompress(data)
        except zlib.error:
            raise Disconnected("the upstream sent a body that does not decompress", answered=True) from None


class Http1Pool:
    """At most ``max_connections`` kept-alive connections to one origin."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        connect_timeout_s: float,
        pool_timeout_s: float,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.origin = Origin.parse(url)
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.pool_timeout_s = pool_timeout_s
        self._ssl = ssl_context or (ssl.create_default_context() if self.origin.scheme == "https" else None)
        fixed = {"Host": self.origin.host_header, "Accept-Encoding": "gzip, deflate", **(headers or {})}
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items()).encode("latin-1")
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        headers: Mapping[str, str] | None = None,
        read_timeout_s: float,
    ) -> Response:
        """Send one request and wait for its status line and headers (each wait up to ``read_timeout_s``).

        A kept-alive connection the upstream had closed meanwhile is replaced by a new one at once."""
        target = (self.origin.prefix + path).encode("latin-1")
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items()).encode("latin-1")
        length = b"Content-Length: %d\r\n" % len(body) if body or method in ("POST", "PUT") else b""
        data = b"".join(
            (method.encode(), b" ", target, b" HTTP/1.1\r\n", self._head, extra, length, b"\r\n", body)
        )
        while True:
            connection, reused = await self._acquire()
            connection.begin()
            assert connection.transport is not None
            connection.transport.write(data)
            try:
                while not connection.answered:
                    await connection.wait(read_timeout_s)
            except Disconnected as exc:
                connection.close()
                self._gone()
                if reused and not exc.answered:
                    continue  # the upstream had closed it while idle: it never read this request
                raise
            except BaseException:
                connection.close()
                self._gone()
                raise
            return Response(self, connection, read_timeout_s)

    async def close(self) -> None:
        self._closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectFailed("the client is closed"))

    # -- the pool -----------------------------------------------------------------------------------

    async def _acquire(self) -> tuple[_Connection, bool]:
        deadline = time.monotonic() + self.pool_timeout_s
        while True:
            if self._closed:
                raise ConnectFailed("the client is closed")
            now = time.monotonic()
            while self._idle:
                connection = self._idle.pop()
                if connection.reusable(now):
                    return connection, True
                connection.close()
                self._open -= 1
            if self._open < self.max_connections:
                self._open += 1
                try:
                    return await self._connect(), False
                except BaseException:
                    self._gone()
                    raise
            if now >= deadline:
                raise PoolTimeout("every connection to the upstream stayed busy")
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await asyncio.wait_for(waiter, deadline - now)
            except TimeoutError:
                raise PoolTimeout("every connection to the upstream stayed busy") from None
            except BaseException:  # cancelled: a connection freed for this request goes to the next
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._wake_one()
                raise
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        host = self.origin.host if self._ssl is not None else None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, connection = await loop.create_connection(
                    _Connection, self.origin.host, self.origin.port, ssl=self._ssl, server_hostname=host
                )
        except TimeoutError:
            raise ConnectTimeout("no connection to the upstream in time") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to the upstream ({type(exc).__name__})") from None
        return connection

    def _put_back(self, connection: _Connection) -> None:
        if self._closed:
            connection.close()
            self._open -= 1
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        self._wake_one()

    def _gone(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
