"""The gateway directory: what the gateways of one installation on one Ray cluster share.

It lives in Ray's own key-value store (the GCS), in a namespace per installation (``maas/maas-gateways``,
or ``maas/<id>_gateways``), and costs no process: why, and the entries' format, in
``backends.gateway_listing``. It holds:

* every live gateway and where it listens for replica channels. Each gateway writes its entry at start and
  again with every heartbeat (2 s); one silent for ``ALIVE_S`` is taken as gone. Replicas read the entries
  (``backends.replica_links``) and open a channel to each gateway listed.
* the catalog the deploying gateway last applied, with the release of each Serve application it deployed.
  Attached gateways (``maas serve --attach``) serve exactly that, and follow it when it changes.

The entries outlive the gateways, so a gateway that dies takes nothing with it, and the last one to stop
removes them.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from backends.channel_wire import ChannelInvite, GatewayAddress
from backends.gateway_listing import (
    CALL_TIMEOUT_S,
    MEMBER_PREFIX,
    Listing,
    addresses,
    alive,
    gcs_client,
    kv_namespace,
    member_key,
)
from gateway.serving.app_names import check_installation

NAMESPACE = "maas"
PUBLISHED_KEY = b"published"


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


class DirectoryStore(Protocol):
    """A key-value namespace: Ray's GCS (``GcsStore``), or a dict in tests of the directory's rules."""

    def put(self, key: bytes, value: bytes) -> None: ...

    def get(self, key: bytes) -> bytes | None: ...

    def items(self, prefix: bytes) -> dict[bytes, bytes]: ...

    def delete(self, key: bytes, *, by_prefix: bool = False) -> None: ...


class GcsStore:
    """One namespace of Ray's GCS key-value store, through this process's GCS client (Ray connected)."""

    def __init__(self, namespace: bytes, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._gcs = gcs_client()
        self._namespace = namespace
        self._timeout_s = timeout_s

    def put(self, key: bytes, value: bytes) -> None:
        self._gcs.internal_kv_put(key, value, True, self._namespace, timeout=self._timeout_s)

    def get(self, key: bytes) -> bytes | None:
        value = self._gcs.internal_kv_get(key, self._namespace, timeout=self._timeout_s)
        return None if value is None else bytes(value)

    def items(self, prefix: bytes) -> dict[bytes, bytes]:
        keys = self._gcs.internal_kv_keys(prefix, self._namespace, timeout=self._timeout_s)
        if not keys:
            return {}
        return dict(self._gcs.internal_kv_multi_get(list(keys), self._namespace, timeout=self._timeout_s))

    def delete(self, key: bytes, *, by_prefix: bool = False) -> None:
        self._gcs.internal_kv_del(key, by_prefix, self._namespace, timeout=self._timeout_s)


class GatewayDirectory:
    """The directory's rules over its store; ``clock`` is the wall clock every node shares."""

    def __init__(self, store: DirectoryStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def register(self, gateway: str, address: GatewayAddress | None, role: str) -> str | None:
        """List (or keep listing) ``gateway``; the installation's accountant (``accountant``)."""
        self._store.put(member_key(gateway), pickle.dumps(Listing(address, role, self._clock())))
        return self.accountant()

    def accountant(self) -> str | None:
        """The gateway that accrues the installation's replica time and chip-hour cost in its metrics: the
        deploying one while it lives, else the first serving attached one by id. The others count only
        their own requests, so that a sum over every gateway's metrics counts each replica-second once."""
        listed = self._alive()
        for role in (DEPLOYING, ATTACHED):
            candidates = sorted(g for g, m in listed.items() if m.role == role)
            if candidates:
                return candidates[0]
        return None

    def seen_ago(self, gateway: str) -> float | None:
        """Seconds since ``gateway`` last registered (None: not listed)."""
        member = self._alive().get(gateway)
        return None if member is None else self._clock() - member.seen

    def unregister(self, gateway: str) -> None:
        self._store.delete(member_key(gateway))

    def _alive(self) -> dict[str, Listing]:
        entries = self._store.items(MEMBER_PREFIX)
        listed = alive(entries, self._clock())
        for key in entries.keys() - {member_key(g) for g in listed}:
            self._store.delete(key)  # died without unregistering: its entry goes
        return listed

    def gateways(self) -> list[GatewayAddress]:
        """Where the live gateways listen for replica channels."""
        return addresses(self._alive())

    def members(self) -> dict[str, str]:
        """Each live gateway and its role."""
        return {gateway: m.role for gateway, m in self._alive().items()}

    def publish(self, deployer: str, catalog: dict[str, Any], releases: dict[str, str]) -> int:
        previous = self.published()
        version = 1 if previous is None else previous.version + 1
        self._store.put(PUBLISHED_KEY, pickle.dumps(Published(version, deployer, catalog, releases)))
        return version

    def published(self) -> Published | None:
        value = self._store.get(PUBLISHED_KEY)
        published = None if value is None else pickle.loads(value)
        return published if isinstance(published, Published) else None

    def remove(self) -> None:
        """Every entry of the installation (its last gateway stopping)."""
        self._store.delete(b"", by_prefix=True)


class DirectoryClient:
    """This gateway's view of the directory (blocking calls: from start-up and the health thread)."""

    def __init__(self, installation: str | None, gateway: str) -> None:
        self.name = directory_name(installation)
        self.gateway = gateway
        self._directory = GatewayDirectory(GcsStore(kv_namespace(self.name, NAMESPACE)))

    def invite(self, app: str, release: str) -> ChannelInvite:
        return ChannelInvite(self.name, NAMESPACE, app, release)

    def register(self, address: GatewayAddress | None, role: str) -> str | None:
        """List this gateway (again); the installation's accountant."""
        return self._directory.register(self.gateway, address, role)

    def unregister(self) -> None:
        self._directory.unregister(self.gateway)

    def members(self) -> dict[str, str]:
        """Every live gateway of this installation and its role."""
        return self._directory.members()

    def seen_ago(self, gateway: str) -> float | None:
        return self._directory.seen_ago(gateway)

    def others(self, role: str | None = None) -> list[str]:
        """The other live gateways of this installation (in ``role``, if given)."""
        return sorted(g for g, r in self.members().items() if g != self.gateway and role in (None, r))

    def publish(self, catalog: dict[str, Any], releases: dict[str, str]) -> int:
        return self._directory.publish(self.gateway, catalog, releases)

    def published(self) -> Published | None:
        return self._directory.published()

    def wait_published(self, timeout_s: float) -> Published | None:
        deadline = time.monotonic() + timeout_s
        while (published := self.published()) is None and time.monotonic() < deadline:
            time.sleep(1.0)
        return published

    def remove(self) -> None:
        """Every entry of the installation (its last gateway stopping)."""
        self._directory.remove()
