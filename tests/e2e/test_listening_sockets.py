"""What a running gateway listens on: with the private Ray head, nothing but loopback, so Ray's servers,
its agents, the replicas and the replica channels cannot be reached from another host."""

from __future__ import annotations

import ipaddress

import psutil
import pytest

from tests.e2e.conftest import Gateway, process_tree

pytestmark = pytest.mark.e2e


def listening_sockets(gateway: Gateway) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket the gateway and what it started listen on."""
    tree = {proc.pid: proc for proc in process_tree(gateway.process.pid)}
    tree[gateway.process.pid] = psutil.Process(gateway.process.pid)
    found = []
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in tree:
            try:
                name = tree[conn.pid].name()
            except psutil.Error:
                continue
            found.append((conn.laddr.ip, conn.laddr.port, name))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 from a dual-stack socket
    return (mapped or ip).is_loopback


def test_every_socket_of_a_running_gateway_listens_on_loopback_only(gateway: Gateway) -> None:
    sockets = listening_sockets(gateway)
    names = {name for _, _, name in sockets}
    # The parts the issue saw on every interface are all here, and all on loopback.
    assert {"gcs_server", "raylet"} <= names, sockets
    assert any(name.startswith("ray::ServeReplica") for name in names), sockets
    assert any(port == int(gateway.base_url.rsplit(":", 1)[1]) for _, port, _ in sockets), sockets
    exposed = [s for s in sockets if not is_loopback(s[0])]
    assert not exposed, f"listening beyond loopback: {exposed}"
