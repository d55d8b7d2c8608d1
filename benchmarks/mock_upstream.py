"""A fast mock OpenAI upstream: a fixed number of tokens at a fixed inter-token delay, stream or not.

    python -m benchmarks.mock_upstream --port 9000 [--options '{"tokens": 16}']

``--options`` are the fixed-rate engine's (``benchmarks.fixed_rate_engine.FixedRateOptions``), so the
mock and the engine behind the gateway pace answers identically. ``POST /v1/chat/completions`` answers
``max_tokens`` (else ``tokens``) tokens: the first at once, then one every ``inter_token_s(count)``.
Streams look like vLLM's: the role rides on the first token's chunk, one chunk per token,
``finish_reason`` on the last, a usage chunk when ``stream_options.include_usage`` asks. A plain ASGI app
on uvicorn (no framework) so that the mock costs as little CPU as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.fixed_rate_engine import PROMPT_TOKENS, TOKEN, FixedRateOptions

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class MockUpstream:
    """The ASGI app."""

    def __init__(self, options: FixedRateOptions) -> None:
        self.options = options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] == "GET" and path in ("/health", "/v1/models"):
            body = {"object": "list", "data": [{"id": "mock", "object": "model", "owned_by": "bench"}]}
            await _send_json(send, body)
            return
        if scope["method"] != "POST" or path != "/v1/chat/completions":
            await _send_json(send, {"error": {"message": "not found"}}, status=404)
            return
        request = json.loads(await _read_body(receive))
        count = int(request.get("max_tokens") or request.get("max_completion_tokens") or self.options.tokens)
        model = str(request.get("model", "mock"))
        if request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            await self._stream(send, model, count, include_usage)
        else:
            await self._whole(send, model, count)

    async def _tokens(self, count: int) -> None:
        """Wait as long as producing ``count`` tokens takes (the first one is immediate)."""
        delay = self.options.inter_token_s(count)
        for _ in range(count - 1):
            await _pause(delay)

    async def _whole(self, send: Send, model: str, count: int) -> None:
        await self._tokens(count)
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": TOKEN * count},
                    "finish_reason": "length",
                }
            ],
            "usage": _usage(count),
        }
        await _send_json(send, body)

    async def _stream(self, send: Send, model: str, count: int, include_usage: bool) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        base: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        delay = self.options.inter_token_s(count)
        for i in range(count):
            if i:
                await _pause(delay)
            delta: dict[str, str] = {"role": "assistant", "content": TOKEN} if i == 0 else {"content": TOKEN}
            choice = {"index": 0, "delta": delta, "finish_reason": "length" if i == count - 1 else None}
            await _send_event(send, {**base, "choices": [choice]})
        if include_usage:
            await _send_event(send, {**base, "choices": [], "usage": _usage(count)})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def _usage(count: int) -> dict[str, int]:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": count, "total_tokens": PROMPT_TOKENS + count}


async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)  # sleep(0) still yields to the loop, as a real engine would


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _send_json(send: Send, body: dict[str, Any], status: int = 200) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _send_event(send: Send, payload: dict[str, Any]) -> None:
    data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": data, "more_body": True})


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks.mock_upstream")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--options", default="{}", help="FixedRateOptions as JSON")
    args = parser.parse_args(argv)
    app = MockUpstream(FixedRateOptions.model_validate_json(args.options))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="off",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
