"""LiteLLM's proxy (``litellm[proxy]`` from PyPI) in its own venv, configured for OpenAI upstreams.

One worker process (LiteLLM's default, as the gateway runs one HTTP process), no database, no internet:
``LITELLM_LOCAL_MODEL_COST_MAP=True`` keeps it from fetching its cost map, and ``LITELLM_LOG=WARNING``
turns uvicorn's per-request access log off as it is off in the gateway.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from benchmarks.procs import Server, free_port, get_ok, start_server
from benchmarks.venvs import ensure_venv, package_version

logger = logging.getLogger(__name__)

REQUIREMENT = "litellm[proxy]==1.108.7"  # what `litellm[proxy]` resolves to here; pinned for repeatability
MASTER_KEY = "sk-bench-litellm"


def litellm_config(upstreams: Mapping[str, str]) -> dict[str, object]:
    """A proxy config with one model per ``name -> OpenAI base URL`` (ending in ``/v1``)."""
    return {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {"model": f"openai/{name}", "api_base": base, "api_key": "none"},
            }
            for name, base in upstreams.items()
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


def start_litellm(upstreams: Mapping[str, str], *, log_dir: Path, ready_timeout_s: float = 180) -> Server:
    """Create the venv on first use, write the config, start the proxy and wait for its liveness route."""
    venv = ensure_venv("litellm", [REQUIREMENT])
    config = log_dir / "litellm-config.yaml"
    log_dir.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(litellm_config(upstreams)))
    port = free_port()
    env = dict(
        os.environ,
        LITELLM_MASTER_KEY=MASTER_KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="WARNING",
        NO_PROXY="127.0.0.1,localhost",
    )
    command = [
        str(venv / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    server = start_server("litellm", command, port=port, log_dir=log_dir, env=env)
    try:
        seconds = server.wait_ready(get_ok("/health/liveliness"), timeout_s=ready_timeout_s)
    except BaseException:
        server.stop(grace_s=10)
        raise
    logger.info("litellm proxy ready in %.1fs", seconds)
    return server


def litellm_version() -> str | None:
    return package_version(ensure_venv("litellm", [REQUIREMENT]), "litellm")
