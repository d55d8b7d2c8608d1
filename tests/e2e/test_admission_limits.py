"""Rate limits and budgets through the real gateway under 50 concurrent requests."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time

import httpx
import pytest

from tests.e2e.conftest import MODEL, Gateway

pytestmark = pytest.mark.e2e

CONCURRENCY = 50


def maas(gateway: Gateway, *args: str) -> list[str]:
    """Run the `maas` CLI against the gateway's database; its output lines."""
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=gateway.env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()


def burst(gateway: Gateway, key: str, max_tokens: int = 4) -> list[httpx.Response]:
    def call(i: int) -> httpx.Response:
        return httpx.post(
            gateway.base_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Hi {i}"}],
                "max_tokens": max_tokens,
            },
            timeout=120,
        )

    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(call, range(CONCURRENCY)))


def not_near_a_minute_boundary() -> None:
    """Windows are fixed minutes; start a burst well inside one."""
    while time.time() % 60 > 40:
        time.sleep(1)


def test_requests_per_minute_per_key_hold_exactly(gateway: Gateway) -> None:
    key = gateway.create_key("rpm-tenant")
    limited = maas(gateway, "keys", "create", "--tenant", "rpm-tenant", "--rpm", "5")[-1]
    not_near_a_minute_boundary()
    responses = burst(gateway, limited)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) == 5 and len(refused) == CONCURRENCY - 5
    assert refused[0].json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused[0].headers["retry-after"]) >= 1
    assert refused[0].headers["x-ratelimit-limit-requests"] == "5"
    assert refused[0].headers["x-ratelimit-remaining-requests"] == "0"
    assert {r.headers["x-ratelimit-limit-requests"] for r in ok} == {"5"}
    # The tenant's other, unlimited key is not held back by this key's limit.
    assert burst(gateway, key)[0].status_code == 200


def test_token_budget_holds_with_at_most_one_request_of_overshoot(gateway: Gateway) -> None:
    budget = 400
    maas(gateway, "tenants", "create", "budget-tenant", "--budget-tokens", str(budget), "--period", "day")
    key = gateway.create_key("budget-tenant")
    responses = burst(gateway, key)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert ok and refused
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
    used = sum(r.json()["usage"]["total_tokens"] for r in ok)
    largest = max(r.json()["usage"]["total_tokens"] for r in ok)
    assert used <= budget + largest
    ledger = httpx.get(gateway.base_url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()
    row = ledger["data"][0]
    assert row["prompt_tokens"] + row["completion_tokens"] == used


def test_key_restricted_to_models_and_revoked_keys(gateway: Gateway) -> None:
    scoped = maas(gateway, "keys", "create", "--tenant", "scoped", "--models", "other-model")[-1]
    response = burst(gateway, scoped)[0]
    assert response.status_code == 403 and response.json()["error"]["param"] == "model"

    created = maas(gateway, "keys", "create", "--tenant", "revoked")
    key, key_id = created[-1], created[0].split()[2]
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(gateway.base_url + "/v1/models", headers=headers).status_code == 200
    maas(gateway, "keys", "revoke", key_id)
    deadline = time.monotonic() + 10  # the gateway caches a key's lookup for at most 5 s
    while httpx.get(gateway.base_url + "/v1/models", headers=headers).status_code == 200:
        assert time.monotonic() < deadline, "revoked key still accepted"
        time.sleep(0.5)
    assert httpx.get(gateway.base_url + "/v1/models", headers=headers).status_code == 401
