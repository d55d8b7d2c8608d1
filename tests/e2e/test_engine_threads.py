"""The engines a running gateway started: a one-rank CPU engine runs its model worker in its engine-core
process with vLLM's OpenMP set-up for that worker (``backends/vllm_single_process.py``), and polls gloo from
one thread (``backends/vllm_gloo.py``), where torch alone gives each of vLLM's thirteen or so gloo groups
its own thread waking every 10 ms."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from backends.vllm_single_process import SINGLE_PROCESS_ENV, engine_core_env
from tests.e2e.conftest import Gateway, process_tree

pytestmark = pytest.mark.e2e


def gloo_pollers(pid: int) -> int:
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                count += comm.read().strip() == "gloo_tcp_loop"
        except OSError:
            continue  # the thread ended meanwhile
    return count


def engine_processes(gateway: Gateway) -> dict[int, str]:
    """vLLM's processes under the gateway by PID, with their names (``VLLM::EngineCore`` ...)."""
    found = {}
    for proc in process_tree(gateway.process.pid):
        try:
            if proc.name().startswith("VLLM::"):
                found[proc.pid] = proc.name()
        except (psutil.Error, OSError):
            continue
    return found


def openmp_environment(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as environ:
        items = environ.read().decode(errors="replace").split("\0")
    pairs = [item.split("=", 1) for item in items if "=" in item]
    return {name: value for name, value in pairs if name.startswith(("OMP_", "GOMP_", "KMP_AFFINITY"))}


def test_one_rank_cpu_engines_run_their_own_worker(gateway: Gateway, smollm2_weights: Path) -> None:
    # The chat model and the embedding model: an engine-core process each and no separate worker process
    # (vLLM's CPU default is three processes an engine: replica, engine core, worker) ...
    engines = engine_processes(gateway)
    names = sorted(engines.values())
    assert names.count("VLLM::EngineCore") >= 2, names
    assert "VLLM::Worker" not in names, names
    # ... each with the OpenMP threads and binding vLLM would have given that worker, not the single
    # thread Ray sets for its replicas (their child inherits it).
    layout = engine_core_env({"model": str(smollm2_weights), "dtype": "float32", "max_model_len": 2048})
    wanted = {name: value for name, value in layout.items() if name not in SINGLE_PROCESS_ENV}
    for pid in engines:
        assert openmp_environment(pid) == wanted, (pid, wanted)


def test_each_vllm_engine_of_the_default_catalog_polls_gloo_from_one_thread(gateway: Gateway) -> None:
    pollers = {pid: gloo_pollers(pid) for pid in engine_processes(gateway)}
    with_gloo = {pid: count for pid, count in pollers.items() if count}
    # The chat model and the embedding model: the process running each one's model, its groups on one device.
    assert len(with_gloo) >= 2, pollers
    assert set(with_gloo.values()) == {1}, pollers
