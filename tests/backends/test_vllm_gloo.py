"""The shared-gloo-device plugin, in fresh processes: what vLLM's worker does with its groups (several gloo
groups at world size 1, then collectives over two ranks), with and without the plugin switched on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from backends.vllm_gloo import SHARED_GLOO_ENV
from tests.backends.conftest import free_port

# Load the plugin as vLLM does, make the groups a vLLM worker makes, and count the gloo poller threads
# (torch names them gloo_tcp_loop).
SCRIPT = r"""
import json, os, sys
from importlib.metadata import entry_points
import torch
import torch.distributed as dist

rank, world, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
plugin = next(e for e in entry_points(group="vllm.general_plugins") if e.name == "maas_shared_gloo_device")
plugin.load()()
plugin.load()()  # vLLM may load its plugins twice in a process
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
groups = [dist.new_group(list(range(world)), backend="gloo") for _ in range(6)]
sums = []
for i, group in enumerate(groups):
    t = torch.full((1024,), float(rank + i))
    dist.all_reduce(t, group=group)
    sums.append(t[0].item())
dist.barrier()
pollers = sum(
    open(f"/proc/self/task/{tid}/comm").read().strip() == "gloo_tcp_loop"
    for tid in os.listdir("/proc/self/task")
)
print(json.dumps({"pollers": pollers, "sums": sums}))
dist.destroy_process_group()
"""


def run_ranks(world: int, shared: bool, port: int) -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if k != SHARED_GLOO_ENV}
    if shared:
        env[SHARED_GLOO_ENV] = "1"
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(rank), str(world), str(port)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]
    outs = [rank.communicate(timeout=120)[0] for rank in ranks]
    assert all(rank.returncode == 0 for rank in ranks), outs
    return [json.loads(out.strip().splitlines()[-1]) for out in outs]


@pytest.mark.parametrize("world", [1, 2])
def test_with_the_plugin_on_all_gloo_groups_of_a_process_share_one_poller_and_collectives_still_add_up(
    world: int,
) -> None:
    for result in run_ranks(world, shared=True, port=free_port()):
        assert result["pollers"] == 1
        assert result["sums"] == [float(sum(range(world)) + world * i) for i in range(6)]


def test_without_the_switch_the_plugin_leaves_torch_one_poller_per_group() -> None:
    [result] = run_ranks(1, shared=False, port=free_port())
    assert result["pollers"] == 7  # the default group and six more
