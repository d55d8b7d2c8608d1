"""The gateway directory's rules over a store (a dict here; Ray's GCS key-value store on a real cluster is
proven below and by ``tests/e2e/test_gateways.py``)."""

from __future__ import annotations

import pytest

from backends.channel_wire import GatewayAddress
from backends.gateway_listing import ALIVE_S
from gateway.catalog.schema import load_catalog, parse_catalog
from gateway.serving import gateway_directory
from gateway.serving.gateway_directory import ATTACHED, DEPLOYING, GatewayDirectory, directory_name
from tests.conftest import REPO
from tests.gateway.serving.conftest import MemoryStore

ADDRESS = GatewayAddress("g1", "127.0.0.1", 4000, b"token")


def test_installations_have_directories_of_their_own() -> None:
    assert directory_name(None) == "maas-gateways"
    assert directory_name("blue") == "blue_gateways" != directory_name("green")
    with pytest.raises(ValueError):
        directory_name("Not_valid")


def test_replicas_see_the_live_gateways_that_listen_for_channels() -> None:
    directory = GatewayDirectory(MemoryStore())
    directory.register("g1", ADDRESS, DEPLOYING)
    directory.register("g2", None, ATTACHED)  # replica channels switched off there
    assert directory.gateways() == [ADDRESS]
    assert directory.members() == {"g1": DEPLOYING, "g2": ATTACHED}
    directory.unregister("g1")
    assert directory.gateways() == [] and directory.members() == {"g2": ATTACHED}


def test_a_gateway_silent_for_too_long_is_no_longer_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    directory = GatewayDirectory(MemoryStore(), clock=lambda: now[0])
    directory.register("g1", ADDRESS, DEPLOYING)
    now[0] += ALIVE_S - 1
    assert directory.gateways() == [ADDRESS]
    directory.register("g1", ADDRESS, DEPLOYING)  # its heartbeat
    now[0] += ALIVE_S + 1
    assert directory.gateways() == [] and directory.members() == {}


def test_each_publication_has_a_new_version_and_round_trips_the_catalog() -> None:
    directory = GatewayDirectory(MemoryStore())
    assert directory.published() is None
    catalog = load_catalog(REPO / "models.yaml")
    data = catalog.model_dump(mode="json", exclude_unset=True)
    assert directory.publish("g1", data, {"model-a": "r1"}) == 1
    assert directory.publish("g1", data, {"model-a": "r2"}) == 2
    published = directory.published()
    assert published is not None and published.releases == {"model-a": "r2"} and published.deployer == "g1"
    assert parse_catalog(published.catalog, "published") == catalog


def test_the_deployer_accounts_for_replica_time_else_the_first_serving_attached_gateway() -> None:
    directory = GatewayDirectory(MemoryStore())
    assert directory.register("g2", None, ATTACHED) == "g2"
    assert directory.register("g3", None, ATTACHED) == "g2"
    assert directory.register("g9", None, DEPLOYING) == "g9"
    directory.unregister("g9")
    assert directory.accountant() == "g2"
    directory.register("g1", None, gateway_directory.ATTACHING)  # not serving yet: not the accountant
    assert directory.accountant() == "g2"


def test_the_directory_says_how_long_ago_a_gateway_beat(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    directory = GatewayDirectory(MemoryStore(), clock=lambda: now[0])
    directory.register("g1", ADDRESS, DEPLOYING)
    now[0] += 3
    assert directory.seen_ago("g1") == 3 and directory.seen_ago("g2") is None
