"""Serve's per-replica gRPC server (the direct path of ``DeploymentHandle`` calls) bound to the node's own
address instead of every interface.

Ray Serve 2.60 binds it to ``[::]:0`` (``ray/serve/_private/replica.py``, ``_on_initialized``) although
handles reach it only at the node's address, which Serve records with the port. Ray's own servers follow the
node's address already (on the private head that is 127.0.0.1); this brings the replica's in line. It runs
in the replica's process, in the model's constructor, which Serve calls before it starts that server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MARK = "_maas_node_bound"
_BINDER = "add_port_to_grpc_server"  # the name Serve's replica module calls it by


def bind_replica_grpc_to_node_address() -> None:
    """Make Serve's replica gRPC server listen on this node's address (idempotent)."""
    import ray.util
    from ray.serve._private import replica as serve_replica

    original: Callable[[Any, str], int] = getattr(serve_replica, _BINDER)
    if getattr(original, _MARK, False):
        return
    node_ip = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
    host = f"[{node_ip}]" if ":" in node_ip else node_ip

    def on_node_address(server: Any, address: str) -> int:
        if address.startswith("[::]:"):
            address = f"{host}:{address.rsplit(':', 1)[1]}"
        return original(server, address)

    setattr(on_node_address, _MARK, True)
    setattr(serve_replica, _BINDER, on_node_address)
