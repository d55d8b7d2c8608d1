"""The floor of any gateway hop on this host: a TCP relay in front of the mock upstream that copies bytes.

    python -m benchmarks.hop_relay --port P --upstream-port U

Each client connection gets its own connection to the upstream; bytes are copied both ways as they
arrive, with uvloop, and nothing is parsed. What this relay adds over reaching the mock directly is what
one more process in the path costs here at the least: two more wake-ups of a process, two more socket
writes and reads. The overhead benchmark measures it in the same alternating rounds as the gateway, so a
reader sees which part of the gateway's added latency any proxy would pay on this host.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

import uvloop


class _Pipe(asyncio.Protocol):
    """One direction's receiver: what it reads is written to ``peer``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCP transport

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.pending.append(data)  # the upstream connection is still opening
        else:
            self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()

    def attach(self, peer: asyncio.Transport) -> None:
        self.peer = peer
        for data in self.pending:
            peer.write(data)
        self.pending = []


async def _serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()

    def accepted() -> _Pipe:
        client_side = _Pipe()

        async def connect() -> None:
            try:
                upstream, upstream_side = await loop.create_connection(_Pipe, "127.0.0.1", upstream_port)
            except OSError:
                if client_side.transport is not None:
                    client_side.transport.close()
                return
            assert client_side.transport is not None
            upstream_side.attach(client_side.transport)
            client_side.attach(upstream)

        loop.create_task(connect())
        return client_side

    server = await loop.create_server(accepted, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(_serve(args.port, args.upstream_port))


if __name__ == "__main__":
    main()
