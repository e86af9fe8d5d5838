"""Imports flow one way (docs/ARCHITECTURE.md): no import cycle between modules, no upward import.

The import graph is read with `ast`, nothing is imported: imports inside functions count, those under
`if TYPE_CHECKING:` do not. Layers: schemas imports none of ours; catalog only schemas; train never
ingest; ingest never catalog or train.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "ingest", "catalog", "train")
FORBIDDEN = {
    "schemas": {"ingest", "catalog", "train"},
    "catalog": {"ingest", "train"},
    "train": {"ingest"},
    "ingest": {"catalog", "train"},
}


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py of the packages under `root` (a package is its __init__)."""
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name an import statement of the file names (`from a import b` gives a and a.b)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skip, names = _type_checking_nodes(tree), set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path) -> dict[str, set[str]]:
    mods = module_files(root)
    graph = {}
    for module, path in mods.items():
        targets = {_resolve(n, mods) for n in imported_names(path, module)}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Kosaraju), each sorted."""
    order, seen = [], set()

    def visit(v: str, edges: dict[str, set[str]], out: list[str]) -> None:
        stack = [(v, iter(sorted(edges.get(v, ()))))]
        seen.add(v)
        while stack:
            node, it = stack[-1]
            nxt = next((w for w in it if w not in seen), None)
            if nxt is None:
                stack.pop()
                out.append(node)
            else:
                seen.add(nxt)
                stack.append((nxt, iter(sorted(edges.get(nxt, ())))))

    for v in sorted(graph):
        if v not in seen:
            visit(v, graph, order)
    reverse: dict[str, set[str]] = {}
    for v, ws in graph.items():
        for w in ws:
            reverse.setdefault(w, set()).add(v)
    seen, comps = set(), []
    for v in reversed(order):
        if v not in seen:
            comp: list[str] = []
            visit(v, reverse, comp)
            if len(comp) > 1:
                comps.append(sorted(comp))
    return sorted(comps)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        for t in targets
        if t.split(".")[0] in FORBIDDEN[m.split(".")[0]]
    )


def test_no_import_cycles():
    assert cycles(import_graph(ROOT)) == []


def test_no_upward_imports():
    assert upward_imports(import_graph(ROOT)) == []


def test_graph_sees_real_imports():
    graph = import_graph(ROOT)
    assert "schemas.latents" in graph["schemas.latents_reader"]
    assert "ingest.workdir" in graph["ingest.label"]  # an import inside a function
    assert "train.state" in graph["train.setup"]


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_detects_a_planted_cycle_and_upward_import(tmp_path):
    _plant(tmp_path, {
        "ingest/__init__.py": "",
        "ingest/a.py": "from . import b\n",
        "ingest/b.py": "def f():\n    from ingest.a import g\n    return g\n",
        "ingest/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ingest.d\n",
        "ingest/d.py": "import ingest.c\nimport catalog.index\n",
        "catalog/__init__.py": "",
        "catalog/index.py": "import numpy\n",
    })  # fmt: skip
    graph = import_graph(tmp_path)
    assert graph["ingest.a"] == {"ingest", "ingest.b"}
    assert graph["ingest.c"] == set()  # TYPE_CHECKING only: no edge, so c <-> d is no cycle
    assert cycles(graph) == [["ingest.a", "ingest.b"]]
    assert upward_imports(graph) == ["ingest.d -> catalog.index"]
