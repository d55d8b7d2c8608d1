"""Metering through the real gateway: the ledger bills exactly what clients were told they used."""

from __future__ import annotations

import concurrent.futures
import re
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import MODEL, Gateway

pytestmark = pytest.mark.e2e


def usage_rows(gateway: Gateway, key: str, query: str = "") -> list[dict[str, Any]]:
    response = httpx.get(f"{gateway.base_url}/v1/usage{query}", headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return list(response.json()["data"])


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
    [row] = usage_rows(gateway, key)
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


def test_client_that_disconnects_mid_stream_is_billed_for_what_was_generated(gateway: Gateway) -> None:
    key = gateway.create_key("metering-cutoff")
    stream = gateway.client(key=key).completions.create(
        model=MODEL, prompt="Count from 1 to 500: 1, 2, 3,", max_tokens=300, temperature=0, stream=True
    )
    for received, _ in enumerate(stream, start=1):
        if received == 4:
            break
    stream.close()
    deadline = time.monotonic() + 20
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not rows:
        rows = usage_rows(gateway, key)
        time.sleep(0.2)
    assert rows, "the cut-off stream was not billed"
    assert rows[0]["requests"] == 1
    assert 4 <= rows[0]["completion_tokens"] < 300


def test_tenants_cannot_read_each_others_usage_and_admin_sees_both(gateway: Gateway) -> None:
    key_a = gateway.create_key("iso-a")
    key_b = gateway.create_key("iso-b")
    one_request(gateway, key_a, 0)
    assert usage_rows(gateway, key_b) == []
    assert usage_rows(gateway, key_a)[0]["requests"] == 1
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
    [row] = usage_rows(gateway, key)
    assert row["requests"] == 1
    other = gateway.create_key("plain-tenant")
    assert usage_rows(gateway, other) == []
    # The shared gateway's ledger still answers for everyone else.
    assert usage_rows(gateway, gateway.key)


def test_repeated_prompt_reports_cached_tokens(gateway: Gateway) -> None:
    client = gateway.client()
    messages = [{"role": "user", "content": "Tell me about prefix caching in one line. " * 40}]
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
    again = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
    details = again.usage.prompt_tokens_details
    assert details is not None and 0 < (details.cached_tokens or 0) <= again.usage.prompt_tokens
