"""A replica's channels to every gateway of its installation.

Gateways come and go (a second gateway attaches, one stops or dies), so a replica is not deployed with one
gateway's address but with an invite (``ChannelInvite``): the name of the installation's gateway
directory, where each gateway lists its address and token (``backends.gateway_listing``). The replica
reads the directory every ``period_s`` and keeps one ``ReplicaLink`` per gateway listed there: a new
gateway gets a channel within that period, and the link of a gateway gone from the directory drains and
closes. Until a gateway has a channel from every replica of a release it sends that release's requests
through Serve's handle, as before, so a slow directory costs speed, never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from backends.channel_wire import ChannelInvite, GatewayAddress
from backends.gateway_listing import listed_gateways
from backends.replica_link import ReplicaLink, Serve

logger = logging.getLogger(__name__)

Lookup = Callable[[], Awaitable[list[GatewayAddress]]]


def directory_lookup(invite: ChannelInvite) -> Lookup:
    """Reads the gateways listed in ``invite``'s directory (Ray's key-value store)."""

    async def lookup() -> list[GatewayAddress]:
        return await listed_gateways(invite)

    return lookup


class ReplicaLinks:
    """One ``ReplicaLink`` per gateway in the directory, kept in step with it."""

    def __init__(
        self,
        invite: ChannelInvite,
        replica: str,
        serve: Serve,
        lookup: Lookup,
        period_s: float = 1.0,
        drain_timeout_s: float = 25.0,
    ) -> None:
        self._invite = invite
        self._replica = replica
        self._serve = serve
        self._lookup = lookup
        self._period_s = period_s
        self._drain_timeout_s = drain_timeout_s
        self._links: dict[str, tuple[GatewayAddress, ReplicaLink]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()

    def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch())

    @property
    def gateways(self) -> list[str]:
        return sorted(self._links)

    @property
    def open_requests(self) -> int:
        return sum(link.open_requests for _, link in self._links.values())

    async def wait_synced(self, timeout_s: float) -> bool:
        """Whether the directory was read once within ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), timeout_s)
        return self._synced.is_set()

    async def _watch(self) -> None:
        failures = 0
        while True:
            try:
                listed = await self._lookup()
            except Exception as exc:  # the directory is unreachable now: keep the links there are
                failures += 1
                if failures == 1:
                    logger.warning(
                        "gateway directory unreachable app=%s error=%s", self._invite.app, type(exc).__name__
                    )
            else:
                failures = 0
                self._sync(listed)
                self._synced.set()
            await asyncio.sleep(self._period_s)

    def _sync(self, listed: list[GatewayAddress]) -> None:
        wanted = {address.gateway: address for address in listed}
        for gateway, (address, link) in list(self._links.items()):
            if wanted.get(gateway) != address:  # gone, or back at another address after a restart
                del self._links[gateway]
                self._close_later(link)
        for gateway, address in wanted.items():
            if gateway not in self._links:
                ticket = address.ticket(self._invite.app, self._invite.release)
                link = ReplicaLink(ticket, self._replica, self._serve)
                link.start()
                self._links[gateway] = (address, link)
                logger.info("replica channel to gateway=%s app=%s", gateway, self._invite.app)

    def _close_later(self, link: ReplicaLink) -> None:
        task = asyncio.create_task(link.close(self._drain_timeout_s))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self, drain_timeout_s: float) -> None:
        """Tell every gateway to send nothing new, let open requests finish (bounded), then disconnect."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        links = [link for _, link in self._links.values()]
        self._links.clear()
        await asyncio.gather(*(link.close(drain_timeout_s) for link in links), *self._closing)
