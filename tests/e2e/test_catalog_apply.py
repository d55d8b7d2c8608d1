"""Hot catalog changes on the running gateway: a model is added (a reasoning model), serves, and is removed
while a request to it is in flight; that request finishes, and the name answers 404 afterwards."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from tests.e2e.conftest import EMBED_MODEL, MODEL, Gateway

pytestmark = pytest.mark.e2e

# Few-shot turns that make the real model answer in DeepSeek-R1 form under greedy decoding.
FEW_SHOT = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "<think>2 plus 2 is 4.</think>4"},
    {"role": "user", "content": "What is 3+3?"},
    {"role": "assistant", "content": "<think>3 plus 3 is 6.</think>6"},
    {"role": "user", "content": "What is 5+5?"},
]


def scrape(gateway: Gateway) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(gateway.base_url + "/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def apply(gateway: Gateway, admin: str, catalog: dict[str, Any], tmp_path: Path) -> list[str]:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "catalog",
            "apply",
            str(path),
            "--url",
            gateway.base_url,
            "--key",
            admin,
        ],
        env=gateway.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return list(out.stdout.splitlines())


def test_models_are_added_and_removed_without_a_restart(gateway: Gateway, tmp_path: Path) -> None:
    admin = gateway.create_key(admin=True)
    base = yaml.safe_load((REPO / "models.yaml").read_text())
    with_r1 = yaml.safe_load((REPO / "models.yaml").read_text())
    r1 = dict(with_r1["models"][0], name="smollm2-r1", aliases=["r1"], reasoning="deepseek_r1")
    # A replica silent for 2 s is taken for hung: a whole answer that takes longer must still arrive.
    r1["deployments"] = [dict(r1["deployments"][0], stall_timeout_s=2)]
    with_r1["models"].append(r1)

    assert "added: smollm2-r1" in apply(gateway, admin, with_r1, tmp_path)
    client = gateway.client()
    assert {m.id for m in client.models.list().data} == {MODEL, EMBED_MODEL, "smollm2-r1"}

    answer = client.chat.completions.create(model="r1", messages=FEW_SHOT, temperature=0, max_tokens=30)
    message = answer.choices[0].message
    assert message.content == "10"
    assert message.model_extra is not None and message.model_extra["reasoning_content"] == "5 plus 5 is 10."
    stream = client.chat.completions.create(
        model="r1", messages=FEW_SHOT, temperature=0, max_tokens=30, stream=True
    )
    deltas = [c.choices[0].delta for c in stream if c.choices]
    streamed_reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert streamed_reasoning == "5 plus 5 is 10." and "".join(d.content or "" for d in deltas) == "10"

    # A non-streamed answer of 150 tokens takes seconds here (3 to 8), longer than the deployment's stall
    # bound; the replica says its engine progresses meanwhile, so the answer is not cut with a 504.
    long = client.completions.create(
        model="r1", prompt="Once upon a time", max_tokens=150, extra_body={"ignore_eos": True}
    )
    assert long.usage is not None and long.usage.completion_tokens == 150
    assert long.choices[0].finish_reason == "length"

    # Two tenants over the two models: the Prometheus counters equal the ledger's totals.
    keys = {tenant: gateway.create_key(tenant) for tenant in ("two-a", "two-b")}
    for tenant, key in keys.items():
        for model in (MODEL, "smollm2-r1"):
            gateway.client(key=key).chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"Hi from {tenant}"}], max_tokens=5
            )
    ledger = httpx.get(
        gateway.base_url + "/admin/usage",
        params={"group_by": "tenant,model"},
        headers={"Authorization": f"Bearer {admin}"},
    ).json()["data"]
    metrics = scrape(gateway)
    for row in (r for r in ledger if r["tenant"] in keys):
        where = {"model": row["model"], "tenant": row["tenant"], "chip": "cpu", "pool": "own"}
        assert (
            metrics[("maas_tokens_total", frozenset({**where, "kind": "prompt"}.items()))]
            == row["prompt_tokens"]
        )
        completion = metrics[("maas_tokens_total", frozenset({**where, "kind": "completion"}.items()))]
        assert completion == row["completion_tokens"]
        revenue = metrics[("maas_revenue_total", frozenset({**where, "currency": "USD"}.items()))]
        assert revenue == pytest.approx(row["cost"], rel=1e-9)
    assert len([r for r in ledger if r["tenant"] in keys]) == 4

    # A long request in flight on the model that is about to be removed.
    outcome: dict[str, Any] = {}
    first_chunk = threading.Event()

    def long_request() -> None:
        try:
            chunks = client.completions.create(
                model="r1", prompt="Count from 1 to 500: 1, 2, 3,", max_tokens=120, temperature=0, stream=True
            )
            texts = []
            for chunk in chunks:
                first_chunk.set()
                texts.append(chunk.choices[0].finish_reason)
            outcome["finish"] = [t for t in texts if t]
        except Exception as exc:  # recorded for the assertion below
            outcome["error"] = exc
            first_chunk.set()

    worker = threading.Thread(target=long_request)
    worker.start()
    assert first_chunk.wait(60)
    assert "removed: smollm2-r1" in apply(gateway, admin, base, tmp_path)
    worker.join(60)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["finish"] == ["length"]

    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="r1", messages=FEW_SHOT)
    assert MODEL in info.value.message
    assert {m.id for m in client.models.list().data} == {MODEL, EMBED_MODEL}
    assert httpx.get(gateway.base_url + "/health").json()["models"] == {
        MODEL: "RUNNING",
        EMBED_MODEL: "RUNNING",
    }
    audit = httpx.get(gateway.base_url + "/admin/audit", headers={"Authorization": f"Bearer {admin}"}).json()
    applied = [e["detail"] for e in audit["data"] if e["action"] == "catalog.applied"]
    assert applied[0]["removed"] == ["smollm2-r1"] and applied[1]["added"] == ["smollm2-r1"]


def test_invalid_catalog_is_refused_and_changes_nothing(gateway: Gateway) -> None:
    admin = gateway.create_key(admin=True)
    response = httpx.post(
        gateway.base_url + "/admin/catalog",
        content=b"models:\n  - name: broken\n",
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert response.status_code == 400 and "models[0].family" in response.json()["error"]["message"]
    refused = httpx.post(
        gateway.base_url + "/admin/catalog",
        content=b"models: []",
        headers={"Authorization": f"Bearer {gateway.key}"},
    )
    assert refused.status_code == 403
    assert [m.id for m in gateway.client().models.list().data] == [MODEL, EMBED_MODEL]
