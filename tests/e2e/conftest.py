"""The real gateway: ``maas serve`` with Ray Serve, vLLM on the CPU and the real SmolLM2 model.

One server per test session (engine start is the slow part). Its teardown proves that SIGTERM stops it
and leaves no Ray or engine process behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import yaml

from tests.conftest import REPO
from tests.e2e.vllm_upstream import Upstream, running_upstream

START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 90
MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"
"""The default catalog's embedding model (task: embed), served beside the chat model."""


@dataclass
class Gateway:
    base_url: str
    key: str
    process: subprocess.Popen[bytes]
    log: Path
    models_dir: Path
    env: dict[str, str]
    secrets: list[str] = field(default_factory=list)
    """Every key this gateway was given by the tests (none may show up in a log)."""

    def __post_init__(self) -> None:
        self.secrets.append(self.key)

    def create_key(self, tenant: str | None = None, admin: bool = False) -> str:
        """A new key from `maas keys create` against the running gateway's database."""
        secret = create_key(self.env, tenant, admin)
        self.secrets.append(secret)
        return secret

    def client(self, key: str | None = None, **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=key or self.key, max_retries=0, **kwargs)  # type: ignore[arg-type]

    def usage_rows(self, key: str, query: str = "") -> list[dict[str, Any]]:
        """``key``'s rows of ``GET /v1/usage`` (the ledger, as the key's tenant reads it)."""
        response = httpx.get(f"{self.base_url}/v1/usage{query}", headers={"Authorization": f"Bearer {key}"})
        response.raise_for_status()
        return list(response.json()["data"])

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_healthy(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base_url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError(f"gateway not healthy after {timeout_s}s\n{self.log_tail()}")


def settles(condition: Callable[[], bool], timeout_s: float = 60) -> bool:
    """Whether ``condition`` holds within ``timeout_s`` (polled every half second)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def maas_env(home: Path, models_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MAAS_HOME=str(home), MAAS_MODELS_DIR=str(models_dir), PYTHONUNBUFFERED="1")
    return env


def create_key(env: dict[str, str], tenant: str | None, admin: bool = False) -> str:
    command = [sys.executable, "-m", "gateway.cli", "keys", "create"]
    command += ["--tenant", tenant] if tenant else []
    command += ["--admin"] if admin else []
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    return out.strip().splitlines()[-1]


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and everything it started, including the Ray head's session."""
    root = psutil.Process(pid)
    found = {p.pid: p for p in root.children(recursive=True)}
    sessions = {os.getsid(p.pid) for p in found.values() if p.is_running()}
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) in sessions:
                found[proc.pid] = proc
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return list(found.values())


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    result = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                result.append(proc)
        except psutil.NoSuchProcess:
            continue
    return result


def start_gateway(
    env: dict[str, str], key: str, config: Path | None = None, args: Sequence[str] = ()
) -> Gateway:
    """Run `maas serve` with ``env`` (its MAAS_HOME holds the log) and wait until it is healthy.

    ``config`` is the catalog to serve (default: the repository's models.yaml); ``args`` go to `maas serve`.
    """
    home = Path(env["MAAS_HOME"])
    port = free_port()
    log = home / f"serve-{port}.log"
    command = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    command += ["--config", str(config)] if config is not None else []
    command += list(args)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    gw = Gateway(f"http://127.0.0.1:{port}", key, process, log, Path(env["MAAS_MODELS_DIR"]), env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while "Serving OpenAI-compatible API" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"maas serve did not start (exit {process.poll()}):\n{gw.log_tail()}")
        time.sleep(1)
    gw.wait_healthy()
    return gw


def stop_gateway(gw: Gateway) -> None:
    """SIGTERM, then prove that nothing the gateway started is left."""
    process = gw.process
    tree = process_tree(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    time.sleep(1)
    leftovers = alive(tree if code is not None else [*tree, psutil.Process(process.pid)])
    names = [f"{p.pid}:{p.name()}" for p in leftovers]
    for proc in leftovers:
        proc.kill()
    assert code == 0, f"maas serve did not stop cleanly (exit {code}):\n{gw.log_tail()}"
    assert not leftovers, f"processes left behind after SIGTERM: {names}"


def chat_only_catalog(env: dict[str, str]) -> Path:
    """The repository's models.yaml without its embedding and rerank models, in ``env``'s home: for the
    tests of one gateway's faults, which need a model that generates and not the time to start the rest."""
    catalog = yaml.safe_load((REPO / "models.yaml").read_text())
    catalog["models"] = [m for m in catalog["models"] if m.get("task", "chat") == "chat"]
    path = Path(env["MAAS_HOME"]) / "chat-only.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return path


def gateway_env(tmp_path_factory: pytest.TempPathFactory, name: str, **extra: str) -> dict[str, str]:
    home = tmp_path_factory.mktemp(name)
    models_dir = REPO / ".cache" / "models"  # the one-time model conversion is reused across runs
    env = maas_env(home, models_dir)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def vllm_upstream(smollm2_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """A real vLLM OpenAI server on loopback, shared by the modules that call one (``vllm_upstream``)."""
    with running_upstream(smollm2_weights, tmp_path_factory.mktemp("vllm-upstream"), free_port()) as server:
        yield server


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    env = gateway_env(tmp_path_factory, "maas-home")
    gw = start_gateway(env, create_key(env, "e2e"))
    try:
        yield gw
    finally:
        stop_gateway(gw)


@pytest.fixture(scope="session")
def tokenizer(gateway: Gateway, smollm2_weights: Path) -> object:
    """The served model's own tokenizer, from the folder the gateway serves it from."""
    from transformers import AutoTokenizer

    assert smollm2_weights.parent == gateway.models_dir  # the same prepared folder
    return AutoTokenizer.from_pretrained(smollm2_weights)
