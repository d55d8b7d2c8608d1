"""`maas usage` prints the same rows as the usage API, as a table or CSV."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from gateway.billing.ledger import open_ledger
from gateway.cli.main import main
from tests.gateway.billing.ledger.test_stores import record


def test_usage_command_groups_and_exports_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAAS_HOME", str(tmp_path))
    monkeypatch.delenv("MAAS_DATABASE_URL", raising=False)
    ledger = open_ledger(None, str(tmp_path / "maas.db"))
    asyncio.run(ledger.record(record("r1", tenant="acme")))
    asyncio.run(ledger.record(record("r2", tenant="globex")))
    ledger.close()

    assert main(["usage", "--group-by", "tenant", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["tenant"], r["requests"], r["prompt_tokens"]) for r in rows] == [
        ("acme", "1", "10"),
        ("globex", "1", "10"),
    ]
    assert main(["usage", "--group-by", "bogus"]) == 2
