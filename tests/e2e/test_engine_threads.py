"""The engines a running gateway started poll gloo from one thread a process (``backends/vllm_gloo.py``),
where torch alone gives each of vLLM's thirteen or so gloo groups its own thread waking every 10 ms."""

from __future__ import annotations

import os

import psutil
import pytest

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


def test_one_rank_cpu_engines_run_their_worker_in_the_engine_core(gateway: Gateway) -> None:
    # The chat model and the embedding model: an engine-core process each and no separate worker process
    # (vLLM's CPU default is three processes an engine: replica, engine core, worker).
    names = sorted(engine_processes(gateway).values())
    assert names.count("VLLM::EngineCore") >= 2, names
    assert "VLLM::Worker" not in names, names


def test_each_vllm_engine_of_the_default_catalog_polls_gloo_from_one_thread(gateway: Gateway) -> None:
    pollers = {pid: gloo_pollers(pid) for pid in engine_processes(gateway)}
    with_gloo = {pid: count for pid, count in pollers.items() if count}
    # The chat model and the embedding model: the process running each one's model, its groups on one device.
    assert len(with_gloo) >= 2, pollers
    assert set(with_gloo.values()) == {1}, pollers
