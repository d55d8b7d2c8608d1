"""The private Ray head dies (its node's processes killed: head driver, GCS, raylet): the gateway never
serves from half a state. /health stops saying ok, requests are refused rather than answered or left
hanging, and the gateway exits non-zero (for a supervisor to restart it), leaving no process behind.

Runs late (its own gateway; the name orders it after the shared one's tests).
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.e2e.conftest import (
    MODEL,
    alive,
    chat_only_catalog,
    create_key,
    gateway_env,
    process_tree,
    start_gateway,
)

pytestmark = pytest.mark.e2e

HEAD_PROCESSES = ("gcs_server", "raylet")


def test_a_dead_ray_head_stops_the_gateway_instead_of_serving_half_a_state(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    env = gateway_env(tmp_path_factory, "maas-head-lost")
    key = create_key(env, "head")
    gw = start_gateway(env, key, config=chat_only_catalog(env))
    tree = process_tree(gw.process.pid)
    head = [
        p for p in tree if p.name() in HEAD_PROCESSES or "gateway.serving.ray_head" in " ".join(p.cmdline())
    ]
    assert len(head) == 3, [p.name() for p in tree]
    for proc in head:
        proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()

    answers = []
    while gw.process.poll() is None and time.monotonic() - killed < 90:
        try:
            health = httpx.get(gw.base_url + "/health", timeout=5)
            chat = httpx.post(
                gw.base_url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
                timeout=30,
            )
            answers.append((time.monotonic() - killed, health.status_code, chat.status_code))
        except httpx.HTTPError:
            answers.append((time.monotonic() - killed, None, None))  # its socket is closed: it is stopping
        time.sleep(0.5)
    code = gw.process.wait(timeout=60)
    took = time.monotonic() - killed
    assert code == 1, gw.log_tail()
    assert "ray lost" in gw.log.read_text(), gw.log_tail()
    # Nothing was answered from the dead cluster once the gateway could know (its poll runs every 2 s).
    later = [(health, chat) for at, health, chat in answers if at > 5]
    assert all(chat != 200 and health != 200 for health, chat in later), answers
    deadline = time.monotonic() + 30
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(1)
    assert not alive(tree), [p.name() for p in alive(tree)]
    print(f"gateway stopped {took:.1f} s after the head died; answers while stopping: {answers}")
