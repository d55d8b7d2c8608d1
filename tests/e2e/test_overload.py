"""Overload on the real gateway and engine: past the model's bounded queue requests are refused at once
(503 alone, 429 for a tenant over its share) with Retry-After, a quiet tenant is still served while another
floods, and every request, served or refused, has its one usage record."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections import Counter

import httpx
import pytest

from tests.e2e.conftest import MODEL, Gateway

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("idle_model")]

# models.yaml: one replica taking 16 at once, 48 more waiting in the gateway.
ADMITTED = 64


async def one(
    client: httpx.AsyncClient, key: str, i: int
) -> tuple[int, float, httpx.Headers, dict[str, object]]:
    started = time.perf_counter()
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Count to {i}."}], "max_tokens": 8}
    response = await client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    return response.status_code, time.perf_counter() - started, response.headers, response.json()


def requests_total(gateway: Gateway, tenant: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    pattern = re.compile(r"^maas_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)
    for match in pattern.finditer(httpx.get(gateway.base_url + "/metrics").text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("tenant") == tenant:
            counts[labels["status"]] += int(float(match["value"]))
    return counts


def model_load(gateway: Gateway) -> tuple[float, float]:
    """The model's requests waiting for their first token, and those its replicas hold, as /metrics says."""
    text = httpx.get(gateway.base_url + "/metrics").text
    queued = re.findall(rf'^maas_requests_queued\{{model="{re.escape(MODEL)}"\}} (\S+)$', text, re.MULTILINE)
    running = re.findall(
        rf'^maas_requests_in_flight\{{[^}}]*model="{re.escape(MODEL)}"[^}}]*\}} (\S+)$', text, re.MULTILINE
    )
    return sum(map(float, queued)), sum(map(float, running))


def wait_until_idle(gateway: Gateway, timeout_s: float) -> tuple[float, float]:
    """Poll until the model holds and queues nothing (or ``timeout_s`` passes); its last load."""
    deadline = time.monotonic() + timeout_s
    load = model_load(gateway)
    while load != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.2)
        load = model_load(gateway)
    return load


@pytest.fixture
def idle_model(gateway: Gateway) -> None:
    """Each test here starts on an idle model, whatever the one before left running."""
    assert wait_until_idle(gateway, 120) == (0, 0)


async def flood(
    gateway: Gateway, key: str, n: int
) -> list[tuple[int, float, httpx.Headers, dict[str, object]]]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=gateway.base_url, limits=limits, timeout=120) as client:
        return await asyncio.gather(*(one(client, key, i) for i in range(n)))


def test_past_the_queue_a_lone_tenant_is_refused_at_once_with_503_and_nothing_is_lost(
    gateway: Gateway,
) -> None:
    key = gateway.create_key("overload-alone")
    results = asyncio.run(flood(gateway, key, 3 * ADMITTED))
    statuses = Counter(status for status, *_ in results)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] >= ADMITTED and statuses[200] >= ADMITTED // 2, statuses
    refused = [(took, headers, body) for status, took, headers, body in results if status == 503]
    served = sorted(took for status, took, _, _ in results if status == 200)
    for _, headers, body in refused:
        assert int(headers["retry-after"]) >= 1
        assert body["error"]["code"] == "model_overloaded"  # type: ignore[index]
    # Refused while the admitted ones were still being answered, not after waiting for them. The client's
    # clock also counts the time a request waits for its connection to be accepted, which on a host whose
    # cores the engine holds can reach the answers of the first admitted ones; so the refusals as a whole
    # come before the admitted as a whole, and each before the last admitted answer.
    refused_took = sorted(took for took, _, _ in refused)
    assert refused_took[len(refused_took) // 2] < served[len(served) // 2], (refused_took, served)
    assert refused_took[-1] < served[-1], (refused_took, served)
    counts = requests_total(gateway, "overload-alone")
    assert counts["ok"] == statuses[200] and counts["rejected"] == statuses[503], counts


async def keep_flooding(
    gateway: Gateway, key: str, workers: int, until: asyncio.Event
) -> list[tuple[int, float, httpx.Headers, dict[str, object]]]:
    """``workers`` clients that each send again as soon as they have an answer, until ``until`` is set:
    the model's queue stays full however fast the engine answers or the requests arrive."""
    # A fresh connection per request: a kept-alive one can be closed by the server just as it is reused.
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=0)
    results: list[tuple[int, float, httpx.Headers, dict[str, object]]] = []
    async with httpx.AsyncClient(base_url=gateway.base_url, limits=limits, timeout=120) as client:

        async def worker(w: int) -> None:
            while not until.is_set():
                result = await one(client, key, w)
                results.append(result)
                if result[0] != 200:
                    await asyncio.sleep(0.5)  # a refused client comes back sooner than Retry-After says

        await asyncio.gather(*(worker(w) for w in range(workers)))
    return results


def test_a_quiet_tenant_is_served_while_another_floods_the_model(gateway: Gateway) -> None:
    flooder, quiet = gateway.create_key("overload-flood"), gateway.create_key("overload-quiet")

    async def both() -> tuple[list[tuple[int, float, httpx.Headers, dict[str, object]]], list[int]]:
        done = asyncio.Event()
        flooding = asyncio.create_task(keep_flooding(gateway, flooder, 3 * ADMITTED, done))
        await asyncio.sleep(1.0)  # the flood has filled the queue
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=120) as client:
            mine = [(await one(client, quiet, i))[0] for i in range(4)]
        done.set()
        return await flooding, mine

    flooded, mine = asyncio.run(both())
    assert mine == [200, 200, 200, 200]
    statuses = Counter(status for status, *_ in flooded)
    # While the quiet tenant waits or runs, the flooder is over its share: its newest waiter (or its
    # newcomer) is refused with 429 instead of taking the quiet tenant's place in the full queue.
    assert statuses[429] >= 1 and set(statuses) <= {200, 429, 503}, statuses
    codes = {body["error"]["code"] for status, _, _, body in flooded if status == 429}  # type: ignore[index]
    assert codes == {"tenant_over_share"}
    counts = requests_total(gateway, "overload-flood")
    assert counts["ok"] == statuses[200] and counts["rejected"] == statuses[429] + statuses[503], counts


async def first_token_at(
    client: httpx.AsyncClient, key: str, tier: str, i: int, started: asyncio.Event | None = None
) -> float:
    """When the first content arrived of a streamed request asking for ``tier`` (``started`` is set then)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Tell a story about {i}."}],
        "max_tokens": 48,
        "ignore_eos": True,
        "stream": True,
        "service_tier": tier,
    }
    headers = {"Authorization": f"Bearer {key}"}
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        first = 0.0
        async for line in response.aiter_lines():
            if not first and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter()
                assert f'"service_tier":"{tier}"' in line
                if started is not None:
                    started.set()
        return first


def test_a_tenants_priority_request_passes_its_own_queued_flex_requests_on_the_real_engine(
    gateway: Gateway,
) -> None:
    """16 flex streams fill the replica and 20 more wait; a priority request sent once the first ones
    stream takes the first freed slot, so the 5 flex requests left for the third wave all start after it
    (first come first served would put it behind the 20, with at most 4 flex starting later)."""
    key = gateway.create_key("tiers")

    async def run() -> tuple[float, list[float]]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        started = asyncio.Event()
        async with httpx.AsyncClient(base_url=gateway.base_url, limits=limits, timeout=120) as client:
            flex = [asyncio.create_task(first_token_at(client, key, "flex", i, started)) for i in range(36)]
            await started.wait()  # the first wave streams: every flex request reached the gateway long ago
            await asyncio.sleep(0.2)
            priority = await first_token_at(client, key, "priority", 99)
            return priority, list(await asyncio.gather(*flex))

    priority, flex = asyncio.run(run())
    after = [t for t in flex if t > priority]
    assert len(after) >= 5, (len(after), sorted(flex), priority)


def test_requests_whose_clients_give_up_leave_the_queue_and_the_engine_at_once(gateway: Gateway) -> None:
    """64 long answers fill the replica (16) and the queue (48); their clients time out after 3 s. Each
    wait is cancelled as its connection closes: the model is idle again within seconds (served to nobody,
    the 64 would hold it for a minute or more) and each request has its one record, cancelled, unbilled."""
    key = gateway.create_key("gives-up")
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell a long story."}],
        "max_tokens": 512,
        "ignore_eos": True,
    }

    async def give_up(client: httpx.AsyncClient) -> BaseException | None:
        try:
            await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
        except httpx.TimeoutException as exc:
            return exc
        return None

    async def run() -> list[BaseException | None]:
        limits = httpx.Limits(max_connections=ADMITTED, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=gateway.base_url, limits=limits, timeout=3.0) as client:
            return await asyncio.gather(*(give_up(client) for _ in range(ADMITTED)))

    gave_up = asyncio.run(run())
    assert all(isinstance(exc, httpx.ReadTimeout) for exc in gave_up), gave_up
    assert wait_until_idle(gateway, 10) == (0, 0)
    counts = requests_total(gateway, "gives-up")
    assert counts == {"cancelled": ADMITTED}, counts
    usage = httpx.get(gateway.base_url + "/v1/usage", headers={"Authorization": f"Bearer {key}"})
    assert usage.status_code == 200, usage.text
    [row] = usage.json()["data"]  # the tenant's whole usage: 64 requests, nothing billed
    assert row["requests"] == ADMITTED and row["prompt_tokens"] == row["completion_tokens"] == 0, row
    assert float(row["cost"]) == 0, row


def test_a_kept_alive_connection_idle_for_seconds_still_takes_the_next_request(gateway: Gateway) -> None:
    """Clients and load balancers reuse idle connections: the gateway keeps one open longer than they
    wait between requests (uvicorn's 5 s default closes it, and a client sending just then gets an error)."""
    host, port = gateway.base_url.removeprefix("http://").split(":")
    request = f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {gateway.key}\r\n\r\n"

    def answer(conn: socket.socket) -> bytes:
        received = b""
        while b"\r\n\r\n" not in received:
            received += conn.recv(65536) or b"<closed>"
            assert not received.endswith(b"<closed>"), received
        head, rest = received.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])  # type: ignore[index]
        while len(rest) < length:
            rest += conn.recv(65536) or b"<closed>"
            assert not rest.endswith(b"<closed>"), rest
        return head

    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request.encode())
        assert answer(conn).startswith(b"HTTP/1.1 200")
        time.sleep(6.5)
        conn.sendall(request.encode())  # the same connection, after longer than uvicorn's default
        assert answer(conn).startswith(b"HTTP/1.1 200")
