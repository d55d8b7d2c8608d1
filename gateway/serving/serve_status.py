"""The state of the gateway's Serve applications: each model's status and how many replicas are healthy.

Read every couple of seconds, so it must be cheap. ``serve.status()`` is not: it asks the controller for the
full instance details and validates them into pydantic models, which cloudpickles each deployment's request
router class, in the controller and again in the gateway. Profiled under load on 2 cores, that poll was a
quarter of the gateway front's CPU, taken from the engines. The controller's compact status list (protobuf,
no details) says the same whenever a deployment is HEALTHY, which Serve reports only once all of its target
replicas run; the details are read only while some deployment of ours is in another state.

Both calls go through Serve's client object (``ray.serve.context._get_global_client``), which the public
``serve.status()`` uses itself; re-check on a Ray upgrade (pinned: ray 2.60).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServeStatus:
    statuses: dict[str, str]  # model -> application status (RUNNING, DEPLOYING, UNHEALTHY, ...)
    healthy: dict[str, int]  # model -> replicas in the RUNNING state


def _value(state: Any) -> str:
    return str(getattr(state, "value", state))


def read_serve_status(prefix: str, target_replicas: dict[str, int]) -> ServeStatus:
    """Status of the Serve applications named ``prefix + model``; ``target_replicas`` by application."""
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return ServeStatus({}, {})
    statuses: dict[str, str] = {}
    healthy: dict[str, int] = {}
    settled = True
    for overview in client.list_serve_statuses():
        if not overview.name.startswith(prefix):
            continue
        model = overview.name.removeprefix(prefix)
        statuses[model] = _value(overview.app_status.status)
        target = target_replicas.get(overview.name)
        if target is not None and all(_value(d.status) == "HEALTHY" for d in overview.deployment_statuses):
            healthy[model] = target
        else:
            settled = False
    if not settled:
        healthy.update(_running_replicas(client.get_serve_details(), prefix, set(statuses) - set(healthy)))
    return ServeStatus(statuses, healthy)


def _running_replicas(details: dict[str, Any], prefix: str, models: set[str]) -> dict[str, int]:
    """Replicas in the RUNNING state per model, from the controller's instance details (a plain dict)."""
    counts = {}
    for name, app in details.get("applications", {}).items():
        model = name.removeprefix(prefix)
        if name.startswith(prefix) and model in models:
            counts[model] = sum(
                1
                for deployment in app.get("deployments", {}).values()
                for replica in deployment.get("replicas", [])
                if _value(replica.get("state")) == "RUNNING"
            )
    return counts
