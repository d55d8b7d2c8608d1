"""Servers the benchmarks start: each in its own session, waited for over loopback, stopped by its PID.

Only what a benchmark started is ever signalled: the server's own PID first (so it can shut down
gracefully), then whatever is left in its session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.serving.ray_head import session_members

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if not VENV_PYTHON.exists():  # a git worktree without its own venv: the interpreter running this
    VENV_PYTHON = Path(sys.executable)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerFailed(RuntimeError):
    """A server exited or did not answer in time; the message names its log file."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


@dataclass
class Server:
    """A started server process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(
        self,
        probe: Callable[[httpx.Client], bool],
        timeout_s: float,
        interval_s: float = 0.5,
    ) -> float:
        """Call ``probe`` until it returns True; return the seconds it took. Raise if the process dies."""
        started = time.monotonic()
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while time.monotonic() - started < timeout_s:
                if self.process.poll() is not None:
                    message = f"{self.name} exited with {self.process.returncode}; see {self.log_path}"
                    raise ServerFailed(message, self.log_path)
                with contextlib.suppress(httpx.HTTPError):
                    if probe(client):
                        return time.monotonic() - started
                time.sleep(interval_s)
        raise ServerFailed(
            f"{self.name} not ready after {timeout_s:.0f}s; see {self.log_path}", self.log_path
        )

    def stop(self, grace_s: float = 60) -> None:
        """SIGTERM the server, wait up to ``grace_s``, then SIGKILL what is left in its session."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                logger.warning("server %s ignored SIGTERM for %.0fs; killing its session", self.name, grace_s)
        for pid in session_members(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=10)


def start_server(
    name: str,
    command: Sequence[str],
    *,
    port: int,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
) -> Server:
    """Start ``command`` in a new session with its output in ``log_dir/<name>.log``."""
    log_path = log_dir / f"{name}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            env=dict(os.environ if env is None else env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,  # its session then holds only what it started
        )
    logger.info("started %s pid=%d port=%d log=%s", name, process.pid, port, log_path)
    return Server(name=name, process=process, log_path=log_path, base_url=f"http://127.0.0.1:{port}")


def get_ok(path: str, headers: Mapping[str, str] | None = None) -> Callable[[httpx.Client], bool]:
    """A readiness probe: GET ``path`` answers 200."""

    def probe(client: httpx.Client) -> bool:
        return client.get(path, headers=dict(headers or {})).status_code == 200

    return probe
