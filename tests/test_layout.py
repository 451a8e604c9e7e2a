"""The layout's import rules, checked on the source (an AST walk, imports inside functions too).

Who may import whom (README "Layout", docs/interfaces.md):

- ``features`` imports none of the other project packages;
- ``simulator`` imports only ``features.tables`` and ``features.uscc`` (the table contracts);
- ``training`` imports ``features``;
- ``tradefinance`` imports ``features`` and ``training``, and never FastAPI or Starlette;
- ``serving`` may import all of them, but a router never imports another router;
- no import cycle between any two modules of the project.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "simulator", "training", "tradefinance", "serving", "kuaxin")
ALLOWED = {
    "features": set(),
    "simulator": {"features"},
    "training": {"features"},
    "tradefinance": {"features", "training"},
    "serving": {"features", "training", "tradefinance"},
    "kuaxin": {"features", "simulator", "training", "tradefinance", "serving"},
}
SIMULATOR_MAY_USE = {"features", "features.tables", "features.uscc", "features.io"}
HTTP_LIBRARIES = ("fastapi", "starlette")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, resolved to absolute names (relative imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.add(mod)
            # ``from pkg import module`` imports the submodule too
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = [
        p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts
    ]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


GRAPH = _graph()
RAW = {
    name: _imports(p)
    for pkg in PACKAGES
    for p in (ROOT / pkg).rglob("*.py")
    if "migrations" not in p.parts
    for name in [_module_name(p)]
}


def test_the_graph_sees_the_packages() -> None:
    # A walk that found nothing would pass every rule below.
    assert {"serving.app", "tradefinance.matching", "simulator.simulate"} <= GRAPH.keys()
    assert "tradefinance.rules" in GRAPH["tradefinance.insurance"]


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_what_the_layout_allows(package: str) -> None:
    bad = sorted(
        f"{mod} imports {dep}"
        for mod, deps in RAW.items()
        if mod.split(".")[0] == package
        for dep in deps
        if dep.split(".")[0] in PACKAGES
        and dep.split(".")[0] != package
        and dep.split(".")[0] not in ALLOWED[package]
    )
    assert not bad, "; ".join(bad)


def test_simulator_uses_only_the_table_contracts() -> None:
    bad = sorted(
        f"{mod} imports {dep}"
        for mod, deps in RAW.items()
        if mod.startswith("simulator")
        for dep in deps
        if dep.split(".")[0] == "features" and ".".join(dep.split(".")[:2]) not in SIMULATOR_MAY_USE
    )
    assert not bad, "; ".join(bad)


def test_the_domain_needs_no_http() -> None:
    bad = sorted(
        f"{mod} imports {dep}"
        for mod, deps in RAW.items()
        if mod.split(".")[0] in ("tradefinance", "training", "features", "simulator")
        for dep in deps
        if dep.split(".")[0] in HTTP_LIBRARIES
    )
    assert not bad, "; ".join(bad)


def test_routers_never_import_routers() -> None:
    bad = sorted(
        f"{mod} imports {dep}"
        for mod, deps in GRAPH.items()
        if mod.startswith("serving.routers.")
        for dep in deps
        if dep.startswith("serving.routers.")
    )
    assert not bad, "; ".join(bad)


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [node])
    # package __init__ re-exports are not cycles of logic; everything else is
    assert not cycles, "; ".join(cycles)


def _long_functions(limit: int) -> list[str]:
    out = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    doc = ast.get_docstring(node) or ""
                    if length > limit and "long because" not in doc.lower():
                        out.append(f"{_module_name(path)}.{node.name} ({length} lines)")
    return sorted(out)


def test_no_function_is_longer_than_a_screenful_without_a_reason() -> None:
    # ~100 lines; a longer one says why in its docstring ("long because ...").
    long = _long_functions(110)
    assert not long, "; ".join(long)
