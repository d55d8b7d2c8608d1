"""A client that closes its connection before its answer starts gives up what it held.

Starlette notices a vanished client only once a streamed response is running; a request still waiting for
a slot of its model, or for a whole (non-streamed) answer, would otherwise keep its place in the queue and
its engine slot until it was served to nobody. Clients that time out and retry under load then double the
load. ``unless_gone`` runs the wait with a watcher on the connection, from the wait's first 50 ms on (a
call answered sooner never starts one): when the client goes, the wait is cancelled, which leaves the
queue, frees the slot and aborts the engine request (each layer's own cancellation), and the caller
records the call as cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

from gateway.errors import ClientGone

T = TypeVar("T")

WATCH_AFTER_S = 0.05
"""A call answered sooner than this never starts its watcher, a task and two turns of it on the event loop
(a tenth of the gateway's own work on a fast upstream's answer); a client that leaves is noticed at most
this much later."""


async def unless_gone(receive: Receive, work: Awaitable[T], watch_after_s: float = WATCH_AFTER_S) -> T:
    """``work``'s result; ``ClientGone`` (``work`` cancelled) when the client disconnects first.

    The request body must have been read: ``receive`` then yields only the disconnect. A watcher task
    starts once the call has waited ``watch_after_s``; it cancels this task, so ``work`` runs here, in the
    caller's task, and is never copied."""
    task = asyncio.current_task()
    assert task is not None, "unless_gone runs in a task"
    gone = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.create_task(watch())

    timer = asyncio.get_running_loop().call_later(watch_after_s, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:  # cancelled by the watcher alone, not by a shutdown too
            raise ClientGone("The client closed the connection before the answer started.") from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
