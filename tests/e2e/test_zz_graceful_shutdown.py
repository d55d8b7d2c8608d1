"""SIGTERM of the gateway under load: the stream in flight finishes and is billed, new requests get 503
``shutting_down`` while it drains, /health says so, and the gateway exits cleanly soon after the last
request, well within its grace period.

Runs late (its own gateway; the name orders it after the shared one's tests).
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

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

TOKENS = 120
GRACE_S = 60


def test_sigterm_drains_the_requests_in_flight_and_refuses_new_ones(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    env = gateway_env(tmp_path_factory, "maas-drain")
    key = create_key(env, "drain")
    gw = start_gateway(env, key, config=chat_only_catalog(env), args=["--shutdown-grace", str(GRACE_S)])
    tree = process_tree(gw.process.pid)
    client = gw.client()
    first = threading.Event()
    outcome: dict[str, Any] = {}

    def long_stream() -> None:
        try:
            stream = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Tell me a long story."}],
                max_tokens=TOKENS,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            for chunk in stream:
                first.set()
                if chunk.choices and chunk.choices[0].finish_reason:
                    outcome["finish"] = chunk.choices[0].finish_reason
                if chunk.usage is not None:
                    outcome["usage"] = chunk.usage
                    outcome["id"] = chunk.id
        except Exception as exc:  # reported by the assertions below
            outcome["error"] = repr(exc)
        finally:
            outcome["ended"] = time.monotonic()

    worker = threading.Thread(target=long_stream)
    worker.start()
    assert first.wait(60), gw.log_tail()
    gw.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)

    refused = httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
    )
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
    assert int(refused.headers["retry-after"]) >= 1
    health = httpx.get(gw.base_url + "/health")
    assert health.status_code == 503 and health.json()["status"] == "draining"

    worker.join(GRACE_S)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["finish"] == "length" and outcome["usage"].completion_tokens == TOKENS
    code = gw.process.wait(timeout=GRACE_S)
    exited = time.monotonic()
    assert code == 0, gw.log_tail()
    assert exited - outcome["ended"] < GRACE_S / 2  # it stopped once drained, not at the deadline
    with sqlite3.connect(Path(env["MAAS_HOME"]) / "maas.db") as db:
        rows = db.execute(
            "SELECT status, completion_tokens FROM usage_records WHERE request_id = ?", (outcome["id"],)
        ).fetchall()
        refusals = db.execute("SELECT COUNT(*) FROM usage_records WHERE status != 'ok'").fetchone()[0]
    assert rows == [("ok", TOKENS)]
    assert refusals == 0  # refused at the door while draining: no model was asked, nothing to bill
    deadline = time.monotonic() + 30
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(1)
    assert not alive(tree), [p.name() for p in alive(tree)]
