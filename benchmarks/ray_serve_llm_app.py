"""Ray Serve LLM (``ray.serve.llm.build_openai_app``) on the real model, as a benchmark peer.

    .cache/bench-venvs/ray-serve-llm/bin/python -m benchmarks.ray_serve_llm_app --model DIR --port P \
        [--engine-kwargs JSON] [--engine-env JSON]

Runs in its own venv (the project's packages plus ``pyarrow``, which ``ray.serve.llm`` needs). Starts a
private local Ray (loopback, ports Ray picks, no dashboard), then Serve's HTTP proxy on ``--port`` with
the OpenAI app; the benchmark passes the engine settings of the gateway's ``models.yaml`` deployment.
Ray Serve LLM defaults to a GPU placement bundle; a bundle without GPU selects its CPU mode. Prints
``READY`` when ``serve.run`` returns and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from types import FrameType

DEFAULT_ENGINE_KWARGS = {"dtype": "float32", "enforce_eager": True, "max_model_len": 2048, "max_num_seqs": 16}
DEFAULT_ENGINE_ENV = {
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "VLLM_USE_AOT_COMPILE": "0",
    "HF_HUB_OFFLINE": "1",
}


def _patch_vllm_version() -> None:
    """vllm-cpu's distribution is named ``vllm-cpu``; answer ``version("vllm")`` as vLLM's CLI needs."""
    import importlib.metadata as metadata

    original = metadata.version

    def version(distribution_name: str) -> str:
        if distribution_name == "vllm":
            return original("vllm-cpu") + "+cpu"
        return original(distribution_name)

    metadata.version = version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_serve_llm_app")
    parser.add_argument("--model", required=True, help="Hugging Face folder of the model")
    parser.add_argument("--name", default="smollm2")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--engine-kwargs", default=json.dumps(DEFAULT_ENGINE_KWARGS))
    parser.add_argument("--engine-env", default=json.dumps(DEFAULT_ENGINE_ENV))
    args = parser.parse_args(argv)
    engine_env: dict[str, str] = json.loads(args.engine_env)
    os.environ.update(engine_env)
    os.environ.update(
        RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0"
    )
    _patch_vllm_version()
    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    stop = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    ray.init(
        address="local",
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        # Logical CPUs: the engine's bundle, its vLLM worker and the ingress each reserve one, more than
        # this 2-core machine has; they only schedule, the processes share the real cores either way.
        num_cpus=8,
        log_to_driver=True,
        runtime_env={"env_vars": engine_env},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    config = LLMConfig(
        model_loading_config={"model_id": args.name, "model_source": args.model},
        engine_kwargs=json.loads(args.engine_kwargs),
        deployment_config={"num_replicas": 1},
        placement_group_config={"bundles": [{"CPU": 1}]},  # no GPU in the bundle: Ray Serve LLM's CPU mode
        runtime_env={"env_vars": engine_env},
    )
    serve.run(build_openai_app({"llm_configs": [config]}), blocking=False)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("READY", flush=True)
    while not stop:
        time.sleep(0.5)
    serve.shutdown()  # type: ignore[no-untyped-call]
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
