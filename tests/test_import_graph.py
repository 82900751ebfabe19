"""The import graph keeps DESIGN.md's layers: no circle, no private name crossing modules, nothing imported upward.

Layers, top to bottom (a module may import its own layer and the ones below):
cli -> reports, validate, api -> pipeline -> backends (restorers, recognizers, attributes, identification datasets)
-> data (protocol, formats (one module per protocol format), specs and data root, images, alignment, degradation, detectors, mtcnn, hub, retrieval,
devices) -> metrics, errors, registry, progress. No module is over 600 lines.
Imports inside functions count too: a lazy import upward is still a dependency upward.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "restorever"

LAYERS = [  # (rank, prefixes); the first matching prefix wins, longest prefixes first within the list
    (6, ("restorever.cli", "restorever.__main__")),
    (5, ("restorever.reports", "restorever.validate", "restorever.api")),
    (4, ("restorever.pipeline",)),
    (3, ("restorever.restorers", "restorever.recognizers", "restorever.attributes", "restorever.datasets_ident")),
    (2, ("restorever.protocol", "restorever.formats", "restorever.protocol_specs", "restorever.data_root",
         "restorever.images", "restorever.alignment", "restorever.degradation", "restorever.degradation_ops",
         "restorever.degradation_params", "restorever.detectors", "restorever.mtcnn", "restorever.jpeg",
         "restorever.hub", "restorever.checkpoint_files", "restorever.cache_dir", "restorever.retrieval",
         "restorever.devices", "restorever.precision", "restorever.acceleration", "restorever.files",
         "restorever.memory", "restorever.frozen")),
    (1, ("restorever.metrics", "restorever.errors", "restorever._registry", "restorever.progress")),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        name = ".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    return mods


MODULES = _modules()


def _layer(module: str) -> int | None:
    for rank, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def _imports(module: str) -> list[tuple[str, str, int]]:
    """``(target module, imported name or "", line)`` for every import in ``module``, relative ones resolved."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}  # annotations, not a runtime dependency
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, "", node.lineno) for alias in node.names if alias.name.startswith("restorever")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("restorever"):
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                out.append((full, "", node.lineno) if full in MODULES else (target, alias.name, node.lineno))
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            continue  # package façades re-export lazily; their submodules are the real nodes
        for target, _, _ in _imports(module):
            if target in MODULES and target != module and MODULES[target].name != "__init__.py":
                graph[module].add(target)
    return graph


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if m != "restorever" and _layer(m) is None]
    assert not unplaced, f"add these modules to LAYERS in {__file__}: {unplaced}"


def test_no_import_cycles():
    graph, cycles = _edges(), []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_name_crosses_modules():
    crossings = [f"{m}:{line} imports {target}.{name}" for m in MODULES for target, name, line in _imports(m)
                 if name.startswith("_") and not name.startswith("__") and target != m]
    assert not crossings, "\n".join(crossings)


def test_nothing_is_imported_from_a_higher_layer():
    upward = []
    for module in MODULES:
        rank = _layer(module)
        if rank is None:
            continue
        for target, _, line in _imports(module):
            other = _layer(target)
            if other is not None and other > rank:
                upward.append(f"{module}:{line} (layer {rank}) imports {target} (layer {other})")
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.count(".") >= 1))
def test_modules_stay_small(module):
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= 600, f"{MODULES[module]} has {lines} lines; split it by job (no module over 600 lines)"
