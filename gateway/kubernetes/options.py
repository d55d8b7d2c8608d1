"""What ``maas deploy render`` takes besides the catalog: names, images, node sizes, the Secrets to read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

RAY_VERSION = "2.60.0"
"""The Ray every pod runs: the version ``pyproject.toml`` pins (a cluster's nodes must all agree)."""

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_CHIPS_PER_NODE = 8
"""Chips a worker node of an accelerator kind carries unless ``chips_per_node`` says otherwise."""


class RenderError(ValueError):
    """The catalog and options cannot be rendered; the message says what to change."""


def _package_version() -> str:
    try:
        return version("maas-gateway")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.1.0"


def default_images() -> dict[str, str]:
    """The images ``deploy/docker`` builds, by chip kind (tag: the package version)."""
    tag = _package_version()
    return {
        "cpu": f"maas-gateway:{tag}-cpu",
        "nvidia": f"maas-gateway:{tag}-cuda",
        "ascend": f"maas-gateway:{tag}-ascend",
    }


@dataclass(frozen=True)
class RenderOptions:
    """Everything the manifests depend on besides the catalog; the defaults suit the example catalog."""

    name: str = "maas"
    """Prefix of every object's name (the RayCluster is ``<name>-ray``, the gateway ``<name>-gateway``)."""
    namespace: str = "maas"
    images: Mapping[str, str] = field(default_factory=default_images)
    """Container image per chip kind; the head and the gateway run the ``cpu`` one."""
    gateway_replicas: int = 1
    """The autoscaler's floor of attached gateways (beside the one that deploys the catalog)."""
    gateway_max_replicas: int = 4
    """The autoscaler's ceiling of attached gateways."""
    gateway_cpus: int = 4
    gateway_memory_gib: int = 8
    database_secret: str = "maas-database"
    """Secret whose key ``url`` is the PostgreSQL URL (``MAAS_DATABASE_URL``)."""
    redis_secret: str | None = "maas-redis"
    """Secret whose key ``url`` is the Redis URL (``MAAS_REDIS_URL``); ``None``: counters in PostgreSQL."""
    postgres_host: str | None = None
    """DNS name of the external PostgreSQL: rendered as the ExternalName Service ``<name>-postgres``."""
    redis_host: str | None = None
    """DNS name of the external Redis: rendered as the ExternalName Service ``<name>-redis``."""
    ray_auth_secret: str = "maas-ray-auth"
    """Secret whose key ``auth_token`` is the Ray cluster's token (KubeRay ``authOptions``)."""
    models_claim: str = "maas-models"
    """PersistentVolumeClaim (ReadWriteMany) with the Hugging Face cache and prepared models, mounted at
    ``/models`` in the gateway (read-write) and every Ray pod (read-only)."""
    chips_per_node: Mapping[str, int] = field(default_factory=dict)
    """Chips per worker node by chip kind (default ``DEFAULT_CHIPS_PER_NODE``)."""
    device_resources: Mapping[str, str] = field(default_factory=dict)
    """Device-plugin resource by chip kind, over the kind's own (``ascend``: ``huawei.com/Ascend310P``)."""
    cpus_per_chip: int = 8
    memory_gib_per_chip: int = 64
    cpu_worker_cpus: int = 8
    """CPUs of a worker pod of the ``cpu`` kind (one pod per replica: the engine uses the pod's cores)."""
    cpu_worker_memory_gib: int = 32
    head_cpus: int = 4
    head_memory_gib: int = 16
    pool_node_label: str | None = "maas/pool"
    """Node label whose value names a node's pool: worker pods of a pool select it. ``None``: no selector."""

    def check(self) -> None:
        """Raise ``RenderError`` for options no cluster would accept."""
        for what, value in (("name", self.name), ("namespace", self.namespace)):
            if not DNS_LABEL.match(value):
                raise RenderError(f"{what} {value!r} must be a DNS label (lower case, digits, dashes)")
        if len(self.name) > 30:
            raise RenderError(f"name {self.name!r} is longer than 30 characters (object names add to it)")
        if not 1 <= self.gateway_replicas <= self.gateway_max_replicas:
            raise RenderError(
                f"gateway replicas {self.gateway_replicas} must be at least 1 and at most the autoscaler's "
                f"maximum {self.gateway_max_replicas}"
            )
        sizes = {
            "gateway cpus": self.gateway_cpus,
            "gateway memory": self.gateway_memory_gib,
            "cpus per chip": self.cpus_per_chip,
            "memory per chip": self.memory_gib_per_chip,
            "cpu worker cpus": self.cpu_worker_cpus,
            "cpu worker memory": self.cpu_worker_memory_gib,
            "head cpus": self.head_cpus,
            "head memory": self.head_memory_gib,
            **{f"chips per node of {kind}": n for kind, n in self.chips_per_node.items()},
        }
        for what, size in sizes.items():
            if size < 1:
                raise RenderError(f"{what} must be at least 1, not {size}")
        if "cpu" not in self.images:
            raise RenderError("no image for chip kind 'cpu': the Ray head and the gateway run it")

    def node_chips(self, kind: str) -> int:
        return self.chips_per_node.get(kind, DEFAULT_CHIPS_PER_NODE)

    @property
    def cluster_name(self) -> str:
        return f"{self.name}-ray"

    @property
    def head_service(self) -> str:
        """The head's Service, as KubeRay names it (``<cluster>-head-svc``), in this namespace."""
        return f"{self.cluster_name}-head-svc.{self.namespace}.svc.cluster.local"
