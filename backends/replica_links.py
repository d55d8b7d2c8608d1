"""A replica's channels to every gateway of its installation.

Gateways come and go (a second gateway attaches, one stops or dies), so a replica is not deployed with one
gateway's address but with an invite (``ChannelInvite``): the name of the installation's gateway
directory, where each gateway lists its address and token (``backends.gateway_listing``). The replica
reads the directory and keeps one ``ReplicaLink`` per gateway listed there; the link of a gateway gone from
the directory drains and closes.

How often it reads: every ``period_s`` while the directory changes or a link is not connected, and half as
often after each read that found nothing new, down to once every ``steady_period_s``. A lost connection (a
gateway stopped, or restarted at another address) brings the next read forward at once. So a steady
installation costs its directory a read per replica every few seconds instead of every second (each read is
two calls to Ray's GCS, and a wake-up of the replica beside the engine), and a gateway that attaches to a
steady installation gets its channels within ``steady_period_s``. Until a gateway has a channel from every
replica of a release it sends that release's requests through Serve's handle, as before, so a slow
directory costs speed, never answers.
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
        steady_period_s: float = 8.0,
        drain_timeout_s: float = 25.0,
    ) -> None:
        self._invite = invite
        self._replica = replica
        self._serve = serve
        self._lookup = lookup
        self._period_s = period_s
        self._steady_period_s = max(steady_period_s, period_s)
        self._poke = asyncio.Event()
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

    def poke(self) -> None:
        """Read the directory now rather than at the next period (a link was lost)."""
        self._poke.set()

    async def _watch(self) -> None:
        failures, wait_s = 0, self._period_s
        while True:
            steady = False
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
                changed = self._sync(listed)
                self._synced.set()
                steady = not changed and all(link.connected for _, link in self._links.values())
            wait_s = min(wait_s * 2, self._steady_period_s) if steady else self._period_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), wait_s)
            self._poke.clear()

    def _sync(self, listed: list[GatewayAddress]) -> bool:
        """Open a link to each listed gateway that has none, close those of gateways no longer listed;
        whether anything changed."""
        wanted = {address.gateway: address for address in listed}
        changed = False
        for gateway, (address, link) in list(self._links.items()):
            if wanted.get(gateway) != address:  # gone, or back at another address after a restart
                del self._links[gateway]
                self._close_later(link)
                changed = True
        for gateway, address in wanted.items():
            if gateway not in self._links:
                ticket = address.ticket(self._invite.app, self._invite.release)
                link = ReplicaLink(ticket, self._replica, self._serve, on_lost=self.poke)
                link.start()
                self._links[gateway] = (address, link)
                changed = True
                logger.info("replica channel to gateway=%s app=%s", gateway, self._invite.app)
        return changed

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
