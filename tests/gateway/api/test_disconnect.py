"""unless_gone: a wait whose client disconnects is cancelled where it stands and becomes ``ClientGone``."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from gateway.api.disconnect import unless_gone
from gateway.errors import ClientGone, openai_error


class Connection:
    """An ASGI ``receive`` whose client stays until ``leave`` (after any body left unread)."""

    def __init__(self, *unread: Message) -> None:
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        for message in unread:
            self._messages.put_nowait(message)

    def leave(self) -> None:
        self._messages.put_nowait({"type": "http.disconnect"})

    async def receive(self) -> Message:
        return await self._messages.get()


async def test_the_result_comes_back_while_the_client_stays() -> None:
    connection = Connection()

    async def work() -> str:
        await asyncio.sleep(0.01)
        return "answer"

    assert await unless_gone(connection.receive, work()) == "answer"


async def test_a_client_leaving_cancels_the_wait_inside_it_and_raises_client_gone() -> None:
    connection = Connection({"type": "http.request", "body": b"", "more_body": False})
    entered, cleaned_up = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        try:
            entered.set()
            await asyncio.sleep(60)  # a place in the queue, or the engine generating
            return "nobody reads this"
        finally:
            cleaned_up.set()  # where the slot is freed and the engine request aborted

    async def leave_once_waiting() -> None:
        await entered.wait()
        connection.leave()

    leaving = asyncio.create_task(leave_once_waiting())
    with pytest.raises(ClientGone):
        await asyncio.wait_for(unless_gone(connection.receive, work()), timeout=5)
    await leaving
    assert cleaned_up.is_set()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]  # the task goes on normally
    assert openai_error(ClientGone("gone")).status == 499


async def test_a_shutdown_cancelling_the_request_still_cancels_it() -> None:
    connection = Connection()

    async def request() -> None:
        await unless_gone(connection.receive, asyncio.sleep(60))

    task = asyncio.create_task(request())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_watcher_outlives_the_call() -> None:
    connection = Connection()
    before = len(asyncio.all_tasks())
    for _ in range(20):
        await unless_gone(connection.receive, asyncio.sleep(0))
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before


async def test_a_call_answered_before_the_watch_delay_starts_no_watcher_and_a_longer_one_does() -> None:
    connection = Connection()
    before = len(asyncio.all_tasks())
    seen: list[int] = []

    async def work(seconds: float) -> None:
        await asyncio.sleep(seconds)
        seen.append(len(asyncio.all_tasks()) - before)

    await unless_gone(connection.receive, work(0.001), watch_after_s=0.05)
    await unless_gone(connection.receive, work(0.1), watch_after_s=0.05)
    assert seen == [0, 1]  # the second call's watcher was running when its work ended
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before
