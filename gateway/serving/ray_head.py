"""The local Ray head, run as a child process in its own session.

Why a child: a terminal's Ctrl-C (and ``timeout``'s signal) reaches the whole foreground process group. If
Ray's GCS and raylet were in the gateway's group they would die at once, before Serve could stop its
replicas gracefully, and orphan the engines. In its own session the head hears only what the gateway
tells it, and everything it starts shares its process group, so the gateway can stop all of it by one
PID. The head also exits when the gateway process disappears (even after kill -9).

Run by ``RayHead.start()``; prints ``GCS_ADDRESS=<host:port>`` once Ray is up.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType


def _serve_head(args: argparse.Namespace) -> int:
    """Start the head's processes as ``ray start --head`` does, without connecting to them: ``ray.init``
    would also make this process a Ray driver, and a driver's threads wake about 40 times a second for
    nothing the head needs (``benchmarks/wakeups.py``). Ray's log monitor, which streams workers' output
    to drivers, runs only when the gateway asks for that output (``--log-monitor``); Ray's cluster
    autoscaler does not run."""
    from ray._private import services
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    stop = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    resources = json.loads(args.resources)
    params = RayParams(
        # Loopback, kept so by RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (see gateway.serving.ray_env).
        node_ip_address=services.resolve_ip_for_localhost("127.0.0.1"),
        num_cpus=args.num_cpus,
        num_gpus=resources.pop("GPU", None),  # Ray takes GPUs only this way
        resources=resources,
        include_dashboard=args.dashboard,
        dashboard_host="127.0.0.1",
        include_log_monitor=args.log_monitor,
        no_monitor=True,  # Ray's cluster autoscaler: nothing to scale on one private node
    )
    node = Node(params, head=True, shutdown_at_exit=False, spawn_reaper=True, ray_init_cluster=True)
    # The GCS listens on every interface but the gateway reaches it over loopback only.
    port = str(node.gcs_address).rsplit(":", 1)[1]
    # The head's own client of the GCS was for starting it; kept, its gRPC threads would wake this process
    # about 24 times a second for nothing (stopping the processes below needs only their PIDs).
    node._gcs_client = None
    gc.collect()
    print(f"GCS_ADDRESS=127.0.0.1:{port}", flush=True)
    try:
        while not stop and os.getppid() == args.parent:
            time.sleep(0.5)
    finally:
        node.kill_all_processes(check_alive=False, allow_graceful=True)
    return 0


@dataclass
class RayHead:
    """Handle on the head child process."""

    process: subprocess.Popen[str]
    gcs_address: str

    @classmethod
    def start(
        cls,
        *,
        dashboard: bool = False,
        log_monitor: bool = False,
        num_cpus: int | None = None,
        resources: dict[str, float] | None = None,
        timeout_s: float = 120,
    ) -> RayHead:
        command = [
            sys.executable,
            "-m",
            "gateway.serving.ray_head",
            "--parent",
            str(os.getpid()),
            "--resources",
            json.dumps(resources or {}),
        ]
        if dashboard:
            command.append("--dashboard")
        if log_monitor:
            command.append("--log-monitor")
        if num_cpus is not None:
            command += ["--num-cpus", str(num_cpus)]
        # Not the gateway processes' shared metrics folder (`maas serve --workers`): engines that use
        # prometheus_client would write theirs there too, and the gateway's /metrics would report them.
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, start_new_session=True, env=env
        )
        deadline = time.monotonic() + timeout_s
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("GCS_ADDRESS="):
                return cls(process=process, gcs_address=line.strip().split("=", 1)[1])
            if time.monotonic() > deadline:
                break
        head = cls(process=process, gcs_address="")
        head.stop()
        raise RuntimeError("the local Ray head did not start; see /tmp/ray/session_latest/logs")

    def stop(self, grace_s: float = 15) -> None:
        """Stop Ray's processes: ask the head first, then kill whatever is left in its session.

        Ray workers move into process groups of their own, but they stay in the head's session.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        kill_session(self.process.pid)
        if self.process.poll() is None:
            self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def session_members(sid: int) -> list[int]:
    """PIDs whose session id is ``sid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may contain spaces) start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def kill_session(sid: int) -> None:
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.serving.ray_head")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--dashboard", action="store_true")
    parser.add_argument("--log-monitor", action="store_true")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--resources", default="{}")
    return _serve_head(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
