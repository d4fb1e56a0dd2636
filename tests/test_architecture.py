"""The library's shape, checked by reading its source (docs/ARCHITECTURE.md):

- no import cycle between its modules, counting imports inside functions and the lazy
  ``_LAZY`` maps of the package ``__init__`` files;
- imports point one way across the layers: ``mip`` (numpy, Pyomo, HiGHS, cvxpy; no torch) <-
  ``spr`` <- ``compress_extras``;
- no file over 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mip", "spr", "compress_extras")
LAYER = {"mip": 0, "spr": 1, "compress_extras": 2}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The library module ``name`` refers to (the longest known prefix), or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    """Library modules ``module`` imports anywhere in its source (also inside functions),
    plus the string values of dict literals that name modules (lazy-import maps)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Dict):
            targets.update(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str)
                           and v.value in MODULES)
    resolved = {_resolve(t) for t in targets}
    return {t for t in resolved if t is not None and t != module}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert len(MODULES) > 100 and GRAPH["spr"] >= {"spr.data", "spr._regularizer"}


def test_no_import_cycle():
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layers_import_downward():
    upward = [(a, b) for a, targets in GRAPH.items() for b in targets
              if LAYER[b.split(".")[0]] > LAYER[a.split(".")[0]]]
    assert upward == []


def test_mip_imports_no_torch():
    for name, path in MODULES.items():
        if name.startswith("mip"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n.split(".")[0] == "torch" for n in names), name


def test_files_are_small():
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines())
             for path in MODULES.values()}
    assert {f: n for f, n in sizes.items() if n > MAX_LINES} == {}
