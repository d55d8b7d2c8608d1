"""The hop-floor relay copies an HTTP exchange both ways unchanged, keep-alive included."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx

from benchmarks.procs import REPO, free_port


async def test_the_relay_passes_requests_and_answers_through_unchanged_on_one_connection() -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (head := await reader.readuntil(b"\r\n\r\n")) is not None:
            path = head.split(b" ")[1]
            body = b'{"path": "' + path + b'"}'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    upstream_port = server.sockets[0].getsockname()[1]
    port = free_port()
    command = ["-m", "benchmarks.hop_relay", "--port", str(port), "--upstream-port", str(upstream_port)]
    relay = subprocess.Popen([sys.executable, *command], cwd=REPO)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):
                try:
                    await client.get("/ready")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            answers = [(await client.get(f"/p{i}")).json() for i in range(3)]
        assert answers == [{"path": f"/p{i}"} for i in range(3)]
    finally:
        relay.terminate()
        relay.wait(10)
        server.close()
