from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.catalog.schema import CatalogError, load_catalog
from gateway.catalog.weights import GgufPackageWeights, TinyRandomWeights, ZipPackageWeights

VALID: dict[str, Any] = {
    "models": [
        {
            "name": "m1",
            "family": "llama",
            "aliases": ["one"],
            "context_length": 2048,
            "weights": {"kind": "local", "path": "/models/m1"},
            "deployments": [{"backend": "vllm", "engine": {"dtype": "float32"}}],
        }
    ]
}


def test_repo_default_catalog_serves_smollm2_in_float32(repo_root: Path) -> None:
    catalog = load_catalog(repo_root / "models.yaml")
    model = catalog.find("smollm2")
    assert model is not None and model.name == "smollm2-135m-instruct"
    assert isinstance(model.weights, GgufPackageWeights)
    assert model.deployments[0].engine["dtype"] == "float32"


def test_alias_and_name_resolve_to_the_same_model(write_catalog: Callable[[object], Path]) -> None:
    catalog = load_catalog(write_catalog(VALID))
    assert catalog.find("one") is catalog.find("m1")
    assert catalog.find("missing") is None


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["models"][0].pop("context_length"), "models[0].context_length: Field required"),
        (lambda c: c["models"][0].update(family="gpt"), "models[0].family"),
        (lambda c: c["models"][0]["weights"].update(kind="s3"), "models[0].weights"),
        (lambda c: c["models"][0].update(deployments=[]), "models[0].deployments"),
        (lambda c: c["models"][0].update(surprise=1), "models[0].surprise: Extra inputs"),
        (
            lambda c: c["models"][0]["deployments"][0]["engine"].update(dtype="fp8"),
            "models[0].deployments[0].engine",
        ),
        (
            lambda c: c["models"][0]["deployments"][0]["engine"].update(kv_cache_gb=1),
            "engine.kv_cache_gb: Extra inputs are not permitted",
        ),
        (
            lambda c: c["models"][0]["deployments"][0].update(backend="nope"),
            "models[0].deployments[0].backend: unknown backend 'nope'",
        ),
    ],
)
def test_schema_errors_name_the_file_and_the_field(
    write_catalog: Callable[[object], Path], mutate: Callable[[dict[str, Any]], object], expected: str
) -> None:
    data = copy.deepcopy(VALID)
    mutate(data)
    path = write_catalog(data)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_duplicate_alias_across_models_is_rejected(write_catalog: Callable[[object], Path]) -> None:
    data = copy.deepcopy(VALID)
    second = copy.deepcopy(data["models"][0])
    second.update(name="m2", aliases=["one"])
    data["models"].append(second)
    with pytest.raises(CatalogError, match="'one' of model 'm2' is already used by 'm1'"):
        load_catalog(write_catalog(data))


def test_invalid_yaml_and_missing_file_are_clear(
    write_catalog: Callable[[object], Path], tmp_path: Path
) -> None:
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(write_catalog("models: [unclosed"))
    with pytest.raises(CatalogError, match="cannot read the model catalog"):
        load_catalog(tmp_path / "absent.yaml")


def test_catalog_check_command_reports_ok_and_errors(
    write_catalog: Callable[[object], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.main import main

    good = write_catalog(VALID)
    assert main(["catalog", "check", str(good)]) == 0
    assert "OK, 1 model(s)" in capsys.readouterr().out
    good.write_text(yaml.safe_dump({"models": "none"}))
    assert main(["catalog", "check", str(good)]) == 2
    assert "models: Input should be a valid list" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["production-example.yaml", "families-tiny.yaml"])
def test_shipped_family_catalogs_pass_maas_catalog_check(
    repo_root: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.main import main

    assert main(["catalog", "check", str(repo_root / "deploy" / "catalogs" / name)]) == 0
    assert "OK" in capsys.readouterr().out


def test_production_example_names_every_family_and_its_template(repo_root: Path) -> None:
    catalog = load_catalog(repo_root / "deploy" / "catalogs" / "production-example.yaml")
    assert {m.family for m in catalog.models} == {"deepseek", "glm", "qwen", "yi", "llama", "bloom"}
    assert all(m.chat_template for m in catalog.models)
    chips = {d.chip for m in catalog.models for d in m.deployments}
    assert chips == {"nvidia", "ascend", "enflame", "hexaflake", "cpu"}
    assert {d.backend for m in catalog.models for d in m.deployments} == {
        "vllm",
        "transformers",
        "openai_upstream",
    }
    assert catalog.chip_kinds()["hexaflake"].ray_resource == "HXF"  # declared in the file, as data


def test_families_tiny_serves_one_tiny_random_model_per_family(repo_root: Path) -> None:
    catalog = load_catalog(repo_root / "deploy" / "catalogs" / "families-tiny.yaml")
    assert sorted(m.family for m in catalog.models) == ["bloom", "deepseek", "glm", "llama", "qwen", "yi"]
    assert all(isinstance(m.weights, TinyRandomWeights) for m in catalog.models)


def test_tiny_random_weights_need_a_chat_template(write_catalog: Callable[[object], Path]) -> None:
    data = copy.deepcopy(VALID)
    data["models"][0]["weights"] = {"kind": "tiny_random", "architecture": "qwen3"}
    with pytest.raises(CatalogError, match=r"models\[0\]: Value error, tiny_random weights need"):
        load_catalog(write_catalog(data))
    data["models"][0]["chat_template"] = "qwen3"
    assert isinstance(load_catalog(write_catalog(data)).models[0].weights, TinyRandomWeights)


def test_unknown_chat_template_or_architecture_is_rejected(write_catalog: Callable[[object], Path]) -> None:
    data = copy.deepcopy(VALID)
    data["models"][0]["chat_template"] = "chatml"
    with pytest.raises(CatalogError, match="'chatml' is not shipped; known: bloom, deepseek_r1"):
        load_catalog(write_catalog(data))
    data["models"][0].update(chat_template="llama3", weights={"kind": "tiny_random", "architecture": "gpt2"})
    with pytest.raises(CatalogError, match=r"models\[0\].weights.architecture"):
        load_catalog(write_catalog(data))


def test_a_models_queue_bound_is_its_deployments_together(write_catalog: Callable[[object], Path]) -> None:
    from backends.token_count import PromptCounter
    from gateway.catalog.routing import RoutedModel
    from tests.gateway.conftest import NoClient

    data = copy.deepcopy(VALID)
    data["models"][0]["deployments"] = [
        {"replicas": 2, "max_ongoing_requests": 8},  # queue as deep as the replicas take: 16
        {"replicas": 1, "max_ongoing_requests": 4, "max_queued_requests": 0},
    ]
    entry = load_catalog(write_catalog(data)).models[0]
    routed = RoutedModel.from_entry(entry, clients=[NoClient(), NoClient()], prompt_counter=PromptCounter())
    assert (routed.capacity, routed.max_queued) == (20, 16)
    data["models"][0]["deployments"] = [{"max_queued_requests": -1}]
    with pytest.raises(CatalogError, match="max_queued_requests"):
        load_catalog(write_catalog(data))


def with_model(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data["models"][0].update(changes)
    return data


def test_models_are_chat_models_unless_they_say_otherwise(write_catalog: Callable[[object], Path]) -> None:
    assert load_catalog(write_catalog(VALID)).models[0].task == "chat"
    assert load_catalog(write_catalog(with_model(task="embed"))).models[0].task == "embed"
    with pytest.raises(CatalogError, match="task"):
        load_catalog(write_catalog(with_model(task="translate")))


def test_repo_default_catalog_has_a_packaged_embedding_model(repo_root: Path) -> None:
    model = load_catalog(repo_root / "models.yaml").find("minilm")
    assert model is not None and model.task == "embed" and model.name == "all-minilm-l6-v2"
    assert isinstance(model.weights, ZipPackageWeights) and model.weights.package == "all_minilm_l6_v2"


def test_embedding_models_have_no_output_price(write_catalog: Callable[[object], Path]) -> None:
    priced = with_model(task="embed", pricing={"input_per_million": 1, "output_per_million": 2})
    with pytest.raises(CatalogError, match="generates no text"):
        load_catalog(write_catalog(priced))


def test_a_backend_without_pooling_cannot_serve_embed_models(write_catalog: Callable[[object], Path]) -> None:
    upstream = {"backend": "openai_upstream", "engine": {"base_url": "http://127.0.0.1:9/v1", "model": "x"}}
    with pytest.raises(CatalogError, match="backend 'openai_upstream' does not serve rerank models"):
        load_catalog(write_catalog(with_model(task="rerank", deployments=[upstream])))
    for backend in ("vllm", "transformers"):
        data = with_model(task="embed", deployments=[{"backend": backend}])
        assert load_catalog(write_catalog(data)).models[0].task == "embed"


def test_tool_format_comes_from_the_template_and_needs_constrained_decoding(
    write_catalog: Callable[[object], Path],
) -> None:
    from backends.token_count import PromptCounter
    from gateway.catalog.routing import RoutedModel
    from tests.gateway.conftest import NoClient

    def routed(**fields: object) -> RoutedModel:
        data = copy.deepcopy(VALID)
        data["models"][0].update(fields)
        entry = load_catalog(write_catalog(data)).models[0]
        return RoutedModel.from_entry(entry, clients=[NoClient()], prompt_counter=PromptCounter())

    qwen = routed(chat_template="qwen2_5")
    assert qwen.tool_parser == "hermes" and qwen.constrained_decoding
    defaults = {
        t: routed(chat_template=t).tool_parser for t in ("llama3", "qwen3", "deepseek_v3", "deepseek_r1")
    }
    assert defaults == {
        "llama3": "llama3_json",
        "qwen3": "hermes",
        "deepseek_v3": "deepseek_v3",
        "deepseek_r1": "deepseek_v3",
    }
    # No tool format (Yi, BLOOM, DeepSeek-V2), or one no vLLM parser reads (GLM-4): auto is refused.
    for template in ("yi", "bloom", "deepseek_v2", "glm4"):
        assert routed(chat_template=template).tool_parser is None, template
    assert routed(chat_template="yi", tool_parser="hermes").tool_parser == "hermes"
    upstream = routed(
        chat_template="qwen2_5",
        deployments=[
            {"backend": "openai_upstream", "engine": {"base_url": "http://127.0.0.1:9/v1", "model": "q"}}
        ],
    )
    assert not upstream.tool_choice_auto and not upstream.constrained_decoding
    declared = routed(
        chat_template="qwen2_5",
        deployments=[
            {
                "backend": "openai_upstream",
                "engine": {"base_url": "http://127.0.0.1:9/v1", "model": "q", "structured_outputs": True},
            }
        ],
    )
    assert declared.constrained_decoding and not declared.tool_choice_auto  # auto is declared apart


def test_autoscaling_sets_capacity_by_max_replicas_and_excludes_a_fixed_replica_count(
    write_catalog: Callable[[object], Path],
) -> None:
    scaled = with_model(
        deployments=[{"max_ongoing_requests": 4, "autoscaling": {"min_replicas": 0, "max_replicas": 3}}]
    )
    deployment = load_catalog(write_catalog(scaled)).models[0].deployments[0]
    assert deployment.capacity == 12 and deployment.max_replicas == 3
    assert deployment.autoscaling is not None
    config = deployment.autoscaling.serve_config()
    assert (config["min_replicas"], config["initial_replicas"], config["max_replicas"]) == (0, 0, 3)
    both = with_model(deployments=[{"replicas": 2, "autoscaling": {"min_replicas": 1, "max_replicas": 3}}])
    with pytest.raises(CatalogError, match="replicas or autoscaling, not both"):
        load_catalog(write_catalog(both))
    upside_down = with_model(deployments=[{"autoscaling": {"min_replicas": 4, "max_replicas": 3}}])
    with pytest.raises(CatalogError, match="min_replicas 4 is above max_replicas 3"):
        load_catalog(write_catalog(upside_down))


def test_the_first_deployment_keeps_the_models_name_and_the_others_are_named_by_pool(
    write_catalog: Callable[[object], Path],
) -> None:
    many = with_model(deployments=[{"pool": "own"}, {"pool": "eu"}, {"pool": "eu"}])
    assert load_catalog(write_catalog(many)).models[0].deployment_names() == [
        VALID["models"][0]["name"],
        f"{VALID['models'][0]['name']}@eu",
        f"{VALID['models'][0]['name']}@eu.2",
    ]
    with pytest.raises(CatalogError, match="pool"):
        load_catalog(write_catalog(with_model(deployments=[{"pool": "Bad_Pool"}])))
