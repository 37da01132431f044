"""The seams, checked on the source: no import cycle (imports inside functions count), no private name
imported across modules, config a leaf, evaluate/ and sweep/ above train's loop, analysis free of testbed
and torch."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("testbed", "analysis")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


SOURCES = _sources()


def _imports(tree: ast.Module) -> list[tuple[str, str | None]]:
    """(module, name) for every `import m` and `from m import name` anywhere in the file."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.append((submodule, None) if submodule in SOURCES else (node.module, alias.name))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, tree in SOURCES.items():
        targets = set()
        for module, _ in _imports(tree):
            while module and module not in SOURCES:  # `import testbed.data.x` names a module; trim attributes
                module = module.rpartition(".")[0]
            if module and module != name and module.split(".")[0] in PACKAGES and module not in PACKAGES:
                targets.add(module)
        graph[name] = targets
    return graph


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_no_import_cycles():
    graph = _graph()
    cycles = sorted(name for name in graph if name in _reaches(graph, name))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_no_private_name_is_imported_across_modules():
    offenders = [
        f"{name} imports {module}.{imported}"
        for name, tree in SOURCES.items()
        for module, imported in _imports(tree)
        if imported and imported.startswith("_") and not imported.startswith("__") and module.split(".")[0] in PACKAGES
    ]
    assert not offenders


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("testbed.config", {"testbed.config_layers", "testbed.errors", "testbed.paths"}),
        ("testbed.config_layers", {"testbed.errors"}),
        ("testbed.paths", set()),
        ("testbed.errors", set()),
        ("testbed.progress", set()),  # the training loop, sweep status and the local driver all read it
    ],
)
def test_leaves_import_nothing_else_of_testbed(module, allowed):
    assert _graph()[module] <= allowed


def test_evaluate_and_sweep_do_not_import_train():
    graph = _graph()
    offenders = sorted(
        name
        for name in graph
        if name.startswith(("testbed.evaluate", "testbed.sweep")) and "testbed.train" in graph[name]
    )
    assert not offenders


def test_analysis_imports_neither_testbed_nor_torch():
    offenders = sorted(
        f"{name}: {module}"
        for name, tree in SOURCES.items()
        if name.startswith("analysis")
        for module, _ in _imports(tree)
        if module.split(".")[0] in ("testbed", "torch")
    )
    assert not offenders
