"""`maas serve --workers N`: N gateway processes on one host and port, in front of the same replicas.

The process started by the operator deploys the catalog as ever (its private Ray head, or the cluster it
joins) and then starts N-1 more gateway processes that attach to it (``maas serve --attach``). Every one
listens on the same port with ``SO_REUSEPORT``, so the kernel spreads new connections over them, and
every one holds its own replica channels (each replica dials each gateway). They share state the way
gateways on several hosts do: the database (SQLite under ``MAAS_HOME`` by default, with the key cache's
bound for revocations; PostgreSQL and Redis when set) and the Ray cluster.

An attached worker stops when the process that started it is gone; a SIGTERM to the first process is
passed on to every worker, and each drains its own requests.

One scrape of ``/metrics`` on the port reports every process: they all write their metrics to one folder
(prometheus_client's multiprocess mode, ``gateway.observability.metrics``). The library picks that mode
when it is imported, so the first process sets ``PROMETHEUS_MULTIPROC_DIR`` and starts itself again
(``exec``: the same process id) before anything is imported or started; the workers inherit it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def shared_metrics_dir(home: Path) -> Path | None:
    """The folder this host's gateway processes write their metrics to (None: one process, its own)."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def exec_with_shared_metrics(home: Path) -> None:
    """Start this `maas serve --workers` again with a fresh metrics folder for all its processes (does
    not return). The folder is named by the process id, which ``exec`` keeps: ``owned_metrics_dir``."""
    folder = _metrics_dir(home, os.getpid())
    shutil.rmtree(folder, ignore_errors=True)  # left by a process that had this id and was killed
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "gateway.cli", *sys.argv[1:]])


def owned_metrics_dir(home: Path) -> Path | None:
    """The shared metrics folder if this process made it (``exec_with_shared_metrics``): it removes it at
    its stop. One the operator named in ``PROMETHEUS_MULTIPROC_DIR`` is theirs, and stays."""
    folder = shared_metrics_dir(home)
    return folder if folder == _metrics_dir(home, os.getpid()) else None


def _metrics_dir(home: Path, pid: int) -> Path:
    return home / "metrics" / str(pid)


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """The gateway's HTTP socket, bound and listening; shared by the workers with ``SO_REUSEPORT``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def parent_gone(parent_pid: int | None) -> str | None:
    """Why an attached worker stops: the gateway that started it is gone (None while it runs)."""
    if parent_pid is None or os.getppid() == parent_pid:
        return None
    return f"the gateway process that started this worker ({parent_pid}) is gone"


@dataclass
class Workers:
    """The attached gateway processes this one started."""

    processes: list[subprocess.Popen[bytes]]
    metrics_dir: Path | None = None
    _reaped: set[int] = field(default_factory=set)

    @classmethod
    def spawn(
        cls, count: int, args: argparse.Namespace, ray_address: str, metrics_dir: Path | None
    ) -> Workers:
        command = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--attach",
            "--ray-address",
            ray_address,
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--shutdown-grace",
            str(args.shutdown_grace),
            "--reuse-port",
            "--parent-pid",
            str(os.getpid()),
        ]
        if args.verbose:
            command.append("--verbose")
        return cls([subprocess.Popen(command) for _ in range(count)], metrics_dir)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def exited(self) -> list[int]:
        """Exit codes of the workers that have stopped."""
        return [code for p in self.processes if (code := p.poll()) is not None]

    def reap(self) -> None:
        """Drop the live gauges (requests in flight) of workers that have stopped from the shared metrics;
        their counters stay, as counts already made."""
        for process in self.processes:
            if process.pid not in self._reaped and process.poll() is not None:
                self._reaped.add(process.pid)
                if self.metrics_dir is not None:
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def terminate(self) -> None:
        """Ask every worker to drain and stop."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float) -> None:
        self.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.reap()
