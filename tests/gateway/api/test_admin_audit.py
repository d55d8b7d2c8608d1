"""Operator actions land in the audit log, readable at /admin/audit by operators only, without secrets."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.cli.main import main
from gateway.tenancy.audit import AuditLog
from gateway.tenancy.keystore import KeyStore
from tests.gateway.api.conftest import assert_openai_error


async def test_tenant_and_key_changes_are_audited_with_who_and_what(
    client: httpx.AsyncClient, keystore: KeyStore, auth: dict[str, str]
) -> None:
    operator = keystore.create_key("ops", admin=True)
    admin = {"Authorization": f"Bearer {operator.secret}"}
    await client.post("/admin/tenants", json={"name": "acme", "rpm": 60}, headers=admin)
    created = (await client.post("/admin/keys", json={"tenant": "acme"}, headers=admin)).json()
    await client.delete(f"/admin/keys/{created['id']}", headers=admin)
    refused = await client.post("/admin/keys", json={"tenant": "t" * 500}, headers=admin)
    assert refused.status_code == 400  # nothing changed, nothing audited

    response = await client.get("/admin/audit", headers=admin)
    assert response.status_code == 200
    entries = response.json()["data"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("key.revoked", created["id"]),
        ("key.created", "acme"),
        ("tenant.saved", "acme"),
    ]
    assert {e["actor"] for e in entries} == {"ops"} and {e["actor_key_id"] for e in entries} == {
        operator.key_id
    }
    assert entries[2]["detail"]["rpm"] == 60 and entries[1]["detail"]["key_id"] == created["id"]
    assert created["key"] not in response.text and operator.secret not in response.text
    newest = (await client.get("/admin/audit?limit=1", headers=admin)).json()["data"]
    assert [e["action"] for e in newest] == ["key.revoked"]
    assert_openai_error(await client.get("/admin/audit", headers=auth), 403)
    assert_openai_error(await client.get("/admin/audit?limit=0", headers=admin), 400)


def test_the_local_command_is_audited_as_the_user_who_ran_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAAS_HOME", str(tmp_path))
    assert main(["tenants", "create", "acme", "--rpm", "5"]) == 0
    assert main(["keys", "create", "--tenant", "acme"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    log = AuditLog(tmp_path / "maas.db")
    entries = log.entries()
    log.close()
    assert [e.action for e in entries] == ["key.created", "tenant.saved"]
    assert all(e.actor.startswith("cli:") and e.actor_key_id is None for e in entries)
    assert secret not in repr(entries)
