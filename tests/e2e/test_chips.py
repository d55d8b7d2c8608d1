"""Many chips behind one API, on one real gateway (Ray Serve, vLLM on the CPU, transformers on the CPU).

* The same tiny checkpoint served by the vLLM backend and by the transformers backend gives identical
  greedy tokens through the gateway, for concurrent requests (the transformers engine batches them).
* A third-party backend installed as a wheel with a ``maas.backends`` entry point serves requests.
* Two deployments ask for different custom chip resources (Enflame's ``GCU``, built in, and an
  operator-declared ``hexaflake`` kind) on a local Ray cluster started with those resources
  (``ray start --head --resources``, token authentication) that the gateway joins (``--ray-address``):
  every replica is placed on them and sees its own device in the kind's visible-devices variable; when
  the gateway stops it removes its models and leaves the cluster running.
* ``/admin/chips`` and ``maas chips`` show models by chip and the chips in use; a catalog asking for chips
  the cluster lacks is refused at apply time with a clear error, and nothing changes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tests.e2e.conftest import Gateway, create_key, gateway_env, start_gateway, stop_gateway
from tests.e2e.ray_cluster import start_ray_node, stop_ray_node

pytestmark = pytest.mark.e2e

PACKAGE = Path(__file__).parent / "packages" / "maas_dummy_backend"
TINY = {"kind": "tiny_random", "architecture": "llama", "seed": 11}
CPU_VLLM = {
    "backend": "vllm",
    "engine": {"dtype": "float32", "enforce_eager": True, "kv_cache_gib": 0.25, "max_num_seqs": 4},
}
CPU_TRANSFORMERS = {"backend": "transformers", "engine": {"dtype": "float32", "max_batch_size": 4}}
QUESTIONS = [
    "What is the capital of France?",
    "Name three colours.",
    "Write one line about the sea.",
    "Count from one to five.",
]


def model(name: str, deployment: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "family": "llama",
        "context_length": 512,
        "chat_template": "llama3",
        "weights": TINY,
        "deployments": [deployment],
    }


def catalog(enflame_replicas: int = 2) -> dict[str, Any]:
    return {
        "chips": [
            {
                "name": "hexaflake",
                "ray_resource": "HXF",
                "visible_devices_env": "HXF_VISIBLE_DEVICES",
                "description": "declared by the operator in the catalog",
            }
        ],
        "models": [
            model("tiny-vllm", CPU_VLLM),
            model("tiny-transformers", CPU_TRANSFORMERS),
            model("on-enflame", {"backend": "dummy", "chip": "enflame", "replicas": enflame_replicas}),
            model("on-hexaflake", {"backend": "dummy", "chip": "hexaflake", "replicas": 2}),
        ],
    }


def build_wheel(out_dir: Path) -> Path:
    """A wheel of the dummy backend package, with its entry point (written by hand: no build backend)."""
    dist = "maas_dummy_backend-0.1.dist-info"
    files = {
        "maas_dummy_backend/__init__.py": (PACKAGE / "__init__.py").read_bytes(),
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: maas-dummy-backend\nVersion: 0.1\n",
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: maas-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{dist}/entry_points.txt": b"[maas.backends]\ndummy = maas_dummy_backend:DummyBackend\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out_dir / "maas_dummy_backend-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def serve_replicas(head: subprocess.Popen[bytes]) -> list[str]:
    """The cluster's model replica processes (Ray titles them ``ray::ServeReplica:model-...``)."""
    found = []
    for proc in psutil.Process(head.pid).children(recursive=True):
        try:
            if "ServeReplica:model-" in " ".join(proc.cmdline()):
                found.append(proc.name())
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(scope="module")
def chips_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("chips")
    site = work / "site"
    wheel = build_wheel(work)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            site,
            wheel,
        ],
        check=True,
    )
    config = work / "chips.yaml"
    config.write_text(yaml.safe_dump(catalog()))
    # The vendor package is installed on the node (the cluster's workers import it) and where the gateway
    # validates the catalog; the cluster authenticates with a token the gateway is given.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "PYTHONPATH": str(site)}
    env = gateway_env(tmp_path_factory, "maas-chips", **auth)
    head, address = start_ray_node(env, work / "ray-head.log", num_cpus=4, resources={"GCU": 2, "HXF": 2})
    try:
        gw = start_gateway(env, create_key(env, "chips"), config=config, args=["--ray-address", address])
        try:
            yield gw
        finally:
            stop_gateway(gw)
        deadline = time.monotonic() + 60
        while serve_replicas(head) and time.monotonic() < deadline:
            time.sleep(1)
        assert not serve_replicas(head), "the gateway left its replicas running in the cluster"
        assert head.poll() is None, "stopping the gateway must not stop a cluster it joined"
    finally:
        stop_ray_node(head)


def greedy(gw: Gateway, name: str, question: str) -> tuple[list[str], str, int]:
    reply = gw.client().chat.completions.create(
        model=name,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        max_tokens=16,
        logprobs=True,
    )
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None and reply.usage is not None
    tokens = [t.token for t in choice.logprobs.content]
    return tokens, choice.message.content or "", reply.usage.prompt_tokens


def test_transformers_and_vllm_backends_give_identical_greedy_tokens_through_the_gateway(
    chips_gateway: Gateway,
) -> None:
    with ThreadPoolExecutor(8) as pool:  # concurrent: each engine batches these
        vllm = list(pool.map(lambda q: greedy(chips_gateway, "tiny-vllm", q), QUESTIONS))
        hf = list(pool.map(lambda q: greedy(chips_gateway, "tiny-transformers", q), QUESTIONS))
    assert hf == vllm
    assert all(len(tokens) > 0 for tokens, _, _ in hf)


def test_transformers_backend_streams_the_same_text_it_answers_whole(chips_gateway: Gateway) -> None:
    _, whole, _ = greedy(chips_gateway, "tiny-transformers", QUESTIONS[0])
    stream = chips_gateway.client().chat.completions.create(
        model="tiny-transformers",
        messages=[{"role": "user", "content": QUESTIONS[0]}],
        temperature=0,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    for chunk in stream:
        pieces += [c.delta.content or "" for c in chunk.choices]
        usage = chunk.usage or usage
    assert "".join(pieces) == whole
    assert usage is not None and usage.completion_tokens > 0


def devices_seen(gw: Gateway, name: str, variable: str, requests: int = 24) -> dict[str, str]:
    """pid → the visible-devices value that replica reported, over ``requests`` calls."""
    seen: dict[str, str] = {}
    for _ in range(requests):
        reply = gw.client().chat.completions.create(
            model=name, messages=[{"role": "user", "content": "where"}]
        )
        text = reply.choices[0].message.content or ""
        found = dict(re.findall(r"(\w+)=(\S*)", text))
        assert found["chip"] in name
        assert seen.setdefault(found["pid"], found[variable]) == found[variable]
        assert reply.usage is not None and reply.usage.completion_tokens == len(text.split())
    return seen


def test_third_party_backend_on_custom_chips_each_replica_sees_its_own_device(chips_gateway: Gateway) -> None:
    enflame = devices_seen(chips_gateway, "on-enflame", "TOPS_VISIBLE_DEVICES")
    hexaflake = devices_seen(chips_gateway, "on-hexaflake", "HXF_VISIBLE_DEVICES")
    assert sorted(enflame.values()) == ["0", "1"]  # two replicas, one device each, never shared
    assert sorted(hexaflake.values()) == ["0", "1"]
    assert not set(enflame) & set(hexaflake)  # four distinct replica processes


@pytest.fixture(scope="module")
def admin_key(chips_gateway: Gateway) -> str:
    return chips_gateway.create_key(admin=True)


def test_admin_chips_shows_models_by_chip_and_the_chips_in_use(
    chips_gateway: Gateway, admin_key: str
) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    body = httpx.get(chips_gateway.base_url + "/admin/chips", headers=headers, timeout=30).json()
    models = {m["model"]: m for m in body["models"]}
    assert models["on-enflame"]["chip"] == "enflame" and models["on-enflame"]["healthy_replicas"] == 2
    assert models["on-hexaflake"]["ray_resource"] == "HXF"
    assert models["tiny-transformers"]["backend"] == "transformers"
    assert body["cluster"]["GCU"] == {"total": 2.0, "available": 0.0}
    assert body["cluster"]["HXF"] == {"total": 2.0, "available": 0.0}
    printed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "chips", "--url", chips_gateway.base_url],
        env={**chips_gateway.env, "MAAS_ADMIN_KEY": admin_key},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(r"on-enflame\s+enflame\s+1\s+2\s+2", printed)
    assert re.search(r"GCU\s+2\s+0", printed)


def test_a_catalog_asking_for_chips_the_cluster_lacks_is_refused_at_apply_time(
    chips_gateway: Gateway, admin_key: str
) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    response = httpx.post(
        chips_gateway.base_url + "/admin/catalog",
        content=yaml.safe_dump(catalog(enflame_replicas=3)),
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_chips"
    assert "needs 3 GCU in all" in error["message"] and "offers 2" in error["message"]
    body = httpx.get(chips_gateway.base_url + "/admin/chips", headers=headers, timeout=30).json()
    assert {m["model"]: m["replicas"] for m in body["models"]}["on-enflame"] == 2  # nothing changed
