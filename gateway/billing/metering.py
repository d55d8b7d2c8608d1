"""Settling a request: one usage record, priced, counted in the metrics and made durable in the ledger.

Records never contain prompts, completions or key secrets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from backends.base import GenerationChunk, Usage
from gateway.billing.admission import Admission, Reservation
from gateway.billing.ledger import Ledger, UsageRecord
from gateway.billing.ledger.records import charge_nanos
from gateway.catalog.routing import Route, RoutedModel
from gateway.errors import LedgerUnavailable
from gateway.tenancy.keystore import Principal

logger = logging.getLogger("maas.usage")

USAGE_LINE = (
    "usage request_id=%s tenant=%s key_id=%s model=%s status=%s prompt_tokens=%d completion_tokens=%d "
    "estimated=%s duration_s=%.3f"
)
"""Every settled request's log line (``usage_args`` fills it): never a prompt, a completion or a secret."""


def usage_args(record: UsageRecord) -> tuple[object, ...]:
    return (
        record.request_id,
        record.tenant,
        record.key_id,
        record.model,
        record.status,
        record.prompt_tokens,
        record.completion_tokens,
        record.usage_estimated,
        record.duration_s,
    )


def log_usage(record: UsageRecord) -> None:
    """Log a settled record's usage line through ``logging`` (``maas serve`` has its log writer's thread
    make the record instead: ``gateway.cli.logs.BatchWriter.line``)."""
    logger.info(USAGE_LINE, *usage_args(record))


class UsageObserver(Protocol):
    """Counts every settled record (the gateway's Prometheus metrics)."""

    def observe(self, record: UsageRecord) -> None: ...


class BusyTracker(Protocol):
    """Knows how many requests each deployment has in flight (replica utilisation and its cost), and what
    each served (a rented API costs per token)."""

    def started(self, deployment: str) -> None: ...

    def finished(self, deployment: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None: ...


@dataclass
class Progress:
    """What the gateway has seen of one generation so far."""

    usage: Usage | None = None
    finish_reason: str | None = None
    first_token_at: float | None = None

    def observe(self, chunk: GenerationChunk) -> None:
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if self.first_token_at is None and choice.text:
                self.first_token_at = time.perf_counter()
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason


@dataclass
class Meter:
    """Settles exactly one usage record for one request attempt."""

    ledger: Ledger
    metrics: UsageObserver
    request_id: str
    idempotency_key: str | None
    principal: Principal
    model: RoutedModel
    endpoint: str
    stream: bool
    started: float
    admission: Admission | None = None
    reservation: Reservation | None = None
    utilization: BusyTracker | None = None
    alone: Callable[[], bool] | None = None
    """Whether this is the only request in flight: its record may then be committed on the event loop
    (``Ledger.submit``)."""
    log: Callable[[UsageRecord], None] = log_usage
    """Writes the settled record's usage line."""
    settled: bool = field(default=False, init=False)
    route: Route | None = field(default=None, init=False)
    """The deployment that answered (or failed last); None: the call was refused before placement."""
    attempts: int = field(default=1, init=False)
    _unaccounted: UsageRecord | None = field(default=None, init=False, repr=False)

    def placed(self, route: Route, attempts: int) -> None:
        """The call went to ``route`` after ``attempts`` deployments were asked (that one included)."""
        self.route, self.attempts = route, attempts
        if self.utilization is not None and not self.settled:
            self.utilization.started(route.name)

    def _record(self, progress: Progress, status: str, error_type: str | None) -> UsageRecord:
        usage = progress.usage or Usage(0, 0)
        pricing = self.model.pricing
        route = self.route or self.model.routes[0]  # refused before placement: the model's first
        ttft = None if progress.first_token_at is None else progress.first_token_at - self.started
        return UsageRecord(
            request_id=self.request_id,
            idempotency_key=self.idempotency_key,
            tenant=self.principal.tenant,
            key_id=self.principal.key_id,
            model=self.model.name,
            deployment=route.name,
            chip=route.chip,
            pool=route.pool,
            endpoint=self.endpoint,
            stream=self.stream,
            status=status,
            error_type=error_type,
            finish_reason=progress.finish_reason,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            ttft_s=ttft,
            duration_s=time.perf_counter() - self.started,
            currency=pricing.currency,
            price_input_per_million=str(pricing.input_per_million),
            price_output_per_million=str(pricing.output_per_million),
            charge_nanos=charge_nanos(
                usage.prompt_tokens,
                usage.completion_tokens,
                pricing.input_per_million,
                pricing.output_per_million,
            ),
            created_at=time.time(),
            usage_estimated=usage.estimated,
            attempts=self.attempts,
        )

    def _hand_over(
        self,
        progress: Progress,
        status: str,
        error_type: str | None,
        account: bool = True,
        waited_for: bool = False,
    ) -> tuple[UsageRecord, Future[None]] | None:
        """The outcome's record, handed to the ledger's writer first (it commits, and waits on the disk,
        while the rest runs), then counted in metrics and logged (``account``; else by ``account()``
        later); None when already settled. ``waited_for``: the caller waits for the record to be durable
        (a request alone then commits it itself)."""
        if self.settled:
            return None
        self.settled = True
        record = self._record(progress, status, error_type)
        done = self.ledger.submit(record, alone=waited_for and self.alone is not None and self.alone())
        self._unaccounted = record
        if account:
            self.account()
        return record, done

    def account(self) -> None:
        """Count the settled record in the utilisation meter and the metrics, and log it (once)."""
        record, self._unaccounted = self._unaccounted, None
        if record is None:
            return
        if self.utilization is not None and self.route is not None:
            self.utilization.finished(self.route.name, record.prompt_tokens, record.completion_tokens)
        self.metrics.observe(record)
        self.log(record)

    def settling(
        self, progress: Progress, status: str, error_type: str | None = None, *, account_later: bool = False
    ) -> Coroutine[Any, Any, None]:
        """Hand the outcome's record to the ledger now, and return what waits until it is durable: the
        caller builds its response meanwhile, and sends it only after awaiting this.

        ``account_later``: the caller calls ``account()`` once the response is out. At one request at a
        time the ledger's writer thread then starts its commit at once, instead of waiting for the event
        loop to finish this bookkeeping (the two share the interpreter's lock), and the answer leaves
        about a tenth of a millisecond sooner."""
        handed = self._hand_over(progress, status, error_type, account=not account_later, waited_for=True)
        return self._durable(handed)

    async def settle(self, progress: Progress, status: str, error_type: str | None = None) -> None:
        """Record the outcome and wait until the record is durable."""
        await self.settling(progress, status, error_type)

    async def _durable(self, handed: tuple[UsageRecord, Future[None]] | None) -> None:
        if handed is None:
            return
        record, done = handed
        try:
            if not done.done():  # committed on this thread already when the request was alone
                await asyncio.wrap_future(done)
            done.result()
        except Exception as exc:  # not even the local spool took it: the answer must not go out
            logger.error(
                "usage record not written request_id=%s error=%s", record.request_id, type(exc).__name__
            )
            raise LedgerUnavailable("This request could not be billed, so it was not served; retry.") from exc
        if self.admission is not None:
            await self.admission.settle(self.reservation, _tokens(record), record.charge_nanos)

    def settle_nowait(self, progress: Progress, status: str, error_type: str | None = None) -> None:
        """Record the outcome without waiting (the client is gone; the writer thread still commits it)."""
        handed = self._hand_over(progress, status, error_type)
        if handed is not None and self.admission is not None:
            record = handed[0]
            self.admission.settle_soon(self.reservation, _tokens(record), record.charge_nanos)


def _tokens(record: UsageRecord) -> int:
    return record.prompt_tokens + record.completion_tokens
