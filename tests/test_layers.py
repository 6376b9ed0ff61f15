"""The package is layered (docs/architecture.md): imports point down, and no modules import in a circle.

The check reads every module's imports (lazy ones inside functions included) with `ast`, so an upward
or circular import fails here before anyone notices it as a tangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bench"

# Bottom to top: a module may import from its own layer and the layers before it, except SIBLINGS.
LAYERS = ("core", "records", "measure", "history", "analysis", "run", "present", "cli")
# Layers a layer must not import although they sit below it: measure/ and history/ are siblings (neither
# imports the other), and what describes or judges a measurement (records, the store, the analysis)
# never imports what measures: the pure pieces they share (sample statistics, fingerprint identity,
# machine load as data, the budget's defaults and shortfall record) live in core/.
FORBIDDEN = {"history": {"measure"}, "measure": {"history"}, "analysis": {"measure"}}
# Top-level modules and packages outside the layer folders, and the layer they belong to.
TOP_LEVEL = {"__init__": "core", "testing": "core", "__main__": "cli", "pytest_plugin": "cli"}


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = ["bench", *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            candidates = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for c in candidates:
            # the deepest known module this name refers to (a name imported from a module is that module)
            while c and c not in known:
                c = c.rpartition(".")[0]
            if c and c != name and c != "bench" and not name.startswith(c + "."):
                found.add(c)
    return found


def layer_of(name: str) -> int:
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    layer = top if top in LAYERS else TOP_LEVEL.get(top)
    if layer is None:
        raise AssertionError(f"{name} is in no layer: put it under one of {', '.join(LAYERS)}")
    return LAYERS.index(layer)


def graph() -> dict[str, set[str]]:
    mods = module_names()
    return {m: imports_of(m, p, set(mods)) for m, p in mods.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({LAYERS[layer_of(m)]}) imports {t} ({LAYERS[layer_of(t)]})"
                  for m, targets in edges.items() for t in targets if layer_of(t) > layer_of(m))


def forbidden_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({LAYERS[layer_of(m)]}) imports {t} ({LAYERS[layer_of(t)]})"
                  for m, targets in edges.items() for t in targets
                  if LAYERS[layer_of(t)] in FORBIDDEN.get(LAYERS[layer_of(m)], ()))


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_every_module_sits_in_a_layer():
    for name in module_names():
        layer_of(name)


def test_no_module_imports_from_a_higher_layer():
    assert upward_imports(graph()) == []


def test_records_history_and_analysis_import_nothing_that_measures():
    assert forbidden_imports(graph()) == []


def test_no_modules_import_each_other_in_a_circle():
    assert import_cycles(graph()) == []


def test_the_checker_finds_an_upward_import_and_a_cycle():
    edges = {"bench.core.a": {"bench.run.b"}, "bench.run.b": {"bench.run.c"}, "bench.run.c": {"bench.run.b"}}
    assert upward_imports(edges) == ["bench.core.a (core) imports bench.run.b (run)"]
    assert import_cycles(edges) == [["bench.run.b", "bench.run.c"]]
    edges = {"bench.records.r": {"bench.measure.m"}, "bench.analysis.a": {"bench.measure.m", "bench.records.r"},
             "bench.measure.m": {"bench.records.r"}}
    assert upward_imports(edges) == ["bench.records.r (records) imports bench.measure.m (measure)"]
    assert forbidden_imports(edges) == ["bench.analysis.a (analysis) imports bench.measure.m (measure)"]


@pytest.mark.parametrize("source, expected", [
    ("from bench.run.sweep import run_sweep", {"bench.run.sweep"}),
    ("from ..records import sweep", {"bench.records.sweep"}),
    ("def f():\n    import bench.present.fmt as fmt", {"bench.present.fmt"}),
])
def test_imports_are_read_including_relative_and_lazy_ones(tmp_path, source, expected):
    path = tmp_path / "mod.py"
    path.write_text(source)
    known = {"bench.run.sweep", "bench.records", "bench.records.sweep", "bench.present.fmt", "bench.analysis.x"}
    assert imports_of("bench.analysis.x", path, known) == expected
