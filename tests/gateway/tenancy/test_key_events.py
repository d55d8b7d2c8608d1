"""LISTEN/NOTIFY on the real PostgreSQL: a gateway that listens drops its cached key lookups as soon as
another gateway revokes a key or changes a limit, long before its cache's TTL, and again after its
listening connection was cut (for whatever it missed meanwhile)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from gateway.tenancy.database import PostgresDatabase
from gateway.tenancy.keystore import KeyStore, RateLimits

LONG_TTL_S = 60.0  # far longer than any wait below: only a notification can explain a change seen


def within(seconds: float, check: Callable[[], bool]) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "not seen in time"
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def two_gateways(postgres_url: str) -> Iterator[tuple[KeyStore, KeyStore]]:
    writer = KeyStore(PostgresDatabase(postgres_url), cache_seconds=LONG_TTL_S)
    listener = KeyStore(PostgresDatabase(postgres_url), cache_seconds=LONG_TTL_S, listen=True)
    assert listener._listener is not None and listener._listener.listening.wait(5)
    yield writer, listener
    listener.close()
    writer.close()


def test_a_revocation_reaches_a_listening_gateway_at_once(two_gateways: tuple[KeyStore, KeyStore]) -> None:
    writer, listener = two_gateways
    created = writer.create_key("acme")
    assert listener.authenticate(created.secret) is not None  # cached for a minute
    assert writer.revoke_key(created.key_id)
    assert within(2.0, lambda: listener.authenticate(created.secret) is None) < 1.0


def test_a_limit_change_reaches_a_listening_gateway_at_once(two_gateways: tuple[KeyStore, KeyStore]) -> None:
    writer, listener = two_gateways
    created = writer.create_key("acme")
    assert listener.authenticate(created.secret) is not None
    writer.set_tenant("acme", limits=RateLimits(rpm=7))

    def limited() -> bool:
        principal = listener.authenticate(created.secret)
        return principal is not None and principal.tenant_limits.rpm == 7

    assert within(2.0, limited) < 1.0


def test_a_listener_whose_connection_was_cut_reconnects_and_drops_what_it_may_have_missed(
    two_gateways: tuple[KeyStore, KeyStore], postgres_url: str
) -> None:
    writer, listener = two_gateways
    created = writer.create_key("acme")
    assert listener.authenticate(created.secret) is not None
    assert listener._listener is not None
    pid = listener._listener.backend_pid
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    writer.database.execute("UPDATE api_keys SET revoked_at = 1 WHERE id = ?", (created.key_id,))  # no notify
    assert within(5.0, lambda: listener.authenticate(created.secret) is None) < 3.0
    assert listener._listener.listening.wait(5) and listener._listener.backend_pid != pid
