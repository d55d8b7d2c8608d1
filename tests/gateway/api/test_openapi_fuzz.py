"""schemathesis against the app's own /openapi.json: every route, with bodies generated from the published
request schemas and mutated past them, answers with an OpenAI error or a success, never a 5xx.

Bounded: a fixed number of examples per operation, no deadline per example. The routes that need a model
runtime (catalog, chips, pools) are left out: this app has none, so they answer 503 by design."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from gateway.app import build_app
from gateway.billing.admission import Admission, CounterStore
from gateway.billing.ledger import Ledger
from gateway.billing.ledger.sqlite_store import SqliteStore
from gateway.catalog.routing import ModelRouter
from gateway.observability.metrics import GatewayMetrics
from gateway.tenancy.keystore import KeyStore

EXAMPLES = 25

_home = Path(tempfile.mkdtemp(prefix="maas-fuzz-"))
_keys = KeyStore(_home / "maas.db")
OPERATOR = {"Authorization": f"Bearer {_keys.create_key('ops', admin=True).secret}"}
APP = build_app(
    ModelRouter(),
    _keys,
    Ledger(SqliteStore(_home / "ledger.db")),
    GatewayMetrics(),
    Admission(CounterStore.sqlite(str(_home / "counters.db"))),
    lambda: {"m": "RUNNING"},
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(
    path_regex=r"^/admin/(catalog|chips|pools)"
)


def test_the_published_schema_describes_the_request_bodies() -> None:
    document = APP.openapi()
    body = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")
    properties = document["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert {"model", "messages", "seed", "max_tokens", "stream"} <= set(properties)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_generated_request_is_a_server_error(case: schemathesis.Case) -> None:
    response = case.call(headers=OPERATOR)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
