"""The layout's import rules: ``backends`` never imports ``gateway``, the gateway's packages import only the
layers below them, and no module imports itself back through others (lazy imports inside functions count)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

# Each part of the code, and the parts it may import. Read top to bottom: the request path runs down.
MAY_IMPORT: dict[str, set[str]] = {
    "gateway.cli": {
        "gateway.app",
        "gateway.api",
        "gateway.serving",
        "gateway.observability",
        "gateway.billing",
        "gateway.tenancy",
        "gateway.catalog",
        "gateway.kubernetes",
        "gateway.errors",
        "backends",
    },
    "gateway.kubernetes": {"gateway.serving", "gateway.catalog", "backends"},
    "gateway.app": {
        "gateway.api",
        "gateway.protocol",
        "gateway.serving",
        "gateway.placement",
        "gateway.observability",
        "gateway.billing",
        "gateway.tenancy",
        "gateway.catalog",
        "gateway.errors",
    },
    "gateway.api": {
        "gateway.streaming",
        "gateway.serving",
        "gateway.placement",
        "gateway.observability",
        "gateway.billing",
        "gateway.tenancy",
        "gateway.catalog",
        "gateway.protocol",
        "gateway.errors",
        "backends",
    },
    "gateway.streaming": {"gateway.billing", "gateway.errors", "backends"},
    "gateway.serving": {"gateway.placement", "gateway.catalog", "gateway.errors", "backends"},
    "gateway.placement": {"gateway.catalog", "gateway.errors", "backends"},
    "gateway.observability": {"gateway.billing", "gateway.catalog", "backends"},
    "gateway.billing": {"gateway.tenancy", "gateway.catalog", "gateway.errors", "backends"},
    "gateway.tenancy": {"gateway.errors"},
    "gateway.catalog": {"gateway.errors", "backends"},
    "gateway.protocol": {"gateway.errors", "backends"},
    "gateway.errors": {"backends"},
    "gateway": set(),  # the package's own __init__ only: every module below it belongs to a part above
    "backends": set(),
}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in ("gateway", "backends"):
        for path in sorted((REPO / top).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(path: Path, module: str, known: dict[str, Path]) -> Iterator[str]:
    """The project modules ``path`` imports, at the top or inside functions."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]).strip(".")
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            # the longest project module the name starts with
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


def part_of(module: str) -> str:
    for part in sorted(MAY_IMPORT, key=len, reverse=True):
        if module == part or (part != "gateway" and module.startswith(part + ".")):
            return part
    raise AssertionError(f"{module} belongs to no part of the layout; add it to MAY_IMPORT")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: set(imports_of(path, module, known)) for module, path in known.items()}


def test_every_module_belongs_to_a_part_of_the_layout() -> None:
    for module in modules():
        part_of(module)


def test_backends_never_import_the_gateway() -> None:
    wrong = {
        f"{module} -> {target}"
        for module, targets in graph().items()
        if part_of(module) == "backends"
        for target in targets
        if target.startswith("gateway")
    }
    assert not wrong, sorted(wrong)


def test_gateway_packages_import_only_the_layers_below_them() -> None:
    wrong = set()
    for module, targets in graph().items():
        mine = part_of(module)
        for target in targets:
            theirs = part_of(target)
            if theirs != mine and theirs not in MAY_IMPORT[mine]:
                wrong.add(f"{module} -> {target} ({mine} may not import {theirs})")
    assert not wrong, sorted(wrong)


def test_the_allowed_imports_between_parts_have_no_cycle() -> None:
    assert find_cycle(MAY_IMPORT) is None


def test_no_module_imports_itself_back_through_others() -> None:
    assert find_cycle(graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, as a path that ends where it starts, or None."""
    done: set[str] = set()
    for start in sorted(edges):
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges.get(start, ()))))]
        on_path = [start]
        if start in done:
            continue
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.pop()
                done.add(node)
            elif child in on_path:
                return on_path[on_path.index(child) :] + [child]
            elif child not in done:
                stack.append((child, iter(sorted(edges.get(child, ())))))
                on_path.append(child)
    return None
