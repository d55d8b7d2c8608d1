"""Systems under test for the overhead benchmark, each started and stopped as a context manager.

A ``Subject`` is one way to reach the same work: the URL, the headers, which model name to ask for, and
which processes' CPU counts as its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.litellm_proxy import MASTER_KEY, start_litellm
from benchmarks.maas_server import process_roles, start_maas
from benchmarks.procs import VENV_PYTHON, Server, free_port, get_ok, start_server

logger = logging.getLogger(__name__)


@dataclass
class Subject:
    system: str
    description: str
    base_url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)
    cpu_pids: Callable[[], dict[str, list[int]]] = dict
    """Processes whose CPU is this system's, by role (read just before each cell)."""
    metrics: bool = False
    """Whether the system is our gateway, which may expose /metrics and the overhead header."""


@contextlib.contextmanager
def mock_upstream(options: dict[str, Any], log_dir: Path) -> Iterator[Server]:
    """The mock upstream, pacing answers with the fixed-rate engine's ``options``."""
    port = free_port()
    command = [
        str(VENV_PYTHON),
        "-m",
        "benchmarks.mock_upstream",
        "--port",
        str(port),
        "--options",
        json.dumps(options),
    ]
    server = start_server("mock-upstream", command, port=port, log_dir=log_dir)
    try:
        server.wait_ready(get_ok("/health"), timeout_s=30, interval_s=0.2)
        yield server
    finally:
        server.stop(grace_s=5)


@contextlib.contextmanager
def asgi_floor_subject(mock: Server, log_dir: Path) -> Iterator[Subject]:
    """The mock behind a bare ASGI proxy on the gateway's server stack (``benchmarks.asgi_floor``)."""
    port = free_port()
    command = [
        str(VENV_PYTHON),
        "-m",
        "benchmarks.asgi_floor",
        "--port",
        str(port),
        "--upstream",
        f"{mock.base_url}/v1",
    ]
    server = start_server("asgi-floor", command, port=port, log_dir=log_dir)
    try:
        server.wait_ready(get_ok("/health"), timeout_s=60, interval_s=0.2)
        yield Subject(
            system="asgi-floor",
            description="a bare ASGI proxy (uvicorn, uvloop, httptools, the gateway's HTTP client), no "
            "keys, validation or metering, in front of the mock upstream",
            base_url=server.base_url,
            model="bench",
            cpu_pids=lambda: {"proxy": [server.pid], "upstream": [mock.pid]},
        )
    finally:
        server.stop(grace_s=5)


@contextlib.contextmanager
def hop_relay_subject(mock: Server, log_dir: Path) -> Iterator[Subject]:
    """The mock behind a byte-copying TCP relay (``benchmarks.hop_relay``): the floor of one more hop."""
    port = free_port()
    upstream = mock.base_url.rsplit(":", 1)[1]
    command = [
        str(VENV_PYTHON),
        "-m",
        "benchmarks.hop_relay",
        "--port",
        str(port),
        "--upstream-port",
        upstream,
    ]
    server = start_server("hop-relay", command, port=port, log_dir=log_dir)
    try:
        server.wait_ready(get_ok("/health"), timeout_s=30, interval_s=0.2)
        yield Subject(
            system="hop-floor",
            description="a TCP relay that only copies bytes, in front of the mock upstream",
            base_url=server.base_url,
            model="bench",
            cpu_pids=lambda: {"relay": [server.pid], "upstream": [mock.pid]},
        )
    finally:
        server.stop(grace_s=5)


def direct_subject(mock: Server) -> Subject:
    return Subject(
        system="direct",
        description="the mock upstream, no gateway",
        base_url=mock.base_url,
        model="bench",
        cpu_pids=lambda: {"upstream": [mock.pid]},
    )


@contextlib.contextmanager
def maas_subjects(
    catalog: Path, paths: dict[str, str], mock: Server, log_dir: Path
) -> Iterator[list[Subject]]:
    """``maas serve`` on the benchmark catalog; one subject per gateway path (system → model name)."""
    gateway = start_maas(catalog, log_dir=log_dir, models_dir=None, ready_timeout_s=240)
    descriptions = {
        "maas-replica": "our gateway → Ray Serve replica → fixed-rate engine (same pace as the mock)",
        "maas-openai-upstream": "our gateway → openai_upstream backend → the mock upstream",
        "maas-two-pools": "our gateway → placement between two deployments (own, per-token API) → "
        "openai_upstream backend → the mock upstream",
    }

    def pids() -> dict[str, list[int]]:
        return {**process_roles(gateway.server.pid), "upstream": [mock.pid]}

    try:
        yield [
            Subject(
                system=system,
                description=descriptions.get(system, system),
                base_url=gateway.server.base_url,
                model=model,
                headers=gateway.headers,
                cpu_pids=pids,
                metrics=True,
            )
            for system, model in paths.items()
        ]
    finally:
        gateway.server.stop(grace_s=90)


@contextlib.contextmanager
def litellm_subject(mock: Server, log_dir: Path) -> Iterator[Subject]:
    """LiteLLM's proxy with one model routed to the mock."""
    server = start_litellm({"bench": f"{mock.base_url}/v1"}, log_dir=log_dir)

    def pids() -> dict[str, list[int]]:
        import psutil

        proxy = [server.pid, *(c.pid for c in psutil.Process(server.pid).children(recursive=True))]
        return {"litellm": proxy, "upstream": [mock.pid]}

    try:
        yield Subject(
            system="litellm",
            description="LiteLLM proxy (1 worker) → the mock upstream",
            base_url=server.base_url,
            model="bench",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            cpu_pids=pids,
        )
    finally:
        server.stop(grace_s=15)
