"""The floor of a Python gateway on this host: a bare ASGI proxy on the gateway's own server stack.

    python -m benchmarks.asgi_floor --port P --upstream URL

uvicorn with uvloop and httptools (as ``maas serve`` runs), no framework, and the gateway's own HTTP
client (``backends.http1``): each request's body goes to ``URL/chat/completions`` as it came, and the
upstream's answer comes back as it went. No key is checked, nothing is validated, priced or recorded.
What it adds over reaching the mock directly is what any gateway written on this stack pays here before
doing any of its own work; the overhead benchmark measures it in the same alternating c=1 rounds as the
gateway and names it beside the gateway's figure.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.types import Receive, Scope, Send

from backends.http1 import Http1Pool

JSON = [(b"content-type", b"application/json")]


class Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.pool: Http1Pool | None = None  # made on the server's loop, at the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/health":
            await self._answer(send, 200, b"{}")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.pool is None:
            self.pool = Http1Pool(
                self.upstream,
                max_connections=256,
                connect_timeout_s=5,
                pool_timeout_s=60,
                headers={"Content-Type": "application/json"},
            )
        response = await self.pool.request("POST", "/chat/completions", body, read_timeout_s=60)
        answer = await response.read()
        response.release()
        await self._answer(send, response.status, answer)

    @staticmethod
    async def _answer(send: Send, status: int, body: bytes) -> None:
        headers = [*JSON, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, ending in /v1")
    args = parser.parse_args()
    uvicorn.run(
        Proxy(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        lifespan="off",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
