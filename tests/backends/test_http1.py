"""The upstream HTTP/1.1 client against a scripted loopback server, on asyncio's loop and on uvloop (the
gateway's): connections are kept and reused, answers stream as they arrive, and every failure says
whether the upstream had answered."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
import uvloop

from backends.http1 import (
    ConnectFailed,
    Disconnected,
    Http1Pool,
    PoolTimeout,
    ReadTimeout,
)

Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]
"""Answers one request (its head and body as bytes); returns whether the connection stays open."""


@pytest.fixture(params=["asyncio", "uvloop"])
def runner(request: pytest.FixtureRequest) -> Iterator[asyncio.Runner]:
    """Runs a scenario on asyncio's own loop or on uvloop (whose transports are not asyncio's classes)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if request.param == "uvloop" else None) as run:
        yield run


@dataclass
class Server:
    handler: Handler
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.handler(request, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def answer(body: bytes, *, status: int = 200, extra: str = "") -> Handler:
    async def handle(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body)
        await writer.drain()
        return "connection: close" not in extra

    return handle


async def serve(handler: Handler) -> Server:
    """A server for one scenario (its tasks end with the scenario's loop)."""
    return await Server(handler).start()


def pool(url: str, **options: float) -> Http1Pool:
    settings = {"max_connections": 4, "connect_timeout_s": 1.0, "pool_timeout_s": 1.0, **options}
    return Http1Pool(
        url,
        max_connections=int(settings["max_connections"]),
        connect_timeout_s=settings["connect_timeout_s"],
        pool_timeout_s=settings["pool_timeout_s"],
        headers={"Authorization": "Bearer k"},
    )


def test_sequential_requests_reuse_one_kept_alive_connection(runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        server = await serve(answer(b'{"ok": true}'))
        client = pool(server.url)
        for _ in range(3):
            response = await client.request("POST", "/chat/completions", b"{}", read_timeout_s=1)
            assert (response.status, await response.read()) == (200, b'{"ok": true}')
        assert server.connections == 1
        head = server.requests[0].split(b"\r\n")
        assert head[0] == b"POST /v1/chat/completions HTTP/1.1"
        assert b"Authorization: Bearer k" in head and f"Host: 127.0.0.1:{server.port}".encode() in head
        await client.close()

    runner.run(scenario())


def test_an_answer_that_closes_its_connection_is_not_reused(runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        server = await serve(answer(b"x", extra="connection: close\r\n"))
        client = pool(server.url)
        for _ in range(2):
            response = await client.request("GET", "/models", read_timeout_s=1)
            assert await response.read() == b"x"
        assert server.connections == 2
        await client.close()

    runner.run(scenario())


def test_a_chunked_answer_streams_each_piece_as_it_is_sent(runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def chunked(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            for piece in (b"data: one\n\n", b"data: two\n\n"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await release.wait()  # the client must see this piece before the next is sent
                release.clear()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True

        server = await serve(chunked)
        client = pool(server.url)
        response = await client.request("POST", "/chat/completions", b"{}", read_timeout_s=1)
        assert response.headers["content-type"] == "text/event-stream"
        seen = []
        async for piece in response.pieces():
            seen.append(piece)
            release.set()
        assert seen == [b"data: one\n\n", b"data: two\n\n"]
        again = await client.request("POST", "/chat/completions", b"{}", read_timeout_s=1)
        body = b""
        async for piece in again.pieces():
            body += piece
            release.set()
        assert body == b"data: one\n\ndata: two\n\n"
        assert server.connections == 1  # read to its end: kept for the next request
        await client.close()

    runner.run(scenario())


def test_a_gzip_answer_is_decompressed(runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        body = b'{"text": "' + b"a" * 5000 + b'"}'
        server = await serve(answer(gzip.compress(body), extra="content-encoding: gzip\r\n"))
        client = pool(server.url)
        response = await client.request("GET", "/models", read_timeout_s=1)
        assert await response.read() == body
        await client.close()

    runner.run(scenario())


def test_a_connection_the_upstream_closed_while_idle_is_replaced_without_an_error(
    runner: asyncio.Runner,
) -> None:
    async def scenario() -> None:
        async def once(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            await answer(b"x")(request, reader, writer)
            return False  # closes after answering, without saying so (an idle timeout)

        server = await serve(once)
        client = pool(server.url)
        for _ in range(3):
            response = await client.request("POST", "/chat/completions", b"{}", read_timeout_s=1)
            assert await response.read() == b"x"
            await asyncio.sleep(0.05)
        assert server.connections == 3 and len(server.requests) == 3
        await client.close()

    runner.run(scenario())


def test_a_connection_closed_before_an_answer_is_reported_unanswered(runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        async def hang_up(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            return False

        server = await serve(hang_up)
        client = pool(server.url)
        with pytest.raises(Disconnected) as failed:
            await client.request("POST", "/chat/completions", b"{}", read_timeout_s=1)
        assert failed.value.answered is False and len(server.requests) == 1  # a new connection: not resent
        await client.close()

    runner.run(scenario())


def test_an_answer_cut_mid_body_is_reported_answered(runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        async def cut(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart")
            await writer.drain()
            return False

        server = await serve(cut)
        client = pool(server.url)
        response = await client.request("POST", "/chat/completions", b"{}", read_timeout_s=1)
        with pytest.raises(Disconnected) as failed:
            await response.read()
        assert failed.value.answered is True
        await client.close()

    runner.run(scenario())


def test_a_refused_connection_is_connect_failed(runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = pool(f"http://127.0.0.1:{port}")
        with pytest.raises(ConnectFailed):
            await client.request("GET", "/models", read_timeout_s=1)
        await client.close()

    runner.run(scenario())


def test_silence_past_the_read_timeout_is_a_read_timeout(runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        async def silent(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            await asyncio.sleep(30)
            return False

        server = await serve(silent)
        client = pool(server.url)
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            await client.request("POST", "/chat/completions", b"{}", read_timeout_s=0.3)
        assert 0.25 < time.monotonic() - started < 2
        await client.close()

    runner.run(scenario())


def test_a_request_waits_for_a_busy_pool_then_times_out(runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        async def slow(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            await asyncio.sleep(0.6)
            return await answer(b"x")(request, reader, writer)

        server = await serve(slow)
        client = pool(server.url, max_connections=1, pool_timeout_s=0.2)

        async def call() -> bytes:
            response = await client.request("POST", "/chat/completions", b"{}", read_timeout_s=2)
            return await response.read()

        holding = asyncio.create_task(call())
        await asyncio.sleep(0.1)
        with pytest.raises(PoolTimeout):
            await call()
        assert await holding == b"x"
        patient = pool(server.url, max_connections=1, pool_timeout_s=2)
        client = patient
        both = await asyncio.gather(call(), call())  # the second waits for the first's connection
        assert both == [b"x", b"x"] and server.connections == 2
        await patient.close()

    runner.run(scenario())


def test_a_slow_reader_pauses_the_upstream_instead_of_buffering_everything(runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        size = 8 << 20

        async def big(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
            for _ in range(size >> 16):
                writer.write(b"z" * (1 << 16))
                await writer.drain()
            return True

        server = await serve(big)
        client = pool(server.url)
        response = await client.request("GET", "/models", read_timeout_s=2)
        pieces = response.pieces()
        first = await anext(pieces)
        await asyncio.sleep(0.3)  # the server writes on while nobody reads
        connection = response._connection
        assert connection is not None and connection.paused and connection.buffered < 4 << 20
        total = len(first) + sum([len(p) async for p in pieces])
        assert total == size
        await client.close()

    runner.run(scenario())
