"""kill -9 of the gateway under load, then a restart: no completed request is missing from the ledger,
none is there twice, and nothing the killed gateway started is left running.

Runs last (its own gateway; the name orders it after the shared one's tests).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

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
    stop_gateway,
)

pytestmark = pytest.mark.e2e

REQUESTS = 200
KILL_AFTER = 60


def test_kill_9_under_load_loses_no_completed_request(tmp_path_factory: pytest.TempPathFactory) -> None:
    env = gateway_env(tmp_path_factory, "maas-crash")
    key = create_key(env, "crash")
    gw = start_gateway(env, key, config=chat_only_catalog(env))
    completed: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def call(i: int) -> None:
        if killed.is_set():
            return
        try:
            response = httpx.post(
                gw.base_url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": MODEL, "messages": [{"role": "user", "content": f"Hi {i}"}], "max_tokens": 3},
                timeout=60,
            )
        except httpx.HTTPError:
            return  # in flight when the gateway died: never completed
        if response.status_code == 200:
            with lock:
                completed.append(response.json()["id"])
                if len(completed) == KILL_AFTER:
                    os.kill(gw.process.pid, signal.SIGKILL)
                    killed.set()

    tree = process_tree(gw.process.pid)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(REQUESTS)))
    assert killed.is_set(), f"only {len(completed)} requests completed before the load ended"
    gw.process.wait(timeout=10)

    # The Ray head notices its parent is gone and stops everything it started.
    deadline = time.monotonic() + 60
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(1)
    assert not alive(tree), f"left running after kill -9: {[p.name() for p in alive(tree)]}"

    restarted = start_gateway(env, key, config=chat_only_catalog(env))
    try:
        with sqlite3.connect(Path(env["MAAS_HOME"]) / "maas.db") as db:
            ids = [
                row[0] for row in db.execute("SELECT request_id FROM usage_records WHERE tenant = 'crash'")
            ]
        assert len(ids) == len(set(ids)), "a request was recorded twice"
        missing = set(completed) - set(ids)
        assert not missing, f"{len(missing)} completed requests missing from the ledger"
        usage = httpx.get(restarted.base_url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()
        assert usage["data"][0]["requests"] == len(ids) >= len(completed)
    finally:
        stop_gateway(restarted)
