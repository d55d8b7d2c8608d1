"""Prometheus metrics of the gateway, on a registry of its own (no global state).

Labels are bounded: model names come from the catalog, tenants from the operator's own tenant list; no
request ids or key values are ever labels.

Under `maas serve --workers N` every gateway process of the host writes its values to files in one folder
(prometheus_client's multiprocess mode, chosen by ``PROMETHEUS_MULTIPROC_DIR`` before the library is
imported: ``gateway.cli.serve`` sees to it), and whichever process answers a scrape reports the sum of all:
counters and histograms add up, gauges of requests in flight add up over the live processes, and gauges
of replicas (the same in every process) report their largest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.billing.ledger.records import UsageRecord
from gateway.observability.cached_labels import Counter, Gauge, Histogram

OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


COUNT_EVERY = 256
"""Settled records kept at most before they are counted, when no scrape has read the metrics meanwhile."""


class HasName(Protocol):
    @property
    def name(self) -> str: ...


class UpdatedRegistry(CollectorRegistry):
    """A registry that brings values kept outside it up to date (``before_collect``) whenever it is read:
    a scrape, the dashboard, a test."""

    def __init__(self) -> None:
        super().__init__(auto_describe=True)
        self._updates: list[Callable[[], None]] = []

    def before_collect(self, update: Callable[[], None]) -> None:
        self._updates.append(update)

    def collect(self) -> Iterable[Metric]:
        for update in self._updates:
            update()
        yield from super().collect()


class GatewayMetrics:
    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        """``multiprocess_dir``: the folder every gateway process of the host writes to (``--workers``);
        prometheus_client must have been imported with ``PROMETHEUS_MULTIPROC_DIR`` naming it."""
        self._multiprocess_dir = multiprocess_dir
        self.update_at_collect = multiprocess_dir is None
        """Whether what every request changes (its counts, tokens and revenue, the requests queued and in
        flight, busy time) may be kept in plain records and counts, and written to the metrics when the
        registry is read: a metric's update is half a dozen Python calls, a dozen a request, most on the
        request's own path. Under ``--workers`` another process reads this one's values from its files,
        so they are written as they change."""
        self.registry = UpdatedRegistry()
        self._settled: list[UsageRecord] = []  # observed, not counted yet (``update_at_collect``)
        if self.update_at_collect:
            self.registry.before_collect(self._count_settled)
        r = self.registry
        self.overhead = Histogram(
            "maas_gateway_overhead_seconds",
            "Time spent in the gateway itself, excluding waiting for the model replica.",
            ["endpoint"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "maas_requests_total",
            "Generation requests by outcome (status, and the error type when it failed).",
            ["model", "tenant", "chip", "pool", "status", "error_type"],
            registry=r,
        )
        self.tokens = Counter(
            "maas_tokens_total",
            "Tokens metered, by kind (prompt or completion).",
            ["model", "tenant", "chip", "pool", "kind"],
            registry=r,
        )
        self.revenue = Counter(
            "maas_revenue_total",
            "What tenants are charged (price × tokens), in the model's currency.",
            ["model", "tenant", "chip", "pool", "currency"],
            registry=r,
        )
        self.latency = Histogram(
            "maas_request_duration_seconds",
            "Request duration, first byte in to last byte out.",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "maas_time_to_first_token_seconds",
            "Time to the first generated token.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        self.tpot = Histogram(
            "maas_time_per_output_token_seconds",
            "Time per output token after the first, for streamed requests.",
            ["model"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28),
            registry=r,
        )
        deployment = ["model", "deployment", "chip", "pool"]
        self.infra_cost = Counter(
            "maas_infra_cost_total",
            "What serving costs the operator, in the pool's currency: chip-hour cost x replica time, or a "
            "rented API's price x the tokens it served.",
            [*deployment, "currency"],
            registry=r,
        )
        self.replica_seconds = Counter(
            "maas_replica_seconds_total", "Replica time, busy or idle.", deployment, registry=r
        )
        self.busy_seconds = Counter(
            "maas_replica_busy_seconds_total",
            "Replica time spent holding at least one request.",
            deployment,
            registry=r,
        )
        self.replicas = Gauge(
            "maas_replicas",
            "Replicas the catalog asks for.",
            deployment,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.replicas_healthy = Gauge(
            "maas_replicas_healthy",
            "Replicas that are running.",
            deployment,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.in_flight = Gauge(
            "maas_requests_in_flight",
            "Requests being served now, per deployment.",
            deployment,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queued = Gauge(
            "maas_requests_queued",
            "Requests sent to a replica that have no first token yet.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )

        self.pool_info = Gauge(
            "maas_pool_info",
            "1 per capacity pool, with its kind (owned, managed).",
            ["pool", "kind"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.spills = Counter(
            "maas_placement_spills_total",
            "Placement changes of a model with several deployments: spill (the chosen deployment is "
            "rented while the model has an owned one) or drain_back (back to owned capacity).",
            ["model", "event"],
            registry=r,
        )

    def spilled(self, model: HasName, spilling: bool) -> None:
        """A model's placement started (``spilling``) or stopped sending requests to rented capacity."""
        self.spills.labels(model.name, "spill" if spilling else "drain_back").inc()

    def observe(self, record: UsageRecord) -> None:
        """Count one settled request; the same record goes to the ledger, so both agree."""
        if not self.update_at_collect:
            self._count([record])
            return
        self._settled.append(record)
        if len(self._settled) >= COUNT_EVERY:
            self._count_settled()

    def _count_settled(self) -> None:
        settled, self._settled = self._settled, []
        self._count(settled)

    def _count(self, records: list[UsageRecord]) -> None:
        """Add ``records`` to the metrics: counters once per label set, with the records' sum."""
        sums: dict[tuple[Counter, tuple[str, ...]], int] = {}
        revenue: dict[tuple[str, ...], int] = {}  # in nanos, summed exactly
        for record in records:
            base = (record.model, record.tenant, record.chip, record.pool)
            outcome: tuple[str, ...] = (*base, record.status, record.error_type or "")
            counted: tuple[Counter, tuple[str, ...]] = (self.requests, outcome)
            sums[counted] = sums.get(counted, 0) + 1
            counted = (self.tokens, (*base, "prompt"))
            sums[counted] = sums.get(counted, 0) + record.prompt_tokens
            counted = (self.tokens, (*base, "completion"))
            sums[counted] = sums.get(counted, 0) + record.completion_tokens
            charged: tuple[str, ...] = (*base, record.currency)
            revenue[charged] = revenue.get(charged, 0) + record.charge_nanos
            self.latency.labels(record.model, record.endpoint).observe(record.duration_s)
            if record.ttft_s is not None:
                self.ttft.labels(record.model).observe(record.ttft_s)
                if record.completion_tokens > 1:
                    per_token = (record.duration_s - record.ttft_s) / (record.completion_tokens - 1)
                    self.tpot.labels(record.model).observe(per_token)
        for (counter, labels), amount in sums.items():
            counter.labels(*labels).inc(amount)
        for charged, nanos in revenue.items():
            self.revenue.labels(*charged).inc(nanos / 1e9)

    def collected(self) -> CollectorRegistry:
        """What a scrape reports: this process's registry, or every process's values under ``--workers``."""
        if self._multiprocess_dir is None:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(self._multiprocess_dir))  # type: ignore[no-untyped-call]
        return registry

    def exposition(self) -> bytes:
        return generate_latest(self.collected())
