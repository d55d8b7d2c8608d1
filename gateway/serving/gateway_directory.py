"""The gateway directory: what the gateways of one installation on one Ray cluster share.

One named, detached Ray actor per installation (``maas-gateways``, or ``<id>_gateways``, in the ``maas``
namespace) holds:

* every live gateway and where it listens for replica channels. Each gateway registers at start and again
  with every health poll (2 s); one silent for ``ALIVE_S`` is taken as gone. Replicas read this list
  (``backends.replica_links``) and open a channel to each gateway in it.
* the catalog the deploying gateway last applied, with the release of each Serve application it deployed.
  Attached gateways (``maas serve --attach``) serve exactly that, and follow it when it changes.

The actor holds no replica and costs no CPU reservation; it outlives the gateways (detached), so a gateway
that dies takes nothing with it, and the last one to stop removes it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from backends.channel_wire import ChannelInvite, GatewayAddress
from gateway.serving.app_names import check_installation

logger = logging.getLogger(__name__)

NAMESPACE = "maas"
ALIVE_S = 10.0
"""A gateway not heard from for this long is no longer listed (it died without unregistering)."""
CALL_TIMEOUT_S = 10.0


def directory_name(installation: str | None) -> str:
    return "maas-gateways" if installation is None else f"{check_installation(installation)}_gateways"


@dataclass(frozen=True)
class Published:
    """The deploying gateway's current catalog (as ``parse_catalog`` reads it) and its releases."""

    version: int
    deployer: str
    catalog: dict[str, Any]
    releases: dict[str, str]  # Serve application -> release its replicas were deployed with


DEPLOYING, ATTACHING, ATTACHED = "deploying", "attaching", "attached"
"""A member's role: deploys the catalog; attached, and serving yet or not."""


@dataclass
class _Member:
    address: GatewayAddress | None
    role: str
    seen: float


class GatewayDirectory:
    """The actor's state and methods (plain: ``open_directory`` makes it a Ray actor)."""

    def __init__(self) -> None:
        self._members: dict[str, _Member] = {}
        self._published: Published | None = None

    def register(self, gateway: str, address: GatewayAddress | None, role: str) -> str | None:
        """List (or keep listing) ``gateway``; the installation's accountant (``accountant``)."""
        self._members[gateway] = _Member(address, role, time.monotonic())
        return self.accountant()

    def accountant(self) -> str | None:
        """The gateway that accrues the installation's replica time and chip-hour cost in its metrics: the
        deploying one while it lives, else the first serving attached one by id. The others count only
        their own requests, so that a sum over every gateway's metrics counts each replica-second once."""
        alive = self._alive()
        for role in (DEPLOYING, ATTACHED):
            candidates = sorted(g for g, m in alive.items() if m.role == role)
            if candidates:
                return candidates[0]
        return None

    def seen_ago(self, gateway: str) -> float | None:
        """Seconds since ``gateway`` last registered (None: not listed)."""
        member = self._alive().get(gateway)
        return None if member is None else time.monotonic() - member.seen

    def unregister(self, gateway: str) -> None:
        self._members.pop(gateway, None)

    def _alive(self) -> dict[str, _Member]:
        now = time.monotonic()
        for gateway in [g for g, m in self._members.items() if now - m.seen > ALIVE_S]:
            del self._members[gateway]
        return self._members

    def gateways(self) -> list[GatewayAddress]:
        """Where the live gateways listen for replica channels."""
        return [m.address for m in self._alive().values() if m.address is not None]

    def members(self) -> dict[str, str]:
        """Each live gateway and its role."""
        return {gateway: m.role for gateway, m in self._alive().items()}

    def publish(self, deployer: str, catalog: dict[str, Any], releases: dict[str, str]) -> int:
        version = 1 if self._published is None else self._published.version + 1
        self._published = Published(version, deployer, catalog, releases)
        return version

    def published(self) -> Published | None:
        return self._published


class DirectoryClient:
    """This gateway's view of the directory (blocking calls: from start-up and the health thread)."""

    def __init__(self, installation: str | None, gateway: str) -> None:
        import ray

        self.name = directory_name(installation)
        self.gateway = gateway
        self._actor: Any = (
            ray.remote(GatewayDirectory)
            .options(
                name=self.name,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
                # On the head, with the Serve controller: worker nodes come and go. Should it restart
                # anyway, it restarts empty; gateways register again, the deployer publishes again.
                resources={"node:__internal_head__": 0.001},
                max_restarts=-1,
            )
            .remote()
        )

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self._actor, method).remote(*args), timeout=CALL_TIMEOUT_S)

    def invite(self, app: str, release: str) -> ChannelInvite:
        return ChannelInvite(self.name, NAMESPACE, app, release)

    def register(self, address: GatewayAddress | None, role: str) -> str | None:
        """List this gateway (again); the installation's accountant."""
        result = self._call("register", self.gateway, address, role)
        return None if result is None else str(result)

    def unregister(self) -> None:
        self._call("unregister", self.gateway)

    def members(self) -> dict[str, str]:
        """Every live gateway of this installation and its role."""
        return dict(self._call("members"))

    def seen_ago(self, gateway: str) -> float | None:
        result = self._call("seen_ago", gateway)
        return None if result is None else float(result)

    def others(self, role: str | None = None) -> list[str]:
        """The other live gateways of this installation (in ``role``, if given)."""
        return sorted(g for g, r in self.members().items() if g != self.gateway and role in (None, r))

    def publish(self, catalog: dict[str, Any], releases: dict[str, str]) -> int:
        return int(self._call("publish", self.gateway, catalog, releases))

    def published(self) -> Published | None:
        result = self._call("published")
        assert result is None or isinstance(result, Published)
        return result

    def wait_published(self, timeout_s: float) -> Published | None:
        deadline = time.monotonic() + timeout_s
        while (published := self.published()) is None and time.monotonic() < deadline:
            time.sleep(1.0)
        return published

    def remove(self) -> None:
        """End the directory actor (the last gateway of the installation stopping)."""
        import ray

        ray.kill(self._actor, no_restart=True)
