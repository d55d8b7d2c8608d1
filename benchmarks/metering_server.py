"""The gateway's HTTP app in front of an instant model, with metering on or off (benchmark only).

    python -m benchmarks.metering_server --port P --home DIR --metering on|off

The model answers at once (a fixed 16-token answer with usage), so the measured difference is the cost of
metering itself: building the usage record, the group-commit ledger write that each response waits for,
and the Prometheus counters. "off" swaps the ledger's store for one that writes nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path

import uvicorn

from backends.base import ChoiceDelta, GenerationChunk, GenerationRequest, Usage
from gateway.app import build_app
from gateway.billing.admission import Admission, CounterStore
from gateway.billing.ledger import Ledger, UsageQuery, UsageRecord, UsageRow
from gateway.billing.ledger.sqlite_store import SqliteStore
from gateway.catalog.routing import ModelRouter, RoutedModel
from gateway.catalog.schema import Pricing
from gateway.observability.metrics import GatewayMetrics
from gateway.tenancy.keystore import KeyStore

TOKENS = 16


class InstantModel:
    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if request.whole:
            yield GenerationChunk([ChoiceDelta(0, "tok " * TOKENS, "stop")], Usage(12, TOKENS))
            return
        for i in range(TOKENS):
            done = i == TOKENS - 1
            yield GenerationChunk([ChoiceDelta(0, "tok ", "stop" if done else None)], Usage(12, i + 1))


class NullStore:
    """Metering off: records go nowhere."""

    def write_batch(self, records: Sequence[UsageRecord]) -> None:
        return None

    def query(self, query: UsageQuery) -> list[UsageRow]:
        return []

    def count(self) -> int:
        return 0

    def close(self) -> None:
        return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--metering", choices=["on", "off"], required=True)
    args = parser.parse_args()
    args.home.mkdir(parents=True, exist_ok=True)
    keystore = KeyStore(args.home / "maas.db")
    key = keystore.create_key("bench").secret
    (args.home / "key").write_text(key)
    ledger = Ledger(SqliteStore(args.home / "maas.db") if args.metering == "on" else NullStore())
    model = RoutedModel(
        name="instant",
        family="other",
        owned_by="bench",
        context_length=4096,
        created=0,
        aliases=(),
        client=InstantModel(),
        pricing=Pricing(input_per_million=Decimal("0.1"), output_per_million=Decimal("0.2")),
        deployment="model-instant",
        chip="cpu",
        pool="own",
    )
    admission = Admission(CounterStore.sqlite(str(args.home / "maas.db")))
    app = build_app(ModelRouter([model]), keystore, ledger, GatewayMetrics(), admission, lambda: {})
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
