"""A vLLM general plugin: every gloo process group of an engine's process shares one transport device.

vLLM makes two torch.distributed groups (a device group and a gloo CPU group) for each of its parallel
dimensions, even at world size 1: about thirteen gloo groups a worker. torch gives each gloo group its own
TCP transport device, and each device runs a thread that polls its sockets every 10 ms. So an idle worker
wakes about 1,300 times a second, and on a CPU host whose cores the engines' OpenMP threads hold, every
wake-up preempts one of them (``python -m benchmarks wakeups``). With one device for all of a process's
groups there is one such thread: 100 wake-ups a second. gloo serves any number of groups' connections
over one device (a device is a network interface, not a group); collectives across ranks work as before.

vLLM loads the ``vllm.general_plugins`` entry points (``pyproject.toml``) in every engine and worker process
before it makes its groups. The plugin acts only where ``SHARED_GLOO_ENV`` is set, which the vllm backend
does for its engines, so another vLLM run from the same environment (vLLM's own server in the
benchmarks) is left as its authors ship it.
"""

from __future__ import annotations

import os
from typing import Any

SHARED_GLOO_ENV = "MAAS_SHARED_GLOO_DEVICE"


def share_gloo_device() -> None:
    """Make ``torch.distributed`` build every later gloo group of this process on one shared device."""
    if os.environ.get(SHARED_GLOO_ENV) != "1":
        return
    from torch.distributed import distributed_c10d

    base: Any = distributed_c10d.ProcessGroupGloo
    if getattr(base, "shares_device", False):
        return  # vLLM loads its plugins more than once in a process
    devices: list[Any] = []

    class SharedDeviceGloo(base):  # type: ignore[misc]
        """``ProcessGroupGloo`` whose timeout-only constructor reuses the process's device(s)."""

        shares_device = True

        def __init__(self, store: Any, rank: int, size: int, *args: Any, **kwargs: Any) -> None:
            timeout = kwargs.pop("timeout", None)
            if args or kwargs or timeout is None:  # options given: theirs to choose
                super().__init__(store, rank, size, *args, **kwargs)
                return
            if not devices:  # as torch's own constructor picks them: GLOO_SOCKET_IFNAME, or the host's
                interfaces = [i for i in os.environ.get("GLOO_SOCKET_IFNAME", "").split(",") if i]
                devices.extend(
                    [base.create_device(interface=i) for i in interfaces] or [base.create_default_device()]
                )
            options = base._Options()
            options._devices = devices
            options._timeout = timeout
            options._threads = 2 * len(devices)
            super().__init__(store, rank, size, options)

    distributed_c10d.ProcessGroupGloo = SharedDeviceGloo  # type: ignore[misc]
