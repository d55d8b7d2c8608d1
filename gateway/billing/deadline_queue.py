"""Requests waiting for a slot, earliest deadline first.

A request's deadline is when it arrived plus the time to first token its service tier promises
(``routing.ttft_slo_s`` and ``routing.service_tiers``); a request without one waits behind every request
with one, first come first served among its equals. So an interactive request that arrives behind a queue
of batch requests of the same tenant is served before them, and the batch requests, whose SLO is long,
still meet it. The gateway's queue of each tenant on a deployment is one of these
(``overload.ModelGate``), and the pools simulator queues the own pool's requests in one, so what it
reports is what the gateway does.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class DeadlineQueue(Generic[T]):
    """Items by (deadline, arrival): ``popleft`` takes the most urgent, ``pop_latest`` the least."""

    def __init__(self) -> None:
        self._entries: list[tuple[float, int, T]] = []
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __iter__(self) -> Iterator[T]:
        return (item for _, _, item in self._entries)

    def push(self, item: T, deadline: float = math.inf) -> None:
        bisect.insort(self._entries, (deadline, next(self._arrivals), item), key=_order)

    def popleft(self) -> T:
        """The item with the earliest deadline (the first to arrive among equals)."""
        return self._entries.pop(0)[2]

    def pop_latest(self) -> T:
        """The item with the latest deadline (the last to arrive among equals): the one to refuse."""
        return self._entries.pop()[2]

    def remove(self, item: T) -> bool:
        """Take ``item`` out (a caller that left); False when it is not here."""
        for at, (_, _, queued) in enumerate(self._entries):
            if queued is item:
                del self._entries[at]
                return True
        return False


def _order(entry: tuple[float, int, object]) -> tuple[float, int]:
    return entry[0], entry[1]
