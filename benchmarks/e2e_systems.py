"""The real-model systems of the end-to-end benchmark, each a context manager yielding an ``Endpoint``.

All three serve the SmolLM2 folder that ``maas serve`` prepared, with the engine settings of the
gateway's ``models.yaml`` deployment (read from it, so a change there reaches every system; the engine's
process layout is the gateway's own choice, see ``EngineSettings.single_process``):
direct vLLM (its OpenAI server), our gateway (``maas serve models.yaml``) and Ray Serve LLM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from backends.vllm_single_process import SINGLE_PROCESS_ENV, engine_core_env, single_process_worker
from benchmarks.maas_server import MODELS_DIR, process_roles, start_maas
from benchmarks.procs import REPO, VENV_PYTHON, Server, free_port, start_server
from benchmarks.venvs import ensure_venv

logger = logging.getLogger(__name__)

CATALOG = REPO / "models.yaml"
SERVED_NAME = "smollm2"


@dataclass
class Endpoint:
    system: str
    description: str
    base_url: str
    model: str
    api_key: str | None = None
    cpu_pids: Callable[[], dict[str, list[int]]] = dict
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineSettings:
    """The engine options of the catalog's first model, as each system spells them."""

    weights: Path
    dtype: str
    enforce_eager: bool
    max_model_len: int
    max_num_seqs: int
    kv_cache_gib: float
    reserved_cores: int

    @property
    def env(self) -> dict[str, str]:
        return {
            "VLLM_TARGET_DEVICE": "cpu",
            "VLLM_CPU_KVCACHE_SPACE": f"{self.kv_cache_gib:g}",
            "VLLM_CPU_NUM_OF_RESERVED_CPU": str(self.reserved_cores),
            "VLLM_USE_AOT_COMPILE": "0",
            "HF_HUB_OFFLINE": "1",
        }

    @property
    def engine_kwargs(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "enforce_eager": self.enforce_eager,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
        }

    @property
    def single_process(self) -> bool:
        """Whether the gateway's vllm backend runs this engine's model worker in its engine-core process
        (``backends.vllm_single_process``). The peers run vLLM as its authors ship it (three processes),
        as they run without the gateway's gloo plugin; the engine alone runs it as the gateway does."""
        return single_process_worker("cpu", 1, self.reserved_cores)

    @property
    def single_process_env(self) -> dict[str, str]:
        """The environment the gateway spawns such an engine core with: vLLM's switch and the OpenMP
        threads and binding vLLM would give the worker."""
        return (
            _single_process_env(self.weights, self.dtype, self.max_model_len) if self.single_process else {}
        )


@functools.cache
def _single_process_env(weights: Path, dtype: str, max_model_len: int) -> dict[str, str]:
    """What the vllm backend spawns a one-rank CPU engine core with (``backends.vllm_single_process``)."""
    return engine_core_env({"model": str(weights), "dtype": dtype, "max_model_len": max_model_len})


def engine_settings() -> EngineSettings:
    """Settings of ``models.yaml``'s first model and its prepared weights folder."""
    from backends.vllm_backend import VLLMOptions
    from gateway.catalog.model_prep import weights_path
    from gateway.catalog.schema import load_catalog
    from gateway.catalog.weights import GgufPackageWeights

    model = load_catalog(CATALOG).models[0]
    options = VLLMOptions.model_validate(model.deployments[0].engine)
    weights = Path(weights_path(model, MODELS_DIR))
    if isinstance(model.weights, GgufPackageWeights) and not (weights / "config.json").is_file():
        raise FileNotFoundError(
            f"{weights} is not prepared; run `./dev.sh serve` once (or MAAS_MODELS_DIR=...)"
        )
    return EngineSettings(
        weights=weights,
        dtype=options.dtype,
        enforce_eager=options.enforce_eager,
        max_model_len=options.max_model_len or model.context_length,
        max_num_seqs=options.max_num_seqs,
        kv_cache_gib=options.kv_cache_gib or 1,
        reserved_cores=options.cpu_reserved_cores,
    )


def _chat_ok(model: str, api_key: str | None = None) -> Callable[[httpx.Client], bool]:
    """Readiness: one short chat completion answers 200 (also warms the engine up)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}

    def probe(client: httpx.Client) -> bool:
        return client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200

    return probe


@contextlib.contextmanager
def _running(server: Server, probe: Callable[[httpx.Client], bool], timeout_s: float) -> Iterator[float]:
    try:
        yield server.wait_ready(probe, timeout_s=timeout_s, interval_s=1.0)
    finally:
        server.stop(grace_s=60)


@contextlib.contextmanager
def vllm_direct(
    settings: EngineSettings,
    log_dir: Path,
    *,
    extra_args: Sequence[str] = (),
    extra_env: dict[str, str] | None = None,
    system: str = "vllm-direct",
    description: str = "vLLM's own OpenAI server (vllm.entrypoints.launchers.api_server.entry)",
) -> Iterator[Endpoint]:
    port = free_port()
    command = [
        str(VENV_PYTHON),
        "-m",
        "vllm.entrypoints.launchers.api_server.entry",
        f"--model={settings.weights}",
        f"--served-model-name={SERVED_NAME}",
        f"--dtype={settings.dtype}",
        f"--max-model-len={settings.max_model_len}",
        f"--max-num-seqs={settings.max_num_seqs}",
        "--disable-log-stats",  # as the gateway's backend does
        "--disable-uvicorn-access-log",  # the gateway logs no access lines either
        "--host=127.0.0.1",
        f"--port={port}",
        *extra_args,
    ]
    if settings.enforce_eager:
        command.append("--enforce-eager")
    server = start_server(
        system, command, port=port, log_dir=log_dir, env={**os.environ, **settings.env, **(extra_env or {})}
    )
    with _running(server, _chat_ok(SERVED_NAME), timeout_s=300) as seconds:
        yield Endpoint(
            system=system,
            description=description,
            base_url=server.base_url,
            model=SERVED_NAME,
            cpu_pids=lambda: process_roles(server.pid),
            extra={"ready_s": round(seconds, 1)},
        )


def catalog_for(settings: EngineSettings, folder: Path) -> Path:
    """``models.yaml``, or a copy of it in ``folder`` whose first deployment reserves the settings' cores."""
    if settings.reserved_cores == engine_settings().reserved_cores:
        return CATALOG
    catalog = yaml.safe_load(CATALOG.read_text())
    catalog["models"][0]["deployments"][0]["engine"]["cpu_reserved_cores"] = settings.reserved_cores
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"models-reserved-{settings.reserved_cores}.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return path


@contextlib.contextmanager
def maas(
    settings: EngineSettings,
    log_dir: Path,
    *,
    system: str = "maas",
    extra_env: dict[str, str] | None = None,
    hop: str = "replica channel",
) -> Iterator[Endpoint]:
    catalog = catalog_for(settings, log_dir)
    gateway = start_maas(catalog, log_dir=log_dir, ready_timeout_s=300, extra_env=extra_env)
    try:
        seconds = gateway.server.wait_ready(_chat_ok(SERVED_NAME, gateway.key), timeout_s=120)
        yield Endpoint(
            system=system,
            description=f"our gateway: `maas serve models.yaml` ({hop} to a Ray Serve replica → vLLM)"
            + (f", with {extra_env}" if extra_env else ""),
            base_url=gateway.server.base_url,
            model=SERVED_NAME,
            api_key=gateway.key,
            cpu_pids=lambda: process_roles(gateway.server.pid),
            extra={"first_answer_after_health_s": round(seconds, 1)},
        )
    finally:
        gateway.server.stop(grace_s=90)


@contextlib.contextmanager
def ray_serve_llm(settings: EngineSettings, log_dir: Path) -> Iterator[Endpoint]:
    venv = ensure_venv("ray-serve-llm", ["pyarrow>=17"], site_packages_of=REPO / ".venv")
    port = free_port()
    command = [
        str(venv / "bin" / "python"),
        "-m",
        "benchmarks.ray_serve_llm_app",
        f"--model={settings.weights}",
        f"--name={SERVED_NAME}",
        f"--port={port}",
        f"--engine-kwargs={json.dumps(settings.engine_kwargs)}",
        f"--engine-env={json.dumps(settings.env)}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = start_server("ray-serve-llm", command, port=port, log_dir=log_dir, env=env)
    with _running(server, _chat_ok(SERVED_NAME), timeout_s=420) as seconds:
        yield Endpoint(
            system="ray-serve-llm",
            description="Ray Serve LLM: build_openai_app (Serve proxy → ingress → LLMServer → vLLM), "
            "CPU placement bundle",
            base_url=server.base_url,
            model=SERVED_NAME,
            cpu_pids=lambda: process_roles(server.pid),
            extra={"ready_s": round(seconds, 1)},
        )


SystemFactory = Callable[[EngineSettings, Path], contextlib.AbstractContextManager[Endpoint]]
SYSTEMS: dict[str, SystemFactory] = {
    "vllm-direct": vllm_direct,
    "maas": maas,
    "ray-serve-llm": ray_serve_llm,
}


def _one_core_free(factory: SystemFactory, system: str) -> SystemFactory:
    """``factory`` with the engine's threads kept off one core (vLLM's VLLM_CPU_NUM_OF_RESERVED_CPU), so
    the processes between client and engine have a core the engine does not use, as on an accelerator."""

    @contextlib.contextmanager
    def variant(settings: EngineSettings, log_dir: Path) -> Iterator[Endpoint]:
        with factory(dataclasses.replace(settings, reserved_cores=settings.reserved_cores + 1), log_dir) as e:
            yield dataclasses.replace(e, system=system, description=e.description + ", one core kept free")

    return variant


@contextlib.contextmanager
def _same_layout_as_the_gateway(settings: EngineSettings, log_dir: Path) -> Iterator[Endpoint]:
    layout = settings.single_process_env
    threads = {
        name: value for name, value in layout.items() if name in ("OMP_NUM_THREADS", *SINGLE_PROCESS_ENV)
    }
    with vllm_direct(
        settings,
        log_dir,
        extra_args=["--distributed-executor-backend=uni"] if layout else [],
        extra_env=threads,
        system="vllm-direct-uni",
        description="vLLM's own OpenAI server, its model worker in the engine-core process (unbound threads)",
    ) as endpoint:
        yield endpoint


# Experiments, run only when named (`--systems`): both peers with one core kept free of the engine. Each
# `-1core` system is compared with `vllm-direct-1core`.
EXPERIMENTS: dict[str, SystemFactory] = {
    "vllm-direct-1core": _one_core_free(vllm_direct, "vllm-direct-1core"),
    "maas-1core": _one_core_free(maas, "maas-1core"),
    # vLLM's own server with its worker in the engine-core process and as many OpenMP threads as the
    # gateway's engine, unbound (a binding would pin the API server too: it is that process's environment).
    "vllm-direct-uni": _same_layout_as_the_gateway,
    # Our gateway with the replica channels off: every chunk crosses Serve's handle, as before them.
    "maas-handle": functools.partial(
        maas, system="maas-handle", extra_env={"MAAS_REPLICA_CHANNELS": "0"}, hop="Serve DeploymentHandle"
    ),
}
