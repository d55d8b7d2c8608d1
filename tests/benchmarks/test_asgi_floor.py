"""The ASGI floor proxy forwards each request's body to the upstream's chat completions and answers with the
upstream's status and body, on kept-alive connections."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx

from benchmarks.procs import REPO, free_port


async def test_the_proxy_forwards_bodies_to_chat_completions_and_answers_with_the_upstreams_reply() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            seen.append((head.split(b" ")[1], body))
            answer = b'{"echo": ' + body + b"}"
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer))
            await writer.drain()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    upstream_port = server.sockets[0].getsockname()[1]
    port = free_port()
    command = ["-m", "benchmarks.asgi_floor", "--port", str(port)]
    proxy = subprocess.Popen(
        [sys.executable, *command, "--upstream", f"http://127.0.0.1:{upstream_port}/v1"], cwd=REPO
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            answers = [await client.post("/v1/chat/completions", json={"n": i}) for i in range(3)]
        assert [(a.status_code, a.json()) for a in answers] == [(201, {"echo": {"n": i}}) for i in range(3)]
        assert [path for path, _ in seen] == [b"/v1/chat/completions"] * 3
    finally:
        proxy.terminate()
        proxy.wait(10)
        server.close()
