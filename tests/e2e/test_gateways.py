"""Several gateways in front of the same replicas (issue 17), on a real Ray cluster and real databases.

A head and two worker nodes are started with `ray start` on loopback (explicit ports, token
authentication); the workers declare the `own` pool, so replicas land only on them. One gateway deploys
the catalog, a second one attaches (`maas serve --attach`); both keep tenants, keys and the ledger in one
PostgreSQL and the rate-limit counters in Redis. Then: both answer for the same two replicas over their
own replica channels; a key revoked through one is refused by the other; a rate limit holds across both
under concurrent load; a catalog change through the deployer reaches the attached gateway; a worker node
killed moves its replica and both gateways go on answering; the deployer stopped leaves the attached one
serving; a deployer started again takes the running replicas over, also at once after its predecessor was
killed. Last, `maas serve --workers 2` runs two gateway processes on one port over a private head, with
every store (counters included) in PostgreSQL: both answer, one rate limit holds across both, one scrape
of /metrics counts both processes' requests, and a worker killed takes nothing with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Gateway, create_key, gateway_env, settles, start_gateway, stop_gateway
from tests.e2e.ray_cluster import kill_ray_node, start_ray_node, stop_ray_node
from tests.gateway.billing.conftest import REDIS, drop_redis_prefix, redis_prefix_for_new_test
from tests.gateway.billing.ledger.conftest import drop_schema, postgres_url_for_new_schema

pytestmark = pytest.mark.e2e

MODEL = "tiny-shared"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
# Ray notices a dead node within a few seconds instead of the default ~30 s.
FAST_NODE_DEATH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def catalog(replicas: int) -> dict[str, Any]:
    return {
        "pools": [{"name": "own", "kind": "owned", "chips": {"cpu": {"purchase_price": 2000}}}],
        "models": [
            {
                "name": MODEL,
                "family": "llama",
                "chat_template": "llama3",
                "context_length": 256,
                "weights": {"kind": "tiny_random", "architecture": "llama", "seed": 17},
                "deployments": [
                    {
                        "backend": "transformers",
                        "pool": "own",
                        "replicas": replicas,
                        "max_ongoing_requests": 8,
                        "engine": {"dtype": "float32", "max_batch_size": 4},
                    }
                ],
            }
        ],
    }


@dataclass
class Cluster:
    env: dict[str, str]
    address: str
    config: Path
    head: Any
    workers: dict[str, Any]  # name -> `ray start` process
    deployer: Gateway
    attached: Gateway
    admin: str
    gateways: list[Gateway]


def replica_pids(cluster: Cluster) -> dict[str, set[int]]:
    """Model replica processes per worker node (Ray's workers stay in their node's session)."""
    pids: dict[str, set[int]] = {name: set() for name in cluster.workers}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "ServeReplica:" not in " ".join(proc.info["cmdline"] or []):
                continue
            sid = os.getsid(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
        for name, node in cluster.workers.items():
            if sid == node.pid:
                pids[name].add(proc.pid)
    return pids


def replicas_by_node(cluster: Cluster) -> dict[str, int]:
    return {name: len(pids) for name, pids in replica_pids(cluster).items()}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chips(gw: Gateway, admin: str) -> dict[str, Any]:
    response = httpx.get(gw.base_url + "/admin/chips", headers=bearer(admin), timeout=30)
    response.raise_for_status()
    return dict(response.json())


def row(gw: Gateway, admin: str) -> dict[str, Any]:
    return next(m for m in chips(gw, admin)["models"] if m["model"] == MODEL)


def chat(gw: Gateway, key: str, max_tokens: int = 8) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": QUESTION, "max_tokens": max_tokens, "temperature": 0},
        timeout=60,
    )


def served(gw: Gateway, tenant: str) -> float:
    """Requests answered 200 for ``tenant``, as one scrape of the gateway's /metrics reports them."""
    text = httpx.get(gw.base_url + "/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "maas_requests_total"
        and sample.labels.get("tenant") == tenant
        and sample.labels.get("status") == "ok"
    )


def admin_post(gw: Gateway, admin: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.base_url + path, headers=bearer(admin), json=body, timeout=120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    url, schema = postgres_url_for_new_schema()
    installation = redis_prefix_for_new_test().replace("_", "-")
    env = gateway_env(
        tmp_path_factory,
        "maas-gateways",
        MAAS_DATABASE_URL=url,
        MAAS_REDIS_URL=REDIS,
        MAAS_INSTALLATION=installation,
        MAAS_KEY_CACHE_SECONDS="60",  # a revocation must travel by NOTIFY, not by the cache running out
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=os.urandom(32).hex(),
        **FAST_NODE_DEATH,
    )
    home = Path(env["MAAS_HOME"])
    config = home / "catalog.yaml"
    config.write_text(yaml.safe_dump(catalog(replicas=2)))
    head, address = start_ray_node(env, home / "ray-head.log", num_cpus=0)
    workers: dict[str, Any] = {}
    gateways: list[Gateway] = []
    try:
        for name in ("a", "b"):  # one after the other: two `ray start` at once time out on 2 cores
            workers[name], _ = start_ray_node(
                env, home / f"ray-{name}.log", head=address, num_cpus=2, resources={"maas_pool_own": 1}
            )
        admin = create_key(env, None, admin=True)
        key = create_key(env, "gateways")
        deployer = start_gateway(env, key, config=config, args=["--ray-address", address])
        gateways.append(deployer)
        attached = start_gateway(env, deployer.key, args=["--attach", "--ray-address", address])
        gateways.append(attached)
        yield Cluster(env, address, config, head, workers, deployer, attached, admin, gateways)
    finally:
        for gw in gateways:
            if gw.process.poll() is None:
                stop_gateway(gw)
        for node in workers.values():
            stop_ray_node(node)
        stop_ray_node(head)
        drop_schema(schema)
        drop_redis_prefix(f"maas-{installation}")


def test_both_gateways_answer_for_the_same_replicas_each_over_its_own_channels(cluster: Cluster) -> None:
    assert sum(replicas_by_node(cluster).values()) == 2  # the attached gateway deployed nothing
    for gw in (cluster.deployer, cluster.attached):
        # Each replica dials every gateway listed in the installation's directory.
        assert settles(lambda gw=gw: row(gw, cluster.admin)["replica_channels"] == 2), row(gw, cluster.admin)
        assert row(gw, cluster.admin)["healthy_replicas"] == 2
    members = chips(cluster.attached, cluster.admin)["gateways"]["members"]
    assert sorted(members.values()) == ["attached", "deploying"], members
    answers = [chat(gw, cluster.deployer.key) for gw in (cluster.deployer, cluster.attached)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    texts = {a.json()["choices"][0]["message"]["content"] for a in answers}
    assert len(texts) == 1  # greedy, same weights, same replicas


def test_the_attached_gateway_refuses_catalog_changes_and_names_the_way(cluster: Cluster) -> None:
    response = admin_post(cluster.attached, cluster.admin, "/admin/catalog", catalog(replicas=1))
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "catalog_attached"


def test_a_key_revoked_through_one_gateway_is_refused_by_the_other_within_a_second(cluster: Cluster) -> None:
    created = admin_post(cluster.deployer, cluster.admin, "/admin/keys", {"tenant": "revoked"}).json()
    assert chat(cluster.attached, created["key"]).status_code == 200  # now in the attached gateway's cache
    revoked = httpx.delete(
        f"{cluster.deployer.base_url}/admin/keys/{created['id']}",
        headers=bearer(cluster.admin),
        timeout=10,
    )
    assert revoked.status_code == 200, revoked.text
    started = time.monotonic()
    assert settles(lambda: chat(cluster.attached, created["key"]).status_code == 401, timeout_s=5)
    print(f"revocation seen by the other gateway after {time.monotonic() - started:.2f} s (key cache 60 s)")


def test_a_rate_limit_holds_across_both_gateways_under_concurrent_load(cluster: Cluster) -> None:
    body = {"tenant": "limited", "rpm": 6}
    created = admin_post(cluster.deployer, cluster.admin, "/admin/keys", body).json()
    targets = [cluster.deployer, cluster.attached] * 10
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda gw: chat(gw, created["key"], max_tokens=2).status_code, targets))
    assert sorted(statuses) == [200] * 6 + [429] * 14, statuses
    usage = httpx.get(cluster.attached.base_url + "/v1/usage", headers=bearer(created["key"]), timeout=10)
    rows = usage.json()["data"]
    # One ledger holds both gateways' records: every attempt once, tokens only for the six served.
    assert sum(r["requests"] for r in rows) == 20, rows
    assert 6 <= sum(r["completion_tokens"] for r in rows) <= 12, rows


def test_a_catalog_change_through_the_deployer_reaches_the_attached_gateway(cluster: Cluster) -> None:
    changed = catalog(replicas=2)
    changed["models"][0]["aliases"] = ["tiny-alias"]
    response = admin_post(cluster.deployer, cluster.admin, "/admin/catalog", changed)
    assert response.status_code == 200 and response.json()["updated"] == [MODEL], response.text

    def alias_served() -> bool:
        answer = httpx.post(
            cluster.attached.base_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {cluster.deployer.key}"},
            json={"model": "tiny-alias", "messages": QUESTION, "max_tokens": 2},
            timeout=60,
        )
        return answer.status_code == 200

    assert settles(alias_served, timeout_s=15)
    assert sum(replicas_by_node(cluster).values()) == 2  # metadata only: no replica replaced


def test_a_killed_worker_node_moves_its_replica_and_both_gateways_keep_answering(cluster: Cluster) -> None:
    before = replicas_by_node(cluster)
    victim = max(before, key=lambda name: before[name])
    survivor = next(name for name in cluster.workers if name != victim)
    kill_ray_node(cluster.workers.pop(victim))
    killed = time.monotonic()
    outcomes: list[int] = []

    def moved() -> bool:
        for gw in (cluster.deployer, cluster.attached):
            outcomes.append(chat(gw, cluster.deployer.key, max_tokens=2).status_code)
        return replicas_by_node(cluster)[survivor] == 2 and all(
            row(gw, cluster.admin)["healthy_replicas"] == 2 for gw in (cluster.deployer, cluster.attached)
        )

    assert settles(moved, timeout_s=120), (replicas_by_node(cluster), outcomes)
    recovered = time.monotonic() - killed
    failed = sum(1 for status in outcomes if status != 200)
    print(f"node killed: replicas back after {recovered:.1f} s; {failed}/{len(outcomes)} requests failed")
    # The replica still placed answers throughout: a request that met the lost one before its first byte
    # is sent once more to the deployment, whose other replica takes it.
    assert failed == 0, outcomes
    for gw in (cluster.deployer, cluster.attached):
        assert settles(lambda gw=gw: row(gw, cluster.admin)["replica_channels"] == 2)
        assert [chat(gw, cluster.deployer.key).status_code for _ in range(5)] == [200] * 5


def test_stopping_the_deploying_gateway_leaves_the_attached_one_serving(cluster: Cluster) -> None:
    stop_gateway(cluster.deployer)
    assert sum(replicas_by_node(cluster).values()) == 2  # its replicas stay for the attached gateway
    assert [chat(cluster.attached, cluster.deployer.key).status_code for _ in range(5)] == [200] * 5
    assert httpx.get(cluster.attached.base_url + "/health", timeout=10).status_code == 200


def test_a_deploying_gateway_started_again_keeps_the_running_replicas(cluster: Cluster) -> None:
    before = replica_pids(cluster)
    redeployer = start_gateway(
        cluster.env, cluster.deployer.key, config=cluster.config, args=["--ray-address", cluster.address]
    )
    cluster.gateways.append(redeployer)
    assert "its replicas run as the previous deploying gateway left them" in redeployer.log.read_text()
    assert replica_pids(cluster) == before  # taken over, not restarted
    assert settles(lambda: row(redeployer, cluster.admin)["replica_channels"] == 2)
    for gw in (redeployer, cluster.attached):
        assert [chat(gw, cluster.deployer.key).status_code for _ in range(3)] == [200] * 3


def test_a_deploying_gateway_killed_and_started_again_at_once_takes_over(cluster: Cluster) -> None:
    """Its predecessor is still listed (no heartbeat for up to 10 s): the new one waits for the entry to
    expire instead of refusing, as a pod restarted by Kubernetes would be."""
    killed = cluster.gateways[-1]
    before = replica_pids(cluster)
    killed.process.kill()
    killed.process.wait(timeout=10)
    again = start_gateway(
        cluster.env, cluster.deployer.key, config=cluster.config, args=["--ray-address", cluster.address]
    )
    cluster.gateways.append(again)
    assert replica_pids(cluster) == before
    assert settles(lambda: row(again, cluster.admin)["replica_channels"] == 2)
    assert [chat(again, cluster.deployer.key).status_code for _ in range(3)] == [200] * 3
    assert len(chips(again, cluster.admin)["gateways"]["members"]) == 2  # the killed one has expired


def test_workers_run_several_gateway_processes_on_one_port(tmp_path_factory: pytest.TempPathFactory) -> None:
    # PostgreSQL for every store, counters included (the cluster above keeps its counters in Redis).
    url, schema = postgres_url_for_new_schema()
    env = gateway_env(tmp_path_factory, "maas-workers", MAAS_DATABASE_URL=url)
    config = Path(env["MAAS_HOME"]) / "catalog.yaml"
    config.write_text(yaml.safe_dump(catalog(replicas=1)))
    gw = start_gateway(env, create_key(env, "workers"), config=config, args=["--workers", "2"])
    try:
        admin = create_key(env, None, admin=True)
        seen = set()
        for _ in range(20):  # a new connection each time: the kernel spreads them over both processes
            report = chips(gw, admin)
            seen.add(report["gateways"]["id"])
            assert len(report["gateways"]["members"]) == 2
        assert len(seen) == 2, seen
        for _ in range(10):
            assert chat(gw, gw.key).status_code == 200
        # One /metrics for the port: whichever process answers reports both processes' requests.
        assert {served(gw, "workers") for _ in range(10)} == {10}
        families = {f.name for f in text_string_to_metric_families(httpx.get(gw.base_url + "/metrics").text)}
        assert all(name.startswith("maas_") for name in families), families  # nothing of Ray's or an engine's
        limited = admin_post(gw, admin, "/admin/keys", {"tenant": "limited", "rpm": 5}).json()["key"]
        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(lambda _: chat(gw, limited, max_tokens=2).status_code, range(16)))
        assert sorted(statuses) == [200] * 5 + [429] * 11, statuses  # one limit across both processes
        # A worker that dies takes nothing with it: the first process and the replica go on serving.
        (worker,) = [p for p in psutil.Process(gw.process.pid).children() if "--attach" in p.cmdline()]
        worker.kill()
        assert settles(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, 10)
        assert [chat(gw, gw.key).status_code for _ in range(10)] == [200] * 10
        assert served(gw, "workers") == 20  # the killed worker's counts stay in the sum
        assert row(gw, admin)["healthy_replicas"] == 1
    finally:
        stop_gateway(gw)  # every worker drains and stops with it; nothing is left behind
        drop_schema(schema)
