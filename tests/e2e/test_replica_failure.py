"""A replica that dies mid-stream, or whose engine dies inside it: the client gets an SSE error event, the
tokens it was sent are billed, and the model comes back (the figures are printed for the notes)."""

from __future__ import annotations

import os
import signal
import time

import httpx
import openai
import psutil
import pytest

from tests.e2e.conftest import MODEL, Gateway, process_tree, settles

pytestmark = pytest.mark.e2e


def replica_pids(gateway: Gateway) -> list[int]:
    """The chat model's replicas (the default catalog also serves an embedding model)."""
    pids = []
    for proc in process_tree(gateway.process.pid):
        try:
            if f"ServeReplica:model-{MODEL}:" in " ".join(proc.cmdline()):
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


def chips_row(gateway: Gateway, admin_key: str) -> dict[str, object]:
    report = httpx.get(
        gateway.base_url + "/admin/chips", headers={"Authorization": f"Bearer {admin_key}"}, timeout=10
    ).json()
    return dict({m["model"]: m for m in report["models"]}[MODEL])


def healthy_replicas(gateway: Gateway, admin_key: str) -> int:
    return int(chips_row(gateway, admin_key)["healthy_replicas"])  # type: ignore[call-overload]


def replica_channels(gateway: Gateway, admin_key: str) -> int:
    return int(chips_row(gateway, admin_key)["replica_channels"])  # type: ignore[call-overload]


def engine_pids(gateway: Gateway) -> list[int]:
    """The chat model's vLLM engine-core processes (each a child of its replica)."""
    pids = []
    for replica in replica_pids(gateway):
        try:
            children = psutil.Process(replica).children()
        except psutil.Error:
            continue
        pids += [child.pid for child in children if child.name().startswith("VLLM::EngineCore")]
    return pids


def kill_mid_stream(gateway: Gateway, key: str, victim: int) -> int:
    """Stream a long answer, SIGKILL ``victim`` after two chunks; the chunks received before the error."""
    stream = gateway.client(key=key).completions.create(
        model=MODEL, prompt="Count from 1 to 500: 1, 2, 3,", max_tokens=400, temperature=0, stream=True
    )
    received = 0
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            received += 1
            if received == 2:
                os.kill(victim, signal.SIGKILL)
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "backend_unavailable"
    return received


def assert_billed_for_what_was_sent(gateway: Gateway, key: str, received: int) -> None:
    """One record for the cut stream, holding at least the tokens its client was sent."""
    deadline = time.monotonic() + 10
    while not (rows := gateway.usage_rows(key)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(rows) == 1, rows
    assert rows[0]["requests"] == 1 and received <= rows[0]["completion_tokens"] < 400, (received, rows)


def answers_again(gateway: Gateway, timeout_s: float = 240) -> float:
    """Seconds until the model answers a chat request again."""
    started = time.monotonic()
    client = gateway.client()
    while True:
        try:
            answer = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                temperature=0,
            )
            assert "Paris" in (answer.choices[0].message.content or "")
            return time.monotonic() - started
        except (openai.APIStatusError, openai.APIConnectionError):
            assert time.monotonic() - started < timeout_s, "the model did not come back"
            time.sleep(0.5)


def test_engine_dying_inside_a_live_replica_ends_its_stream_and_the_replica_is_replaced(
    gateway: Gateway,
) -> None:
    key = gateway.create_key("engine-death")
    replicas, engines = replica_pids(gateway), engine_pids(gateway)
    assert len(replicas) == 1 and len(engines) == 1, (replicas, engines)
    received = kill_mid_stream(gateway, key, engines[0])
    killed = time.monotonic()
    assert_billed_for_what_was_sent(gateway, key, received)
    # The replica does not linger with a dead engine (Serve's health checks would take ~30 s to notice):
    # it exits, and Serve replaces it.
    answers_again(gateway)
    print(f"engine killed: the model answered again {time.monotonic() - killed:.1f} s later")
    assert replica_pids(gateway) and set(replica_pids(gateway)).isdisjoint(replicas)
    admin_key = gateway.create_key(admin=True)
    # The new replica dialled the gateway, and Serve (whose status the report polls) counts it healthy.
    assert settles(lambda: replica_channels(gateway, admin_key) == healthy_replicas(gateway, admin_key) == 1)


def test_replica_killed_mid_stream_ends_the_stream_with_an_error_event(gateway: Gateway) -> None:
    admin_key = gateway.create_key(admin=True)
    key = gateway.create_key("replica-kill")
    # A replica replaced by the test before is healthy once Serve's status poll has seen it; the stream
    # below comes over the replica's channel.
    assert settles(lambda: healthy_replicas(gateway, admin_key) == replica_channels(gateway, admin_key) == 1)
    victims = replica_pids(gateway)
    assert len(victims) == 1, victims
    received = kill_mid_stream(gateway, key, victims[0])
    killed = time.monotonic()
    assert received >= 2
    assert_billed_for_what_was_sent(gateway, key, received)

    # While Serve replaces it, the gateway reports no healthy replica and the model as not running.
    deadline = time.monotonic() + 30
    while healthy_replicas(gateway, admin_key) != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert healthy_replicas(gateway, admin_key) == 0
    assert replica_channels(gateway, admin_key) == 0
    assert httpx.get(gateway.base_url + "/health", timeout=10).status_code == 503

    # Serve replaces the replica; the model answers again.
    deadline = time.monotonic() + 240
    while not (set(replica_pids(gateway)) - set(victims)) and time.monotonic() < deadline:
        time.sleep(1)
    gateway.wait_healthy(timeout_s=240)
    answers_again(gateway, timeout_s=30)
    print(f"replica killed: the model answered again {time.monotonic() - killed:.1f} s later")
    assert replica_pids(gateway) and replica_pids(gateway) != victims
    assert healthy_replicas(gateway, admin_key) == 1
    assert replica_channels(gateway, admin_key) == 1  # the new replica dialled the gateway again
