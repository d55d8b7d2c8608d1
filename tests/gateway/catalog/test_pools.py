"""Pools and their money: owned, rented by the chip-hour, rented by the token; marginal vs amortised."""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog.pools import Pool
from gateway.catalog.schema import CatalogError, load_catalog

OWN = {
    "name": "own",
    "kind": "owned",
    "chips": {
        "nvidia": {
            "purchase_price": 26280,  # 26280 / (5 * 8760) = 0.6 per hour
            "power_and_hosting_per_hour": "0.4",
            "power_per_hour": "0.3",
        }
    },
}
RENTED = {
    "name": "rented",
    "kind": "managed",
    "chips": {"nvidia": {"hourly_fee": "2.4"}},
    "billing_granularity_minutes": 1,
    "minimum_rental_minutes": 10,
}
API = {
    "name": "api",
    "kind": "managed",
    "per_token": {
        "input_per_million": "0.1",
        "output_per_million": "0.4",
        "requests_per_minute": 600,
        "tokens_per_minute": 400000,
    },
}
UPSTREAM = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
THREE_POOLS: dict[str, Any] = {
    "pools": [OWN, RENTED, API],
    "models": [
        {
            "name": "m",
            "family": "qwen",
            "context_length": 4096,
            "weights": {"kind": "local", "path": "/models/m"},
            "deployments": [
                {"chip": "nvidia", "pool": "own", "chips_per_replica": 1, "tokens_per_second": 1000},
                {"chip": "nvidia", "pool": "rented", "chips_per_replica": 1, "tokens_per_second": 1000},
                {
                    "backend": "openai_upstream",
                    "pool": "api",
                    "engine": {"base_url": "http://127.0.0.1:1/v1", "model": "m"},
                },
            ],
        }
    ],
}


def test_owned_marginal_cost_is_power_alone_and_amortised_adds_depreciation() -> None:
    own = Pool.model_validate(OWN)
    assert own.marginal_chip_hour_cost("nvidia") == Decimal("0.3")
    assert own.chip_hour_cost("nvidia") == Decimal("1.0")
    marginal = own.token_cost("nvidia", 1, 1000, marginal=True)
    amortised = own.token_cost("nvidia", 1, 1000, marginal=False)
    assert marginal is not None and amortised is not None
    # 3.6M output tokens an hour: 0.3 / 3.6 per 1M tokens against 1.0 / 3.6
    assert round(marginal.output_per_million, 6) == round(Decimal("0.3") / Decimal("3.6"), 6)
    assert round(amortised.output_per_million, 6) == round(Decimal("1.0") / Decimal("3.6"), 6)
    assert marginal.input_per_million == 0


def test_owned_marginal_cost_defaults_to_power_and_hosting() -> None:
    own = Pool.model_validate(
        {**OWN, "chips": {"cpu": {"purchase_price": 1, "power_and_hosting_per_hour": 1}}}
    )
    assert own.marginal_chip_hour_cost("cpu") == 1


def test_rented_chip_hours_are_paid_in_whole_periods_and_at_least_the_minimum() -> None:
    rented = Pool.model_validate(RENTED)
    assert rented.marginal_chip_hour_cost("nvidia") == rented.chip_hour_cost("nvidia") == Decimal("2.4")
    assert rented.billed_seconds(30) == 600  # the 10-minute minimum
    assert rented.billed_seconds(601) == 660  # a started minute is paid whole
    assert rented.release_at(rented_at=100, now=200) == 700  # not before the minimum ends
    assert rented.release_at(rented_at=100, now=730) == 760  # at the end of the current minute
    hourly = Pool.model_validate(
        {**RENTED, "billing_granularity_minutes": None, "minimum_rental_minutes": None}
    )
    assert hourly.billed_seconds(1) == 3600


def test_a_rented_api_costs_its_token_prices() -> None:
    api = Pool.model_validate(API)
    cost = api.token_cost("cpu", 0, None, marginal=True)
    assert cost is not None and cost.of(1_000_000, 500_000) == Decimal("0.3")


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        ({**OWN, "per_token": API["per_token"]}, "billing periods and per_token prices are for managed"),
        ({**OWN, "minimum_rental_minutes": 10}, "billing periods and per_token prices are for managed"),
        ({**API, "chips": RENTED["chips"]}, "is paid per token: it has no chips"),
        ({**RENTED, "minimum_rental_minutes": 0}, "greater than or equal to 1"),
        ({**RENTED, "billing_granularity_minutes": 60}, "shorter than one billing period"),
        ({**RENTED, "chips": {"nvidia": {"hourly_fee": 1, "purchase_price": 9}}}, "are for owned pools"),
        ({**OWN, "chips": {"nvidia": {"purchase_price": 1, "hourly_fee": 2}}}, "has no hourly_fee"),
        ({**OWN, "chips": {"nvidia": {"purchase_price": 1, "power_per_hour": 2}}}, "cannot exceed it"),
        ({**API, "per_token": {"input_per_million": 1}}, "pools[2].per_token.output_per_million"),
        ({**API, "per_token": {**API["per_token"], "requests_per_minute": 0}}, "requests_per_minute"),
    ],
)
def test_pool_mistakes_are_refused_with_the_field_named(
    write_catalog: Callable[[object], Path], pool: dict[str, Any], expected: str
) -> None:
    data = copy.deepcopy(THREE_POOLS)
    index = [p["name"] for p in data["pools"]].index(pool["name"])
    data["pools"][index] = pool
    with pytest.raises(CatalogError, match="pools") as info:
        load_catalog(write_catalog(data))
    assert expected in str(info.value)


def test_three_pools_validate_and_give_each_deployment_both_costs(
    write_catalog: Callable[[object], Path],
) -> None:
    catalog = load_catalog(write_catalog(THREE_POOLS))
    model = catalog.models[0]
    assert model.routing.policy == "own_first"
    own, rented, api = model.deployments
    own_marginal = catalog.token_cost(own, marginal=True)
    own_books = catalog.token_cost(own, marginal=False)
    assert own_marginal is not None and own_books is not None
    assert own_marginal.output_per_million < own_books.output_per_million
    assert catalog.token_cost(rented, marginal=True) == catalog.token_cost(rented, marginal=False)
    assert catalog.token_cost(api, marginal=True) == catalog.token_cost(api, marginal=False)


def test_routing_is_a_policy_name_or_an_object(write_catalog: Callable[[object], Path]) -> None:
    data = copy.deepcopy(THREE_POOLS)
    data["models"][0]["routing"] = "cheapest"
    assert load_catalog(write_catalog(data)).models[0].routing.policy == "cheapest"
    data["models"][0]["routing"] = {"policy": "ordered", "ttft_slo_s": 2, "return_ratio": 0.5}
    routing = load_catalog(write_catalog(data)).models[0].routing
    assert (routing.policy, routing.ttft_slo_s, routing.return_ratio) == ("ordered", 2, 0.5)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda m: m.update(routing="random"), "models[0].routing.policy: Input should be 'own_first'"),
        (lambda m: m.update(routing={"policy": "cheapest", "spill": 1}), "routing.spill: Extra inputs"),
        (lambda m: m["deployments"][0].update(weight=2), "weights apply to routing weighted, not own_first"),
        (
            lambda m: m["deployments"][1].pop("tokens_per_second"),
            "deployments[1] in pool 'rented' needs tokens_per_second (routing own_first",
        ),
        (
            lambda m: (m.update(routing="cheapest"), m["deployments"][0].pop("tokens_per_second")),
            "deployments[0] in pool 'own' needs tokens_per_second (routing cheapest",
        ),
    ],
)
def test_routing_mistakes_are_refused_clearly(
    write_catalog: Callable[[object], Path], mutate: Callable[[dict[str, Any]], object], expected: str
) -> None:
    data = copy.deepcopy(THREE_POOLS)
    mutate(data["models"][0])
    with pytest.raises(CatalogError) as info:
        load_catalog(write_catalog(data))
    assert expected in str(info.value)


def test_weighted_routing_takes_weights_and_ordered_needs_no_costs(
    write_catalog: Callable[[object], Path],
) -> None:
    data = copy.deepcopy(THREE_POOLS)
    data["models"][0]["routing"] = "weighted"
    data["models"][0]["deployments"][0]["weight"] = 7
    assert load_catalog(write_catalog(data)).models[0].deployments[0].weight == 7
    data = copy.deepcopy(THREE_POOLS)
    data["models"][0]["routing"] = "ordered"
    for deployment in data["models"][0]["deployments"]:
        deployment.pop("tokens_per_second", None)
    assert load_catalog(write_catalog(data)).models[0].routing.policy == "ordered"


def test_the_readme_pools_example_validates(repo_root: Path, write_catalog: Callable[[object], Path]) -> None:
    import yaml

    readme = (repo_root / "README.md").read_text()
    start = readme.index("```yaml\npools:") + len("```yaml\n")
    pools = yaml.safe_load(readme[start : readme.index("```", start)])["pools"]
    catalog = load_catalog(write_catalog({**copy.deepcopy(THREE_POOLS), "pools": pools}))
    assert [p.name for p in catalog.pools] == ["own", "rented", "api"]
