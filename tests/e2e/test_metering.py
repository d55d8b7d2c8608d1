"""Metering through the real gateway: the ledger bills exactly what clients were told they used."""

from __future__ import annotations

import concurrent.futures
import re
import time
from typing import Any

import httpx
import psutil
import pytest

from tests.e2e.conftest import MODEL, Gateway, process_tree

pytestmark = pytest.mark.e2e


def one_request(gateway: Gateway, key: str, i: int) -> tuple[int, int]:
    client = gateway.client(key=key)
    messages = [{"role": "user", "content": f"Say a word about the number {i}."}]
    if i % 2:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = [c.usage for c in stream if c.usage][-1]
    else:
        usage = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12).usage
    return usage.prompt_tokens, usage.completion_tokens


def test_ledger_totals_equal_the_usage_clients_received(gateway: Gateway) -> None:
    key = gateway.create_key("metering-sum")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        seen = list(pool.map(lambda i: one_request(gateway, key, i), range(12)))
    # The response completes only after its record is durable, so the ledger is already complete.
    [row] = gateway.usage_rows(key)
    assert row["model"] == MODEL and row["requests"] == 12
    assert row["prompt_tokens"] == sum(p for p, _ in seen)
    assert row["completion_tokens"] == sum(c for _, c in seen)
    expected_cost = (row["prompt_tokens"] * 0.05 + row["completion_tokens"] * 0.10) / 1e6
    assert row["cost"] == pytest.approx(expected_cost, rel=1e-9)


def test_metrics_agree_with_the_ledger(gateway: Gateway) -> None:
    key = gateway.create_key("metering-metrics")
    seen = [one_request(gateway, key, i) for i in range(3)]
    text = httpx.get(gateway.base_url + "/metrics").text

    def metric(kind: str) -> float:
        labels = f'chip="cpu",kind="{kind}",model="{MODEL}",pool="own",tenant="metering-metrics"'
        match = re.search(re.escape("maas_tokens_total{" + labels + "}") + r" (\S+)", text)
        assert match, f"no {kind} token counter for the tenant"
        return float(match.group(1))

    assert metric("prompt") == sum(p for p, _ in seen)
    assert metric("completion") == sum(c for _, c in seen)
    assert "maas_gateway_overhead_seconds_bucket" in text


def engine_cpu_seconds(gateway: Gateway) -> float:
    """CPU time so far of the model's vLLM engine processes (engine core and its workers)."""
    total = 0.0
    for proc in process_tree(gateway.process.pid):
        try:
            if proc.name().startswith("VLLM::"):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def engine_cpu_rate(gateway: Gateway, seconds: float) -> float:
    before = engine_cpu_seconds(gateway)
    time.sleep(seconds)
    return (engine_cpu_seconds(gateway) - before) / seconds


def test_client_that_disconnects_mid_stream_is_billed_and_the_engine_stops_within_a_second(
    gateway: Gateway,
) -> None:
    key = gateway.create_key("metering-cutoff")
    client = gateway.client(key=key)
    streams = [
        client.completions.create(
            model=MODEL, prompt=f"Count from {i} to 500: {i},", max_tokens=300, temperature=0, stream=True
        )
        for i in range(1, 5)
    ]
    for stream in streams:
        for received, _ in enumerate(stream, start=1):
            if received == 4:
                break
    generating = engine_cpu_rate(gateway, 1.0)  # four streams still being generated
    for stream in streams:
        stream.close()
    time.sleep(1.0)
    after = engine_cpu_rate(gateway, 2.0)  # from one second after the clients left
    print(f"engine CPU s/s: generating {generating:.2f}, from 1 s after the clients left {after:.3f}")
    assert after < 0.25 * generating, (generating, after)

    deadline = time.monotonic() + 20
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not (rows and rows[0]["requests"] == 4):
        rows = gateway.usage_rows(key)
        time.sleep(0.2)
    assert rows and rows[0]["requests"] == 4, f"the cut-off streams were not all billed: {rows}"
    assert 4 * 4 <= rows[0]["completion_tokens"] < 4 * 300


def test_tenants_cannot_read_each_others_usage_and_admin_sees_both(gateway: Gateway) -> None:
    key_a = gateway.create_key("iso-a")
    key_b = gateway.create_key("iso-b")
    one_request(gateway, key_a, 0)
    assert gateway.usage_rows(key_b) == []
    assert gateway.usage_rows(key_a)[0]["requests"] == 1
    admin = gateway.create_key(admin=True)
    headers = {"Authorization": f"Bearer {admin}"}
    body = httpx.get(f"{gateway.base_url}/admin/usage?group_by=tenant", headers=headers).json()
    tenants = {row["tenant"] for row in body["data"]}
    assert {"iso-a"} <= tenants and "iso-b" not in tenants
    refused = httpx.get(f"{gateway.base_url}/admin/usage", headers={"Authorization": f"Bearer {key_a}"})
    assert refused.status_code == 403


def test_overhead_header_is_reported(gateway: Gateway) -> None:
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway.key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert float(response.headers["x-maas-gateway-overhead-ms"]) >= 0


def test_injection_strings_as_key_or_tenant_change_nothing(gateway: Gateway) -> None:
    evil = "x' OR '1'='1'; DROP TABLE usage_records; --"
    refused = httpx.get(gateway.base_url + "/v1/usage", headers={"Authorization": f"Bearer {evil}"})
    assert refused.status_code == 401
    key = gateway.create_key(evil)
    one_request(gateway, key, 1)
    [row] = gateway.usage_rows(key)
    assert row["requests"] == 1
    other = gateway.create_key("plain-tenant")
    assert gateway.usage_rows(other) == []
    # The shared gateway's ledger still answers for everyone else.
    assert gateway.usage_rows(gateway.key)


def test_repeated_prompt_reports_cached_tokens(gateway: Gateway) -> None:
    client = gateway.client()
    messages = [{"role": "user", "content": "Tell me about prefix caching in one line. " * 40}]
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
    again = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
    details = again.usage.prompt_tokens_details
    assert details is not None and 0 < (details.cached_tokens or 0) <= again.usage.prompt_tokens
