"""One model served from two pools at once: an own deployment (vLLM on the CPU, the real SmolLM2, one
replica taking two requests at once) and a rented API priced per token (the session's real vLLM server
behind ``openai_upstream``). Load above the own capacity spills to the API and drains back; a tenant kept
to the own pool never reaches the API; requests to a hung own replica fall back to the API before their
first byte, and a killed one loses no request and doubles no record.

Which deployment served each request is read from the ledger (its rows name deployment, pool and the
attempts), and from ``/metrics`` and ``/admin/chips``.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import (
    Gateway,
    create_key,
    gateway_env,
    process_tree,
    settles,
    start_gateway,
    stop_gateway,
)
from tests.e2e.vllm_upstream import KEY_ENV, MAX_MODEL_LEN, Upstream

pytestmark = pytest.mark.e2e

MODEL = "smollm2-pools"
RENTED = f"{MODEL}@api"
SCALED = "tiny-scaled-to-zero"
COUNT = [{"role": "user", "content": "Count from one to fifty in words, separated by commas."}]


@pytest.fixture(scope="module")
def pooled(
    vllm_upstream: Upstream, smollm2_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    env = gateway_env(tmp_path_factory, "maas-pools", **{KEY_ENV: vllm_upstream.key})
    catalog = {
        "pools": [
            {"name": "own", "kind": "owned", "chips": {"cpu": {"purchase_price": 2000}}},
            {
                "name": "api",
                "kind": "managed",
                "per_token": {"input_per_million": 0.02, "output_per_million": 0.04},
            },
            {
                "name": "hours",  # rented by the chip-hour: billed per minute, for at least one
                "kind": "managed",
                "chips": {"cpu": {"hourly_fee": 0.6}},
                "billing_granularity_minutes": 1,
                "minimum_rental_minutes": 1,
            },
        ],
        "models": [
            {
                "name": MODEL,
                "family": "llama",
                "context_length": MAX_MODEL_LEN,
                "pricing": {"input_per_million": 0.05, "output_per_million": 0.10, "currency": "USD"},
                "weights": {"kind": "local", "path": str(smollm2_weights)},
                "routing": "own_first",
                "deployments": [
                    {
                        "backend": "vllm",
                        "pool": "own",
                        "max_ongoing_requests": 2,
                        "max_queued_requests": 8,
                        "stall_timeout_s": 20,  # a hung own replica is given up on (and fallen back from)
                        "engine": {
                            "dtype": "float32",
                            "enforce_eager": True,
                            "kv_cache_gib": 1,
                            "max_num_seqs": 2,
                        },
                    },
                    {
                        "backend": "openai_upstream",
                        "pool": "api",
                        "max_ongoing_requests": 8,
                        "engine": vllm_upstream.engine(),
                    },
                ],
            },
            {
                "name": SCALED,
                "family": "llama",
                "context_length": 1024,
                "chat_template": "llama3",
                "weights": {"kind": "tiny_random", "architecture": "llama", "seed": 1},
                "deployments": [
                    {
                        "backend": "vllm",
                        "pool": "hours",
                        "tokens_per_second": 20,
                        # A request waits 2 s for a replica to start, then gets 503 with Retry-After;
                        # the replica goes on starting. Idle, it is given back at the end of its paid
                        # minute, not a second after its last request.
                        "autoscaling": {
                            "min_replicas": 0,
                            "max_replicas": 1,
                            "downscale_delay_s": 1,
                            "start_wait_s": 2,
                        },
                        "engine": {
                            "dtype": "float32",
                            "enforce_eager": True,
                            "kv_cache_gib": 0.25,
                            "max_num_seqs": 4,
                        },
                    }
                ],
            },
        ],
    }
    path = Path(env["MAAS_HOME"]) / "pools-catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    gw = start_gateway(env, create_key(env, "pools-e2e"), config=path)
    try:
        yield gw
    finally:
        stop_gateway(gw)


def ledger(gw: Gateway, tenant: str) -> list[dict[str, Any]]:
    with sqlite3.connect(Path(gw.env["MAAS_HOME"]) / "maas.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM usage_records WHERE tenant = ? ORDER BY created_at", (tenant,))
        return [dict(row) for row in rows]


def settled(gw: Gateway, tenant: str, count: int) -> list[dict[str, Any]]:
    """The tenant's ledger rows once ``count`` are there (a streamed answer's row lands as it ends)."""
    deadline = time.monotonic() + 30
    while len(rows := ledger(gw, tenant)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return rows


def ask(client: openai.OpenAI, max_tokens: int = 48) -> str:
    """Stream an answer; the completion id (the ledger's request id)."""
    stream = client.chat.completions.create(
        model=MODEL,
        messages=COUNT,
        max_tokens=max_tokens,
        temperature=0,
        stream=True,  # type: ignore[arg-type]
    )
    ids = {chunk.id for chunk in stream}
    assert len(ids) == 1
    return ids.pop()


def metric(gw: Gateway, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(gw.base_url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


@dataclass
class ReplicaWatch:
    """The scaled model's replica count, sampled every half second from the first request on."""

    started: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(scope="module")
def scaled_watch(pooled: Gateway) -> Iterator[ReplicaWatch]:
    watch = ReplicaWatch(started=time.monotonic())

    def sample() -> None:
        while not watch.stop.wait(0.5):
            watch.samples.append((time.monotonic(), serve_replicas(pooled, SCALED)))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    yield watch
    watch.stop.set()
    thread.join(timeout=10)


def test_a_model_scaled_to_zero_answers_503_with_retry_after_until_its_replica_has_started(
    pooled: Gateway, scaled_watch: ReplicaWatch
) -> None:
    assert serve_replicas(pooled, SCALED) == 0  # min_replicas 0: no engine while idle
    scaled_watch.started = time.monotonic()  # Serve decides to start a replica at the first request
    key = pooled.create_key("cold")
    client = pooled.client(key)
    started = time.monotonic()
    refusals: list[openai.APIStatusError] = []
    answer = None
    while answer is None and time.monotonic() - started < 300:
        try:
            answer = client.chat.completions.create(
                model=SCALED,
                messages=COUNT,
                max_tokens=4,
                temperature=0,  # type: ignore[arg-type]
            )
        except openai.APIStatusError as refused:  # the client would retry after Retry-After by itself
            refusals.append(refused)
            time.sleep(float(refused.response.headers["retry-after"]))
    waited = time.monotonic() - started
    assert answer is not None and answer.choices[0].finish_reason in ("length", "stop")
    assert refusals, "the replica started within the 2 s start wait: nothing was proved"
    for refused in refusals:
        assert refused.status_code == 503 and refused.code == "model_starting", refused.body
        assert 1 <= int(refused.response.headers["retry-after"]) <= 60
        assert SCALED in refused.message
    assert serve_replicas(pooled, SCALED) == 1
    assert f"no replica started in time deployment={SCALED}" in pooled.log.read_text()
    rows = settled(pooled, "cold", len(refusals) + 1)  # every refusal is in the ledger, unbilled
    assert [(r["status"], r["error_type"]) for r in rows[:-1]] == [("error", "ModelStarting")] * len(refusals)
    assert all(r["charge_nanos"] == 0 for r in rows[:-1]) and rows[-1]["status"] == "ok"
    print(f"\nmodel scaled to zero: {len(refusals)} x 503 with Retry-After, answered after {waited:.1f} s")


def serve_replicas(gw: Gateway, model: str) -> int:
    count = 0
    for proc in process_tree(gw.process.pid):
        with contextlib.suppress(psutil.Error):
            count += f"ServeReplica:model-{model}:" in " ".join(proc.cmdline())
    return count


def test_both_deployments_are_served_and_reported(pooled: Gateway) -> None:
    admin = pooled.create_key("ops", admin=True)
    report = httpx.get(pooled.base_url + "/admin/chips", headers={"Authorization": f"Bearer {admin}"}).json()
    rows = {row["deployment"]: row for row in report["models"] if row["model"] == MODEL}
    assert set(rows) == {MODEL, RENTED}
    assert (rows[MODEL]["pool"], rows[MODEL]["backend"], rows[MODEL]["status"]) == ("own", "vllm", "RUNNING")
    assert (rows[RENTED]["pool"], rows[RENTED]["backend"]) == ("api", "openai_upstream")


def test_load_above_own_capacity_spills_to_the_rented_api_and_drains_back(pooled: Gateway) -> None:
    client = pooled.client(pooled.create_key("spill"))
    with ThreadPoolExecutor(6) as pool:
        burst = list(pool.map(lambda _: ask(client), range(6)))
    rows = settled(pooled, "spill", 6)
    assert sorted(r["request_id"] for r in rows) == sorted(burst)  # one record per request
    assert all(r["status"] == "ok" and r["attempts"] == 1 for r in rows), rows
    pools = Counter(r["pool"] for r in rows)
    assert pools["own"] >= 2 and pools["api"] >= 1, pools  # own's two slots filled, the rest spilled
    assert {r["deployment"] for r in rows if r["pool"] == "api"} == {RENTED}

    quiet = [ask(client, max_tokens=8) for _ in range(3)]  # one at a time: own has room again
    rows = {r["request_id"]: r for r in settled(pooled, "spill", 9)}
    assert [rows[i]["pool"] for i in quiet] == ["own"] * 3

    assert metric(pooled, "maas_tokens_total", model=MODEL, pool="api", kind="completion") > 0
    assert metric(pooled, "maas_tokens_total", model=MODEL, pool="own", kind="completion") > 0
    assert metric(pooled, "maas_placement_spills_total", model=MODEL, event="spill") >= 1
    assert metric(pooled, "maas_placement_spills_total", model=MODEL, event="drain_back") >= 1

    admin = pooled.create_key("ops", admin=True)
    report = httpx.get(pooled.base_url + "/admin/pools", headers={"Authorization": f"Bearer {admin}"}).json()
    pools_now = {p["pool"]: p for p in report["pools"]}
    assert pools_now["api"]["billing"] == "per_token" and pools_now["api"]["cost_marginal"] > 0
    assert pools_now["own"]["completion_tokens"] > 0 and 0 < report["own_token_share"] < 1
    assert report["placement_events"][MODEL]["spill"] >= 1


def test_a_tenant_kept_to_the_own_pool_is_never_served_from_the_rented_one(pooled: Gateway) -> None:
    subprocess.run(
        [sys.executable, "-m", "gateway.cli", "tenants", "create", "own-only", "--pools", "own"],
        env=pooled.env,
        check=True,
        capture_output=True,
    )
    client = pooled.client(pooled.create_key("own-only"))
    with ThreadPoolExecutor(6) as pool:
        sent = list(pool.map(lambda _: ask(client), range(6)))  # more than own takes at once: they queue
    rows = settled(pooled, "own-only", 6)
    assert sorted(r["request_id"] for r in rows) == sorted(sent)
    assert {(r["pool"], r["status"]) for r in rows} == {("own", "ok")}

    subprocess.run(
        [sys.executable, "-m", "gateway.cli", "tenants", "create", "eu-only", "--pools", "eu"],
        env=pooled.env,
        check=True,
        capture_output=True,
    )
    with pytest.raises(openai.PermissionDeniedError) as refused:
        ask(pooled.client(pooled.create_key("eu-only")))
    assert refused.value.code == "pool_not_allowed" and "eu" in refused.value.message


def own_replica(gw: Gateway) -> int:
    for proc in process_tree(gw.process.pid):
        if f"ServeReplica:model-{MODEL}:" in " ".join(proc.cmdline()):
            return proc.pid
    raise AssertionError("no own replica process")


def test_a_hung_own_replica_falls_back_before_the_first_byte_and_a_killed_one_loses_nothing(
    pooled: Gateway,
) -> None:
    client = pooled.client(pooled.create_key("faults"))
    victim = own_replica(pooled)
    os.kill(victim, signal.SIGSTOP)  # hung: its channel stays open, it answers nothing
    try:
        with ThreadPoolExecutor(2) as pool:
            stalled = list(pool.map(lambda _: ask(client, max_tokens=8), range(2)))
    finally:
        os.kill(victim, signal.SIGKILL)  # and now dead (a stopped process dies too)
    rows = {r["request_id"]: r for r in settled(pooled, "faults", 2)}
    for request_id in stalled:  # own was tried first, gave nothing for stall_timeout_s, the API answered
        assert (rows[request_id]["pool"], rows[request_id]["attempts"], rows[request_id]["status"]) == (
            "api",
            2,
            "ok",
        )

    with ThreadPoolExecutor(4) as pool:
        after = list(pool.map(lambda _: ask(client, max_tokens=8), range(4)))
    rows_after = settled(pooled, "faults", 6)
    assert len(rows_after) == 6 and len({r["request_id"] for r in rows_after}) == 6  # none lost or doubled
    by_id = {r["request_id"]: r for r in rows_after}
    assert {(by_id[i]["pool"], by_id[i]["status"]) for i in after} == {("api", "ok")}


def test_changing_one_deployment_of_a_model_keeps_its_other_deployments_replicas(pooled: Gateway) -> None:
    admin = pooled.create_key("ops", admin=True)
    deadline = time.monotonic() + 120  # the own replica killed above has been replaced by now, or soon
    while serve_replicas(pooled, MODEL) != 1 and time.monotonic() < deadline:
        time.sleep(1)
    before = own_replica(pooled)
    catalog = yaml.safe_load((Path(pooled.env["MAAS_HOME"]) / "pools-catalog.yaml").read_text())
    model = next(m for m in catalog["models"] if m["name"] == MODEL)
    model["deployments"][1]["max_ongoing_requests"] = 6  # the rented API's deployment only
    applied = httpx.post(
        pooled.base_url + "/admin/catalog",
        headers={"Authorization": f"Bearer {admin}"},
        json=catalog,
        timeout=300,
    )
    assert applied.status_code == 200 and applied.json()["redeployed"] == [MODEL], applied.text
    assert own_replica(pooled) == before  # the own deployment's replica was not replaced
    assert ask(pooled.client(pooled.create_key("after-change")), max_tokens=4)


def test_an_idle_rented_replica_is_given_back_at_its_billing_boundary_not_before(
    pooled: Gateway, scaled_watch: ReplicaWatch
) -> None:
    """Its pool bills by the minute with a one-minute minimum and its downscale delay is 1 s: Serve's own
    policy would stop it a second after its last request; it goes only as a paid minute ends."""
    assert settles(lambda: bool(scaled_watch.samples) and scaled_watch.samples[-1][1] == 0, timeout_s=180)
    up = [t for t, n in scaled_watch.samples if n == 1]
    assert up, "the replica was never seen running"
    released = next(t for t, n in scaled_watch.samples if t > up[0] and n == 0)
    held = released - scaled_watch.started
    idle_since = settled(pooled, "cold", 1)[-1]["created_at"]  # its one answer: idle from then on
    idle_s = time.time() - idle_since - (time.monotonic() - released)  # idle until released
    print(
        f"\nrented replica: idle {idle_s:.0f} s, given back {held:.0f} s after renting (paid by the minute)"
    )
    assert held >= 55, f"released {held:.0f} s after it was rented, before its paid minute ended"
    boundary = 60 * math.floor(
        (held + 5) / 60
    )  # the minute that ended last (the replica takes a while to stop)
    assert boundary - 5 <= held <= boundary + 40, f"released {held:.0f} s after renting, not at a boundary"
