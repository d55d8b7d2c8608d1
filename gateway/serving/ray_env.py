"""The environment Ray reads when it is imported: what the gateway sets for its replicas and its own process,
and the trimmed background work of the private head. Set before ``import ray``; an operator's own setting wins
where it says so."""

from __future__ import annotations

import os
import secrets

REPLICA_ENV = {
    "HF_HUB_OFFLINE": "1",  # nothing is ever fetched from a hub at run time
    # Backends are async (blocking work goes to threads), so replicas run them on Serve's own event loop
    # rather than a second loop in another thread, saving a cross-thread hand-off per streamed chunk.
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    # Serve's replicas and handles flush their request metrics ten times a second by default; once a second
    # is plenty for metrics nobody reads at that pace, and each flush wakes the process.
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
}

# Ray's own background work on the private head, trimmed. Measured idle on 2 cores: Ray's processes took 13%
# of a core with the defaults, 7% with the first five settings and 5.4% -> 4.5% (all processes, engine
# included) with the rest; all of it is taken from the engines under load.
PRIVATE_HEAD_ENV = {
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "1",  # the controller reconciles once a second, not ten times
    "RAY_enable_worker_prestart": "0",  # no idle worker kept warm: every actor here is started on purpose
    "RAY_prestart_worker_first_driver": "0",
    # Ray's log monitor re-globs the session's log folder ten times a second while it holds under 1000
    # files; with the threshold at 0 it looks for new files every 5 s (Ray's own back-off for many files).
    "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
    "LOG_NAME_UPDATE_INTERVAL_S": "5",
    # Timers of the raylet and the workers that suit a big shared cluster, not one node with a handful of
    # actors: resource reports and disk checks once a second or two instead of every 100 ms, idle-worker
    # and GC checks less often.
    "RAY_raylet_report_resources_period_milliseconds": "1000",
    "RAY_local_fs_monitor_interval_ms": "2000",
    "RAY_raylet_check_gc_period_milliseconds": "1000",
    "RAY_kill_idle_workers_interval_ms": "2000",
}
# Without the dashboard nothing reads Ray's own metrics (the gateway exports its own): stop collecting them.
# Task events feed Ray's state API and the dashboard's task views only. Ray's dashboard agent runs on every
# node all the same; two of its loops report to the dashboard alone: the node's process statistics (psutil
# over every process, then published through the GCS) every 5 s, and Ray's event files every 0.1 s. Once a
# minute and once a second here: measured idle, the agent woke 35 times a second instead of 51.
NO_DASHBOARD_ENV = {
    "RAY_enable_metrics_collection": "0",
    "RAY_task_events_report_interval_ms": "0",
    "REPORTER_UPDATE_INTERVAL_MS": "60000",
    "EVENT_AGENT_REPORT_INTERVAL_SECONDS": "1",
}


def prepare_ray_environment(*, private_head: bool, dashboard: bool) -> None:
    """Set the variables Ray reads at import, for a private local head or for joining a cluster."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no usage reports leave the operator's machine
    # The handle's router runs in the gateway's own event loop instead of a second loop in another
    # thread: one cross-thread hand-off less per request and per streamed chunk (Ray reads this when
    # ray.serve is imported).
    os.environ.setdefault("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", "0")
    if private_head:
        # A fresh token per run for this loopback cluster, shared with the head through the environment
        # (Ray otherwise writes ~/.ray/auth_token and expects every later CLI call to find it). Ray
        # reads these when it is imported, so they are set first. A cluster the operator runs keeps its
        # own authentication settings (RAY_AUTH_MODE / RAY_AUTH_TOKEN in the gateway's environment).
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        # ray.init turns a loopback node address into the host's reachable one (services.
        # resolve_ip_for_localhost) unless Ray believes it may not form clusters here, as on macOS; then
        # the node's address stays 127.0.0.1 and every server of the head (GCS, raylet, workers and
        # replicas, dashboard and runtime-env agents, metrics exporters) listens on loopback only, where
        # they otherwise listen on every interface. Checked by tests/e2e/test_listening_sockets.py.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        # Ray starts workers at nice 15 and the engines inherit it: measured here, that cost the gateway
        # most of its end-to-end throughput against direct vLLM on a busy machine.
        os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112 (Ray spells it this way)
        lean = {**PRIVATE_HEAD_ENV, **({} if dashboard else NO_DASHBOARD_ENV)}
        for name, value in lean.items():
            os.environ.setdefault(name, value)  # an operator's own setting wins
    os.environ.setdefault(
        "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS", REPLICA_ENV["RAY_SERVE_METRICS_EXPORT_INTERVAL_MS"]
    )  # the gateway's handles flush like the replicas
