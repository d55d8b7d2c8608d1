from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.tenancy.keystore import KEY_PREFIX, KeyStore


def test_created_key_authenticates_its_tenant(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "maas.db")
    created = store.create_key("acme")
    principal = store.authenticate(created.secret)
    assert principal is not None
    assert (principal.tenant, principal.key_id) == ("acme", created.key_id)
    assert created.secret.startswith(KEY_PREFIX)


def test_unknown_and_tampered_keys_are_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "maas.db")
    created = store.create_key("acme")
    assert store.authenticate(created.secret[:-1] + "x") is None
    assert store.authenticate("' OR 1=1 --") is None
    assert store.authenticate("") is None


def test_only_a_hash_of_the_key_is_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "maas.db")
    created = store.create_key("acme")
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("maas.db*"))
    assert created.secret.encode() not in raw
    rows = sqlite3.connect(tmp_path / "maas.db").execute("SELECT key_hash FROM api_keys").fetchall()
    assert len(rows) == 1 and len(rows[0][0]) == 64


def test_injection_string_as_tenant_name_is_stored_literally(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "maas.db")
    evil = "x'); DROP TABLE api_keys; --"
    created = store.create_key(evil)
    principal = store.authenticate(created.secret)
    assert principal is not None and principal.tenant == evil


def test_empty_tenant_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tenant name"):
        KeyStore(tmp_path / "maas.db").create_key("")


def test_keys_create_command_prints_the_key_as_last_line(tmp_path: Path) -> None:
    env = {"MAAS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "keys", "create", "--tenant", "acme"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    key = out.strip().splitlines()[-1]
    principal = KeyStore(tmp_path / "maas.db").authenticate(key)
    assert principal is not None and principal.tenant == "acme"


async def test_concurrent_lookups_of_one_uncached_key_share_one_database_query(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "maas.db", cache_seconds=0)  # every call misses the cache
    secret = store.create_key("acme").secret
    queries = 0
    lookup = store.authenticate

    def counted(key: str) -> object:
        nonlocal queries
        queries += 1
        return lookup(key)

    store.authenticate = counted  # type: ignore[method-assign,assignment]
    principals = await asyncio.gather(*(store.authenticate_async(secret) for _ in range(50)))
    assert queries == 1
    assert {p.tenant for p in principals if p is not None} == {"acme"} and None not in principals
    assert await store.authenticate_async(secret) is not None and queries == 2  # the next miss asks again
    assert await store.authenticate_async("sk-maas-wrong") is None
