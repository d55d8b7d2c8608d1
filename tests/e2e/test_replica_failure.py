"""A replica that dies mid-stream: the client gets an SSE error event, and Serve brings the model back."""

from __future__ import annotations

import os
import signal
import time

import httpx
import openai
import psutil
import pytest

from tests.e2e.conftest import MODEL, Gateway, process_tree

pytestmark = pytest.mark.e2e


def replica_pids(gateway: Gateway) -> list[int]:
    pids = []
    for proc in process_tree(gateway.process.pid):
        try:
            if "ServeReplica:model-" in " ".join(proc.cmdline()) or proc.name().startswith(
                "ray::ServeReplica"
            ):
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


def test_replica_killed_mid_stream_ends_the_stream_with_an_error_event(gateway: Gateway) -> None:
    admin_key = gateway.create_key(admin=True)
    assert healthy_replicas(gateway, admin_key) == 1
    assert replica_channels(gateway, admin_key) == 1  # the stream below comes over the replica's channel
    victims = replica_pids(gateway)
    assert len(victims) == 1, victims
    stream = gateway.client().completions.create(
        model=MODEL, prompt="Count from 1 to 500: 1, 2, 3,", max_tokens=400, temperature=0, stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
            if len(received) == 2:
                os.kill(victims[0], signal.SIGKILL)
    assert len(received) >= 2
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "backend_unavailable"

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
    client = gateway.client()
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0
    )
    assert "Paris" in (answer.choices[0].message.content or "")
    assert replica_pids(gateway) and replica_pids(gateway) != victims
    assert healthy_replicas(gateway, admin_key) == 1
    assert replica_channels(gateway, admin_key) == 1  # the new replica dialled the gateway again
