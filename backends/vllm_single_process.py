"""A one-rank CPU engine with its model worker inside its engine-core process, given the OpenMP set-up vLLM
would have given that worker.

vLLM's CPU platform forces its multiprocess executor so that it can set each rank's OpenMP threads and bind
them to the cores it picked (``vllm.utils.ompmultiprocessing``). At one rank owning every core the worker's
own process only costs: it imports torch and vLLM once more (6-11 s of every engine start on 2 cores,
about 1 GB) and every step crosses a shared-memory queue to it. So at one chip a replica and no reserved
cores the engine core runs the worker itself (vLLM's ``uni`` executor, as on CUDA), and is spawned with the
variables vLLM's executor sets for its rank-0 worker: the thread count and the binding (``OMP_PLACES`` /
``GOMP_CPU_AFFINITY`` / ``KMP_AFFINITY``, whichever OpenMP runtime is preloaded). Without them the engine
inherits the replica's environment, where Ray sets ``OMP_NUM_THREADS=1``: SmolLM2 then decoded at two
thirds of the speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

SINGLE_PROCESS_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
"""What lets vLLM run the worker in the engine-core process (with ``distributed_executor_backend="uni"``)."""


def single_process_worker(chip: str, tensor_parallel_size: int, reserved_cores: int) -> bool:
    """Whether an engine on ``chip`` runs its model worker inside its engine-core process: on the CPU, at
    one rank and no cores reserved (several ranks or reserved cores keep vLLM's multiprocess executor,
    which binds each rank's threads to its own cores)."""
    return chip == "cpu" and tensor_parallel_size == 1 and reserved_cores == 0


def worker_omp_env(vllm_config: Any) -> dict[str, str]:
    """The variables vLLM's multiprocess executor would set for the rank-0 worker of ``vllm_config``."""
    from vllm.utils.ompmultiprocessing import OMPProcessManager

    before = dict(os.environ)
    with OMPProcessManager(vllm_config).configure_omp_envs(0, 0):
        return {name: value for name, value in os.environ.items() if before.get(name) != value}


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` while the block runs (a process spawned in it inherits them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def engine_core_env(engine_args: Mapping[str, Any]) -> dict[str, str]:
    """The environment a one-rank CPU engine core with ``engine_args`` (``AsyncEngineArgs`` keywords) is
    spawned with, worked out by vLLM in a child process, so the caller never imports vLLM (the benchmarks
    and the tests that check a running gateway's engines)."""
    command = [sys.executable, "-m", __name__, json.dumps(dict(engine_args))]
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    found: dict[str, str] = json.loads(output.strip().splitlines()[-1])
    return found


def main() -> None:
    """Print, as JSON, the engine-core environment of a one-rank CPU engine for the engine arguments given
    as JSON (``engine_core_env``)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    os.environ.update(SINGLE_PROCESS_ENV)
    os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"  # as single_process_worker requires
    config = AsyncEngineArgs(**json.loads(sys.argv[1])).create_engine_config()
    print(json.dumps({**SINGLE_PROCESS_ENV, **worker_omp_env(config)}))


if __name__ == "__main__":
    main()
