"""`maas serve --workers N`: N gateway processes on one host and port, in front of the same replicas.

The process started by the operator deploys the catalog as ever (its private Ray head, or the cluster it
joins) and then starts N-1 more gateway processes that attach to it (``maas serve --attach``). Every one
listens on the same port with ``SO_REUSEPORT``, so the kernel spreads new connections over them, and
every one holds its own replica channels (each replica dials each gateway). They share state the way
gateways on several hosts do: the database (SQLite under ``MAAS_HOME`` by default, with the key cache's
bound for revocations; PostgreSQL and Redis when set) and the Ray cluster.

An attached worker stops when the process that started it is gone; a SIGTERM to the first process is
passed on to every worker, and each drains its own requests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass


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

    @classmethod
    def spawn(cls, count: int, args: argparse.Namespace, ray_address: str) -> Workers:
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
        return cls([subprocess.Popen(command) for _ in range(count)])

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def exited(self) -> list[int]:
        """Exit codes of the workers that have stopped."""
        return [code for p in self.processes if (code := p.poll()) is not None]

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
