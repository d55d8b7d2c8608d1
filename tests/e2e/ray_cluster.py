"""Ray nodes started with `ray start` on loopback, as an operator starts them: a head, and workers joining it.

Every port is explicit and free (Redis holds 6379 here), each node runs in a session of its own and is
stopped by its process group, never by `ray stop` (which ends every Ray process on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.serving.ray_head import kill_session
from tests.e2e.conftest import free_port

NODE_PORTS = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)


def start_ray_node(
    env: dict[str, str],
    log: Path,
    *,
    head: str | None = None,
    num_cpus: int = 4,
    resources: dict[str, float] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """`ray start --block`: a head (``head`` None) or a worker joining ``head``; the process and the head's
    GCS address."""
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}",
        f"--resources={json.dumps(resources or {})}",
        "--disable-usage-stats",
        *(f"--{name}={free_port()}" for name in NODE_PORTS),
    ]
    if head is None:
        port = free_port()
        address = f"127.0.0.1:{port}"
        command += ["--head", f"--port={port}", f"--ray-client-server-port={free_port()}"]
        command += ["--include-dashboard=false"]
    else:
        address = head
        command += [f"--address={head}"]
    with log.open("wb") as out:
        node = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if node.poll() is not None or time.monotonic() > deadline:
            os.killpg(node.pid, signal.SIGKILL)
            pytest.fail(f"ray start failed:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)
    return node, address


def kill_ray_node(node: subprocess.Popen[bytes]) -> None:
    """The node dies at once, as a machine that loses power: its raylet and every worker on it (Ray's
    workers leave the node's process group but stay in its session)."""
    kill_session(node.pid)
    node.wait(timeout=10)


def stop_ray_node(node: subprocess.Popen[bytes]) -> None:
    """Stop a node: ask `ray start --block` first, then kill whatever is left in its session.

    A worker stops within about a second; a head's graceful stop takes over 30 s on 2 cores (measured), which
    a test's teardown has no need to wait for once every gateway on it has stopped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        node.wait(timeout=5)
    kill_session(node.pid)
    node.wait(timeout=10)
