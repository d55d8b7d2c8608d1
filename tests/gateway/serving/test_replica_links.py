"""A replica's channels to every gateway in its installation's directory, over real loopback sockets: two
gateway hubs, one replica, and a directory the test edits (the directory actor itself is proven by the
end-to-end suite's two gateways on a Ray cluster)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from backends.channel_wire import ChannelInvite, GatewayAddress
from backends.replica_links import ReplicaLinks
from gateway.serving.replica_channels import ChannelHub, ReplicaChannel
from tests.gateway.serving.test_replica_channels import APP, Engine, chunk, collect, request, until

INVITE = ChannelInvite("maas-gateways", "maas", APP, "r1")


class Directory:
    """The gateways a test lists; a lookup that can be made to fail."""

    def __init__(self) -> None:
        self.listed: list[GatewayAddress] = []
        self.down = False
        self.reads: list[float] = []

    async def lookup(self) -> list[GatewayAddress]:
        self.reads.append(asyncio.get_running_loop().time())
        if self.down:
            raise ConnectionError("directory unreachable")
        return list(self.listed)


@contextlib.asynccontextmanager
async def replica_of(
    *listed: GatewayAddress, steady_period_s: float = 0.2
) -> AsyncIterator[tuple[Directory, ReplicaLinks, Engine]]:
    """One replica's links, reading a directory that lists ``listed`` (the test edits it)."""
    directory, engine = Directory(), Engine()
    directory.listed = list(listed)
    links = ReplicaLinks(
        INVITE, "replica-1", engine.serve, directory.lookup, period_s=0.05, steady_period_s=steady_period_s
    )
    links.start()
    try:
        yield directory, links, engine
    finally:
        await links.close(drain_timeout_s=1)


@pytest.fixture
async def hubs() -> AsyncIterator[list[ChannelHub]]:
    hubs = [ChannelHub("127.0.0.1"), ChannelHub("127.0.0.1")]
    for hub in hubs:
        await hub.serve()
    yield hubs
    for hub in hubs:
        hub.close()
    await asyncio.sleep(0.05)


async def test_a_replica_opens_a_channel_to_every_gateway_listed_and_serves_each(
    hubs: list[ChannelHub],
) -> None:
    async with replica_of(hubs[0].address("g1")) as (directory, links, engine):
        await until(lambda: len(hubs[0].open_channels(APP, "r1")) == 1)
        directory.listed.append(hubs[1].address("g2"))  # a gateway attaches later
        await until(lambda: len(hubs[1].open_channels(APP, "r1")) == 1)
        assert links.gateways == ["g1", "g2"]
        for n, hub in enumerate(hubs):
            channel = await hub.route(APP, "r1", replicas=1, max_ongoing=4).acquire()
            assert isinstance(channel, ReplicaChannel)
            engine.feed(f"req-{n}", chunk("hello", 1, finish=True))
            engine.feed(f"req-{n}", None)
            chunks = await collect(channel.stream(request(f"req-{n}")))
            assert [c.choices[0].text for c in chunks] == ["hello"]
    assert all(not hub.open_channels(APP, "r1") for hub in hubs)


async def test_a_gateway_gone_from_the_directory_loses_its_channel_and_the_others_keep_theirs(
    hubs: list[ChannelHub],
) -> None:
    async with replica_of(hubs[0].address("g1"), hubs[1].address("g2")) as (directory, links, _):
        await until(lambda: all(len(h.open_channels(APP, "r1")) == 1 for h in hubs))
        directory.listed = [hubs[1].address("g2")]
        await until(lambda: not hubs[0].open_channels(APP, "r1"))
        assert len(hubs[1].open_channels(APP, "r1")) == 1 and links.gateways == ["g2"]


async def test_an_unreachable_directory_keeps_the_channels_there_are(hubs: list[ChannelHub]) -> None:
    async with replica_of(hubs[0].address("g1")) as (directory, links, _):
        assert await links.wait_synced(5)
        await until(lambda: len(hubs[0].open_channels(APP, "r1")) == 1)
        directory.down = True
        await asyncio.sleep(0.3)  # several failed reads
        assert len(hubs[0].open_channels(APP, "r1")) == 1 and links.gateways == ["g1"]


async def test_a_gateway_back_at_another_address_gets_a_new_channel(hubs: list[ChannelHub]) -> None:
    async with replica_of(hubs[0].address("g1")) as (directory, _, _):
        await until(lambda: len(hubs[0].open_channels(APP, "r1")) == 1)
        directory.listed = [hubs[1].address("g1")]  # the same id, restarted on another port
        await until(lambda: not hubs[0].open_channels(APP, "r1"))
        await until(lambda: len(hubs[1].open_channels(APP, "r1")) == 1)


async def test_a_steady_directory_is_read_less_and_less_often_down_to_the_steady_period(
    hubs: list[ChannelHub],
) -> None:
    async with replica_of(hubs[0].address("g1"), steady_period_s=0.4) as (directory, _, _):
        await until(lambda: len(hubs[0].open_channels(APP, "r1")) == 1)
        await asyncio.sleep(2.0)
        gaps = [b - a for a, b in zip(directory.reads, directory.reads[1:], strict=False)]
        # 0.05 s while the link opens, then 0.1, 0.2 and 0.4 s; at 0.05 s throughout it would be ~40 reads
        assert len(directory.reads) < 12, gaps
        assert max(gaps) == pytest.approx(0.4, abs=0.1)
        assert gaps[-1] == pytest.approx(0.4, abs=0.1)


async def test_a_lost_channel_has_the_directory_read_at_once_and_a_moved_gateway_found(
    hubs: list[ChannelHub],
) -> None:
    async with replica_of(hubs[0].address("g1"), steady_period_s=30) as (directory, links, _):
        await until(lambda: len(hubs[0].open_channels(APP, "r1")) == 1)
        # steady: reads 0.1, 0.2, 0.4, 0.8 and 1.6 s apart, the next one 3.2 s after the last
        await asyncio.sleep(3.5)
        reads = len(directory.reads)
        directory.listed = [hubs[1].address("g1")]  # g1 restarts on another port...
        hubs[0].close()  # ...and its old listener and channel are gone
        await until(lambda: len(hubs[1].open_channels(APP, "r1")) == 1, timeout_s=1.5)
        assert len(directory.reads) > reads and links.gateways == ["g1"]
