"""``maas serve`` as a benchmark subject: a fresh MAAS_HOME, an API key, a catalog, stopped by SIGTERM."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.procs import REPO, VENV_PYTHON, Server, free_port, get_ok, start_server

logger = logging.getLogger(__name__)

MODELS_DIR = REPO / ".cache" / "models"


@dataclass
class MaasGateway:
    server: Server
    key: str
    home: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def maas_env(home: Path, models_dir: Path | None = MODELS_DIR) -> dict[str, str]:
    """Environment for ``maas``: its own home, the shared prepared models, and the repository importable
    by Ray workers (a catalog may name a backend from ``benchmarks``)."""
    env = dict(os.environ, MAAS_HOME=str(home), PYTHONPATH=str(REPO))
    if models_dir is not None:
        env["MAAS_MODELS_DIR"] = str(models_dir)
    return env


def create_key(env: dict[str, str], tenant: str = "bench") -> str:
    """``maas keys create``; the key is the last line it prints."""
    out = subprocess.run(
        [str(VENV_PYTHON), "-m", "gateway.cli", "keys", "create", "--tenant", tenant],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    return out.split()[-1]


def start_maas(
    catalog: Path,
    *,
    log_dir: Path,
    models_dir: Path | None = MODELS_DIR,
    home: Path | None = None,
    ready_timeout_s: float = 300,
    launcher: Sequence[str] = (str(VENV_PYTHON), "-m", "gateway.cli", "serve"),
    extra_env: dict[str, str] | None = None,
) -> MaasGateway:
    """Start ``maas serve --config catalog`` on a free port and wait until ``/health`` is 200.

    ``launcher`` is the command up to the serve options (a profiler wrapper may replace it)."""
    home = home or Path(tempfile.mkdtemp(prefix="maas-bench-"))
    env = {**maas_env(home, models_dir), **(extra_env or {})}
    key = create_key(env)
    port = free_port()
    command = [*launcher, "--config", str(catalog), "--port", str(port)]
    server = start_server("maas", command, port=port, log_dir=log_dir, env=env)
    gateway = MaasGateway(server=server, key=key, home=home)
    try:
        seconds = server.wait_ready(get_ok("/health"), timeout_s=ready_timeout_s)
    except BaseException:
        server.stop()
        raise
    logger.info("maas serve ready in %.1fs", seconds)
    return gateway


def process_roles(root_pid: int) -> dict[str, list[int]]:
    """The processes under ``root_pid`` grouped by role, for CPU accounting.

    ``front``: the root (the HTTP server); ``proxy``: Ray Serve's HTTP proxy actor; ``replica``: Ray
    Serve replica actors; ``engine``: vLLM engine cores; ``model``: vLLM's model workers (the forward
    passes); ``other``: everything else (for Ray: GCS, raylet, controller, idle workers).
    """
    roles: dict[str, list[int]] = {
        "front": [root_pid],
        "proxy": [],
        "replica": [],
        "engine": [],
        "model": [],
        "other": [],
    }
    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            title = " ".join([child.name(), *child.cmdline()])
        except psutil.Error:
            continue
        if "ProxyActor" in title:
            roles["proxy"].append(child.pid)
        elif "ServeReplica" in title:
            roles["replica"].append(child.pid)
        elif "EngineCore" in title:
            roles["engine"].append(child.pid)
        elif "VLLM::Worker" in title:
            roles["model"].append(child.pid)
        else:
            roles["other"].append(child.pid)
    return {role: pids for role, pids in roles.items() if pids}
