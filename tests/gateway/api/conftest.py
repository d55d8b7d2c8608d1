"""API fixtures: the real app in-process (no model) with a real key store and ledger, and an error check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import build_app
from gateway.billing.admission import Admission
from gateway.billing.ledger import Ledger
from gateway.billing.ledger.sqlite_store import SqliteStore
from gateway.catalog.routing import ModelRouter
from gateway.observability.metrics import GatewayMetrics
from gateway.tenancy.keystore import KeyStore


@pytest.fixture
def keystore(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "maas.db")


@pytest.fixture
async def client(
    keystore: KeyStore, tmp_path: Path, admission: Admission
) -> AsyncIterator[httpx.AsyncClient]:
    ledger = Ledger(SqliteStore(tmp_path / "ledger.db"))
    app = build_app(ModelRouter(), keystore, ledger, GatewayMetrics(), admission, lambda: {"m": "RUNNING"})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client
    ledger.close()


@pytest.fixture
def auth(keystore: KeyStore) -> dict[str, str]:
    return {"Authorization": f"Bearer {keystore.create_key('acme').secret}"}


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["code"] is None or isinstance(error["code"], str)
    if code is not None:
        assert error["code"] == code
    return dict(error)
