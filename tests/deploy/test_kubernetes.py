"""The committed manifests under deploy/kubernetes are what the command in its README renders today from the
production example catalog: change the catalog or the renderer, and this fails until they are rendered
again. The Dockerfiles install what the manifests run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.kubernetes.options import RAY_VERSION
from gateway.kubernetes.render import FILES
from tests.conftest import REPO

KUBERNETES = REPO / "deploy" / "kubernetes"


def readme_command() -> list[str]:
    """The `maas deploy render ...` command of deploy/kubernetes/README.md, as argv."""
    readme = (KUBERNETES / "README.md").read_text()
    match = re.search(r"^(maas deploy render .*?)(?<!\\)\n", readme, re.MULTILINE | re.DOTALL)
    assert match, "no `maas deploy render` command in deploy/kubernetes/README.md"
    return shlex.split(match.group(1).replace("\\\n", " "))


def test_the_committed_manifests_are_a_fresh_render_of_the_production_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = readme_command()
    assert argv[argv.index("--catalog") + 1] == "deploy/catalogs/production-example.yaml"
    assert argv[argv.index("--out") + 1] == "deploy/kubernetes"
    argv[argv.index("--out") + 1] = str(tmp_path)
    monkeypatch.chdir(REPO)

    assert main(argv[1:]) == 0, capsys.readouterr().err

    fresh = {p.name: p.read_text() for p in sorted(tmp_path.glob("*.yaml"))}
    committed = {p.name: p.read_text() for p in sorted(KUBERNETES.glob("*.yaml"))}
    assert set(fresh) <= set(FILES)
    assert committed.keys() == fresh.keys()
    for name, text in fresh.items():
        assert committed[name] == text, f"deploy/kubernetes/{name} is stale: run the README's command"


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda", "Dockerfile.ascend"])
def test_each_dockerfile_installs_this_project_beside_the_pinned_ray(name: str) -> None:
    text = (REPO / "deploy" / "docker" / name).read_text()
    assert re.search(r"pip install .*/src", text), name
    assert "wget" in text, f"{name}: KubeRay's exec probes use wget where it is installed"
    pinned = re.search(r'"ray\[serve\]==([0-9.]+)"', (REPO / "pyproject.toml").read_text())
    assert pinned and pinned.group(1) == RAY_VERSION
