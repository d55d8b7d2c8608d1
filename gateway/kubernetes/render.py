"""All manifests of one installation, and the files ``maas deploy render`` writes them to.

The files are numbered in the order ``kubectl apply -f DIR`` should create them; the same catalog and
options always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.catalog.schema import Catalog
from gateway.kubernetes import gateway_app, observability
from gateway.kubernetes.common import Manifest
from gateway.kubernetes.options import RenderOptions
from gateway.kubernetes.ray_cluster import ray_cluster
from gateway.kubernetes.worker_groups import WorkerGroup, plan_worker_groups

FILES = (
    "00-namespace.yaml",
    "10-ray-cluster.yaml",
    "20-gateway.yaml",
    "30-external-stores.yaml",
    "40-monitoring.yaml",
)


@dataclass(frozen=True)
class RenderedFile:
    name: str
    manifests: tuple[Manifest, ...]


@dataclass(frozen=True)
class Rendering:
    files: list[RenderedFile]
    groups: list[WorkerGroup]
    """The worker groups the RayCluster has (what ``maas deploy render`` reports)."""

    @property
    def manifests(self) -> list[Manifest]:
        return [manifest for file in self.files for manifest in file.manifests]


def render(
    catalog: Catalog, catalog_text: str, options: RenderOptions, dashboards: Mapping[str, str]
) -> Rendering:
    """Every manifest, grouped into the files they are written to; ``RenderError`` on bad input.

    ``catalog_text`` is the catalog file as written (it goes into the gateway's ConfigMap as it is);
    ``dashboards`` maps file names to Grafana dashboard JSON.
    """
    options.check()
    groups = plan_worker_groups(catalog, options)
    files = [
        RenderedFile(FILES[0], (gateway_app.namespace(options),)),
        RenderedFile(FILES[1], (ray_cluster(options, groups),)),
        RenderedFile(
            FILES[2],
            (
                gateway_app.catalog_config_map(options, catalog_text),
                gateway_app.gateway_deployment(options, catalog_text),
                *gateway_app.attached_gateways(options),
                gateway_app.gateway_service(options),
                gateway_app.gateway_autoscaler(options),
            ),
        ),
        RenderedFile(FILES[3], tuple(gateway_app.external_stores(options))),
        RenderedFile(
            FILES[4],
            (
                observability.prometheus_config_map(options),
                observability.dashboards_config_map(options, dashboards),
            ),
        ),
    ]
    return Rendering([file for file in files if file.manifests], groups)


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (the catalog, dashboards, scripts), so the files read well."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(manifests: tuple[Manifest, ...], header: str) -> str:
    documents = [yaml.dump(m, Dumper=_Dumper, sort_keys=False, width=120) for m in manifests]
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + "---\n" + "---\n".join(documents)


def header(source: str) -> str:
    return (
        f"Rendered by `maas deploy render` from {source}.\n"
        "Do not edit: change the catalog or the render options and render again."
    )


def write(files: list[RenderedFile], out: Path, source: str) -> list[Path]:
    """Write ``files`` under ``out``; a numbered file this render no longer has is removed."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file in files:
        path = out / file.name
        path.write_text(to_yaml(file.manifests, header(source)), encoding="utf-8")
        written.append(path)
    for stale in set(FILES) - {file.name for file in files}:
        (out / stale).unlink(missing_ok=True)
    return written
