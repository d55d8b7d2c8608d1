"""Gateway fixtures: a real SQLite ledger and meters for requests to a catalog-priced model."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from backends.base import GenerationChunk, GenerationRequest
from gateway.billing.admission import Admission, CounterStore
from gateway.billing.ledger import Ledger
from gateway.billing.ledger.sqlite_store import SqliteStore
from gateway.billing.metering import Meter
from gateway.catalog.routing import Route, RoutedModel
from gateway.catalog.schema import Pricing
from gateway.observability.metrics import GatewayMetrics
from gateway.tenancy.keystore import Principal


class NoClient:
    """Stands where a model client would; the tests that use it never generate."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        raise AssertionError("not used")


def routed_model(name: str = "m", input_per_million: str = "1", output_per_million: str = "2") -> RoutedModel:
    return RoutedModel(
        name=name,
        family="llama",
        owned_by="test",
        context_length=2048,
        created=0,
        aliases=(),
        routes=(Route(name=name, client=NoClient(), chip="cpu", pool="own"),),
        pricing=Pricing(
            input_per_million=Decimal(input_per_million), output_per_million=Decimal(output_per_million)
        ),
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(SqliteStore(tmp_path / "ledger.db"))
    yield ledger
    ledger.close()


@pytest.fixture
def admission(tmp_path: Path) -> Iterator[Admission]:
    admission = Admission(CounterStore.sqlite(str(tmp_path / "counters.db")))
    yield admission
    admission.store.close()


@pytest.fixture
def make_meter(ledger: Ledger) -> Callable[..., Meter]:
    metrics = GatewayMetrics()

    def make(request_id: str = "req-1", tenant: str = "acme", idempotency_key: str | None = None) -> Meter:
        return Meter(
            ledger=ledger,
            metrics=metrics,
            request_id=request_id,
            idempotency_key=idempotency_key,
            principal=Principal(tenant=tenant, key_id="key_1"),
            model=routed_model(),
            endpoint="chat.completions",
            stream=True,
            started=time.perf_counter(),
        )

    return make
