"""Two gateways on one database (each its own connection and its own key cache): a key created, revoked or
limited through one holds on the other within the cache time; the audit log is one log. On PostgreSQL (the
shared database of several gateways) and on SQLite (several gateway processes on one host)."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.tenancy.audit import AuditLog
from gateway.tenancy.database import Database
from gateway.tenancy.keystore import Budget, KeyStore, RateLimits

Connect = Callable[[], Database]
CACHE_S = 0.3


def wait_until(check: Callable[[], bool], within_s: float) -> float:
    """Seconds until ``check`` held; fails if it did not within ``within_s``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within_s, "the change did not propagate in time"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_key_revoked_through_one_gateway_is_refused_by_the_other_within_the_cache_time(
    connect: Connect,
) -> None:
    one, other = KeyStore(connect(), cache_seconds=CACHE_S), KeyStore(connect(), cache_seconds=CACHE_S)
    created = one.create_key("acme")
    assert other.authenticate(created.secret) is not None  # now cached on the other gateway
    assert one.revoke_key(created.key_id)
    assert one.authenticate(created.secret) is None  # at once where it was revoked
    assert (
        wait_until(lambda: other.authenticate(created.secret) is None, within_s=CACHE_S + 0.5)
        <= CACHE_S + 0.1
    )


def test_a_limit_changed_through_one_gateway_holds_on_the_other_within_the_cache_time(
    connect: Connect,
) -> None:
    one, other = KeyStore(connect(), cache_seconds=CACHE_S), KeyStore(connect(), cache_seconds=CACHE_S)
    created = one.create_key("acme")
    before = other.authenticate(created.secret)
    assert before is not None and before.tenant_limits == RateLimits() and before.budget is None
    budget = Budget(period="day", tokens=1000, nanos=5 * 10**15)
    one.set_tenant("acme", limits=RateLimits(rpm=5, tpm=100), budget=budget)

    def limited() -> bool:
        principal = other.authenticate(created.secret)
        return principal is not None and principal.tenant_limits == RateLimits(rpm=5, tpm=100)

    wait_until(limited, within_s=CACHE_S + 0.5)
    principal = other.authenticate(created.secret)
    assert principal is not None and principal.budget == budget  # money beyond 32 bits survives


def test_a_key_created_through_one_gateway_works_on_the_other_with_its_models_and_limits(
    connect: Connect,
) -> None:
    one, other = KeyStore(connect(), cache_seconds=CACHE_S), KeyStore(connect(), cache_seconds=CACHE_S)
    created = one.create_key("acme", models=("m1", "m2"), limits=RateLimits(rpm=3))
    principal = other.authenticate(created.secret)
    assert principal is not None and principal.models == ("m1", "m2") and principal.key_limits.rpm == 3


def test_both_gateways_write_and_read_one_audit_log(connect: Connect) -> None:
    one, other = AuditLog(connect()), AuditLog(connect())
    one.record("ops", "key_1", "key.revoked", "key_9", {"why": "leaked"})
    other.record("cli:root", None, "tenant.saved", "acme", {})
    entries = other.entries()
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("cli:root", "tenant.saved", "acme"),
        ("ops", "key.revoked", "key_9"),
    ]
    assert entries[1].detail == {"why": "leaked"} and one.entries(limit=1)[0].actor == "cli:root"
