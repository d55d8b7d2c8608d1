"""Where the gateways of an installation are listed: keys in Ray's own key-value store (the GCS), not an
actor. A Ray actor is a process of its own, and every Ray worker process wakes about 150 times a second
while idle (its task loop checks signals every 10 ms, its gRPC threads poll); on a small node every such
wake-up preempts an engine thread. The GCS is there anyway.

Each gateway writes its own entry (``member:<gateway id>``: its channel address, role and the wall-clock
time of its last heartbeat); an entry older than ``ALIVE_S`` by the reader's clock is a gateway that died
without unregistering. Clocks of the cluster's nodes are assumed to agree within a few seconds (NTP).
Replicas read the entries (``backends.replica_links``), gateways write and read them
(``gateway.serving.gateway_directory``).
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from typing import Any

from backends.channel_wire import ChannelInvite, GatewayAddress

ALIVE_S = 10.0
"""A gateway not heard from for this long is no longer listed (it died without unregistering)."""
CALL_TIMEOUT_S = 10.0
MEMBER_PREFIX = b"member:"


@dataclass(frozen=True)
class Listing:
    """One gateway's entry: where replicas reach its channel hub (None: channels off), its role, and when
    it last said it lives (``time.time()``)."""

    address: GatewayAddress | None
    role: str
    seen: float


def kv_namespace(directory: str, namespace: str) -> bytes:
    """The key-value namespace of one installation's directory."""
    return f"{namespace}/{directory}".encode()


def member_key(gateway: str) -> bytes:
    return MEMBER_PREFIX + gateway.encode()


def alive(entries: dict[bytes, bytes], now: float) -> dict[str, Listing]:
    """The entries (``member:`` key -> pickled ``Listing``) heard from within ``ALIVE_S``, by gateway id."""
    listed: dict[str, Listing] = {}
    for key, value in entries.items():
        listing = pickle.loads(value)
        if isinstance(listing, Listing) and now - listing.seen <= ALIVE_S:
            listed[key.removeprefix(MEMBER_PREFIX).decode()] = listing
    return listed


def addresses(listed: dict[str, Listing]) -> list[GatewayAddress]:
    """Where the listed gateways take replica channels, in the order of their ids."""
    return [address for g in sorted(listed) if (address := listed[g].address) is not None]


def gcs_client() -> Any:
    """This Ray process's own GCS client (Ray connected), with the key-value calls that take a timeout."""
    from ray.experimental.internal_kv import internal_kv_get_gcs_client

    return internal_kv_get_gcs_client()  # type: ignore[no-untyped-call]


async def listed_gateways(invite: ChannelInvite, gcs: Any | None = None) -> list[GatewayAddress]:
    """The live gateways of ``invite``'s installation, read from the GCS without blocking the loop
    (``gcs``: Ray's GCS client; this process's own by default)."""
    gcs = gcs or gcs_client()
    namespace = kv_namespace(invite.directory, invite.namespace)
    keys = await gcs.async_internal_kv_keys(MEMBER_PREFIX, namespace, timeout=CALL_TIMEOUT_S)
    if not keys:
        return []
    entries = await gcs.async_internal_kv_multi_get(list(keys), namespace, timeout=CALL_TIMEOUT_S)
    return addresses(alive(entries, time.time()))
