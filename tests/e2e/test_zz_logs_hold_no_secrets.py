"""After the suite has used the gateway, no log of the run holds an API key or a prompt: the gateway's own
log, and every log of the Ray session behind it (replicas, engines, controller, raylet)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import MODEL, Gateway

pytestmark = pytest.mark.e2e


def logs_of_the_run(gateway: Gateway) -> list[Path]:
    files = list(Path(gateway.env["MAAS_HOME"]).rglob("*.log"))
    for session in Path("/tmp/ray").glob("session_*"):
        if session.is_dir() and not session.is_symlink():
            files += [p for p in (session / "logs").rglob("*") if p.is_file()]
    return files


def test_no_log_holds_a_key_or_a_prompt(gateway: Gateway) -> None:
    canary = f"canary-prompt-{uuid.uuid4().hex}"
    admin = gateway.create_key(admin=True)
    answer = gateway.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": canary}], max_tokens=2
    )
    assert answer.usage is not None
    wrong = f"sk-maas-{uuid.uuid4().hex}"
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key=wrong).models.list()
    httpx.get(
        gateway.base_url + "/admin/usage", headers={"Authorization": f"Bearer {admin}"}
    ).raise_for_status()
    secrets = [s.encode() for s in [*gateway.secrets, wrong]]
    files = logs_of_the_run(gateway)
    assert gateway.log in files and len(files) > 5
    leaks = [
        (str(path), needle.decode()[:12])
        for path in files
        for needle in (*secrets, canary.encode())
        if needle in path.read_bytes()
    ]
    assert not leaks, leaks
