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


def test_each_vllm_worker_of_the_default_catalog_polls_gloo_from_one_thread(gateway: Gateway) -> None:
    pollers = {}
    for proc in process_tree(gateway.process.pid):
        try:
            if proc.name() == "VLLM::Worker":
                pollers[proc.pid] = gloo_pollers(proc.pid)
        except (psutil.Error, OSError):
            continue
    # The chat model and the embedding model: a worker each, each with its groups on one device.
    assert len(pollers) >= 2, pollers
    assert set(pollers.values()) == {1}, pollers
