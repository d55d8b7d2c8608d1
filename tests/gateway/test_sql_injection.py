"""SQL is built only with parameters: injection strings in every field that reaches SQL, in the ledger (both
stores), the key store and the audit log (both databases) and the admission counters (SQLite, PostgreSQL and
Redis's scripts), are stored and found as plain text, and nothing else is touched."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from gateway.billing.admission import Admission, Counters, Estimate
from gateway.billing.ledger import Ledger, UsageQuery
from gateway.billing.ledger.records import GROUP_COLUMNS
from gateway.tenancy.audit import AuditLog
from gateway.tenancy.database import Database
from gateway.tenancy.keystore import KeyStore, Principal, RateLimits
from tests.gateway.billing.ledger.test_stores import record
from tests.gateway.billing.test_admission import store  # noqa: F401 (the fixture, every counter store)
from tests.gateway.tenancy.conftest import connect  # noqa: F401 (the fixture, both databases)

INJECTIONS = [
    "x'; DROP TABLE usage_records; --",
    'x"); DELETE FROM api_keys; --',
    "' OR '1'='1",
    "x' UNION SELECT secret_hash, 1, 1 FROM api_keys --",
    "\\'; SELECT pg_sleep(5); --",
    "%' --",
]


async def test_injection_strings_in_every_ledger_text_field_are_plain_text(ledger: Ledger) -> None:
    text_fields = [
        f.name
        for f in dataclasses.fields(record("r"))
        if f.type in ("str", "str | None") and f.name != "currency"
    ]
    assert {"tenant", "model", "key_id", "request_id", "idempotency_key", "pool", "chip"} <= set(text_fields)
    await ledger.record(record("plain"))
    for i, attack in enumerate(INJECTIONS):
        fields = {name: f"{attack}{name}" for name in text_fields if name != "request_id"}
        await ledger.record(record(f"{attack}{i}", **fields))
    assert ledger.store.count() == 1 + len(INJECTIONS)
    for attack in INJECTIONS:
        rows = await ledger.query(UsageQuery(group_by=tuple(GROUP_COLUMNS), tenant=f"{attack}tenant"))
        assert len(rows) == 1 and rows[0].requests == 1
        assert rows[0].group["model"] == f"{attack}model"
    [plain] = await ledger.query(UsageQuery(tenant="acme"))
    assert plain.requests == 1


def test_injection_strings_as_tenants_models_and_key_ids_are_plain_text(
    connect: Callable[[], Database],  # noqa: F811
) -> None:
    keys = KeyStore(connect())
    honest = keys.create_key("honest")
    for attack in INJECTIONS:
        keys.set_tenant(attack, limits=RateLimits(rpm=attack.count("'") + 1), budget=None)
        model = attack.replace(",", ";")  # a key's model list is comma-separated: commas are refused
        created = keys.create_key(attack, models=(model,))
        principal = keys.authenticate(created.secret)
        assert principal is not None and principal.tenant == attack and principal.models == (model,)
        assert keys.revoke_key(attack) is False  # no key has that id
        assert keys.authenticate(attack) is None
    with pytest.raises(ValueError, match="commas"):
        keys.create_key("t", models=("a,b",))
    assert keys.authenticate(honest.secret) is not None
    assert keys.revoke_key(honest.key_id) is True
    keys.close()


def test_injection_strings_in_every_audit_field_are_plain_text(connect: Callable[[], Database]) -> None:  # noqa: F811
    log = AuditLog(connect())
    log.record("honest", None, "key.created", "honest", {})
    for attack in INJECTIONS:
        log.record(attack, attack, attack, attack, {attack: attack})
    entries = log.entries(limit=100)
    assert len(entries) == 1 + len(INJECTIONS) and entries[-1].actor == "honest"
    for entry, attack in zip(entries, reversed(INJECTIONS), strict=False):
        assert (entry.actor, entry.actor_key_id, entry.action, entry.target) == (attack,) * 4
        assert entry.detail == {attack: attack}


async def test_injection_strings_in_admission_scopes_count_only_themselves(store: Counters) -> None:  # noqa: F811
    gate = Admission(store, clock=lambda: 1_800_000_000.0)
    honest = Principal(tenant="honest", key_id="k", key_limits=RateLimits(rpm=1))
    await gate.admit(honest, Estimate(1, 0))
    for attack in INJECTIONS:
        caller = Principal(tenant=attack, key_id=attack, key_limits=RateLimits(rpm=1))
        await gate.admit(caller, Estimate(1, 0))  # its own window, not the honest one's
