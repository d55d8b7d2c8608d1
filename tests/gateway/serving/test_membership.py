"""A deploying gateway started again while its predecessor is still listed (the directory's rules over a dict
here; Ray's store and a real restart are ``tests/e2e/test_gateways.py``)."""

from __future__ import annotations

import time
from typing import cast

import pytest

from backends.gateway_listing import ALIVE_S
from gateway.serving.gateway_directory import DEPLOYING, DirectoryClient, GatewayDirectory
from gateway.serving.membership import HEARTBEAT_S, Membership
from tests.gateway.serving.conftest import MemoryStore


class InProcessDirectory:
    """What ``Membership._outlived`` asks the directory, answered by its rules over a dict here."""

    def __init__(self, state: GatewayDirectory) -> None:
        self.state = state

    def seen_ago(self, gateway: str) -> float | None:
        return self.state.seen_ago(gateway)


def restarted(state: GatewayDirectory) -> Membership:
    membership = Membership(None, "new", attach=False, address=lambda: None)
    membership._directory = cast(DirectoryClient, InProcessDirectory(state))
    return membership


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    return now


def test_a_predecessor_that_died_is_outlived_once_its_entry_expires(clock: list[float]) -> None:
    state = GatewayDirectory(MemoryStore(), clock=lambda: clock[0])
    state.register("old", None, DEPLOYING)
    clock[0] += 1.0  # it died a second ago, listed still
    started = clock[0]
    assert restarted(state)._outlived("old")
    assert clock[0] - started <= ALIVE_S


def test_a_predecessor_that_still_beats_is_not_outlived(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = GatewayDirectory(MemoryStore(), clock=lambda: clock[0])
    state.register("old", None, DEPLOYING)

    def sleep_while_it_beats(seconds: float) -> None:
        clock[0] += seconds
        if clock[0] % HEARTBEAT_S < seconds:
            state.register("old", None, DEPLOYING)

    monkeypatch.setattr(time, "sleep", sleep_while_it_beats)
    started = clock[0]
    assert not restarted(state)._outlived("old")
    assert clock[0] - started <= 2 * HEARTBEAT_S + 1
