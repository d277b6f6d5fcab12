"""The architecture of signerd, checked from its source: the layers, the absence of import
cycles and the purity of the core.

Layers, lowest first; a module may import only from its own layer or lower ones:

1. ``signerd.core``: pure logic (model, policy, approvals, authority, audit chain, codecs)
2. ``signerd.adapters``: the edges (HSM, store, config, PKI, logs, metrics, lifecycle)
3. ``signerd.services``: the use cases
4. ``signerd.app``: the composition of services and adapters
5. ``signerd.api`` (gRPC, the driving adapter) and ``signerd.cli`` (signerctl: core, adapters
   and ``signerd.v1`` only, never services or app)
6. ``signerd.daemon``: the entry point

``signerd`` itself (its ``__init__``: the version) is below them all; ``signerd.v1``, the
generated protobuf code, may be imported by api, cli, app and daemon only.

Every ``import`` counts, at module level or inside a function; an import under
``if TYPE_CHECKING:`` counts for the layers but not for cycles (it never runs).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "signerd"

# layer name -> (rank, the layers it may import)
LAYERS: dict[str, tuple[int, frozenset[str]]] = {
    "root": (0, frozenset({"root"})),
    "core": (1, frozenset({"root", "core"})),
    "adapters": (2, frozenset({"root", "core", "adapters"})),
    "services": (3, frozenset({"root", "core", "adapters", "services"})),
    "app": (4, frozenset({"root", "core", "adapters", "services", "app", "v1"})),
    "api": (5, frozenset({"root", "core", "adapters", "services", "app", "api", "v1"})),
    "cli": (5, frozenset({"root", "core", "adapters", "cli", "v1"})),
    "daemon": (6, frozenset({"root", "core", "adapters", "services", "app", "api", "cli",
                             "daemon", "v1"})),
    "v1": (0, frozenset({"root", "v1"})),
}

# Modules the core may not import (I/O edges); a prefix match on the dotted name.
IO_MODULES = ("sqlite3", "psycopg", "psycopg2", "grpc", "grpc_health", "grpc_reflection",
              "pkcs11", "socket", "subprocess", "prometheus_client", "signerd.v1",
              "os", "stat", "shutil", "tempfile", "pathlib")


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "signerd":
        raise ValueError(f"{module} is not a module of signerd")
    if len(parts) == 1:
        return "root"
    top = parts[1]
    if top in ("core", "adapters", "services", "api", "v1"):
        return top
    if top in ("app", "cli", "daemon"):
        return top
    raise ValueError(f"{module} is in no layer (signerd.{top}: add it to a layer package)")


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module
    path: str  # its file, relative to the repository
    line: int
    target: str  # dotted module imported (resolved; a module of signerd or any other)
    type_only: bool  # under ``if TYPE_CHECKING:``
    late: bool  # inside a function


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_of(source: str, module: str, is_package: bool, path: str,
               known: set[str]) -> list[Import]:
    """Every import statement of a module, at any depth. ``from X import a`` names the module
    ``X.a`` when that is a module of ``known``, else ``X``; relative imports are resolved."""
    package = module if is_package else module.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, type_only: bool, late: bool) -> None:
        for child in ast.iter_child_nodes(node):
            t, lt = type_only, late
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                lt = True
            if isinstance(child, ast.Import):
                for a in child.names:
                    out.append(Import(module, path, child.lineno, a.name, t, lt))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    if child.level - 1 > len(base) - 1:
                        raise ValueError(f"{path}:{child.lineno}: relative import beyond signerd")
                    base = base[:len(base) - (child.level - 1)]
                    source_mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    source_mod = child.module or ""
                for a in child.names:
                    sub = f"{source_mod}.{a.name}"
                    target = sub if sub in known else source_mod
                    out.append(Import(module, path, child.lineno, target, t, lt))
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                # the body only under type checking; the else branch runs
                for stmt in child.body:
                    visit_stmt(stmt, True, lt)
                for stmt in child.orelse:
                    visit_stmt(stmt, t, lt)
                continue
            visit(child, t, lt)

    def visit_stmt(stmt: ast.stmt, type_only: bool, late: bool) -> None:
        wrapper = ast.Module(body=[stmt], type_ignores=[])
        visit(wrapper, type_only, late)

    visit(ast.parse(source), False, False)
    return out


def scan(root: Path) -> tuple[set[str], list[Import]]:
    """The modules of the package at ``root / 'signerd'`` (generated *_pb2* files left out)
    and all their imports."""
    files = sorted(p for p in (root / "signerd").rglob("*.py") if "_pb2" not in p.name)
    names = {p: module_name(p, root) for p in files}
    known = {m for m, _ in names.values()}
    # the generated modules are still modules one may import
    known |= {module_name(p, root)[0] for p in (root / "signerd").rglob("*_pb2*.py")}
    found: list[Import] = []
    for p in files:
        m, is_pkg = names[p]
        found += imports_of(p.read_text(encoding="utf-8"), m, is_pkg,
                            str(p.relative_to(root)), known)
    return {m for m, _ in names.values()}, found


def layer_violations(imports: list[Import]) -> list[str]:
    out = []
    for i in imports:
        if i.target.split(".")[0] != "signerd":
            continue
        src, dst = layer_of(i.importer), layer_of(i.target)
        rank, allowed = LAYERS[src]
        if dst not in allowed:
            out.append(f"{i.path}:{i.line}: {i.importer} imports {i.target}: {src} (layer "
                       f"{rank}) may import only {', '.join(sorted(allowed))}, not {dst} "
                       f"(layer {LAYERS[dst][0]})"
                       + (" [under TYPE_CHECKING]" if i.type_only else ""))
    return out


def find_cycles(modules: set[str], imports: list[Import]) -> list[list[str]]:
    """One cycle per strongly connected component of the runtime import graph (imports under
    TYPE_CHECKING left out), each as a path that starts and ends at the same module."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for i in imports:
        if not i.type_only and i.target in modules and i.target != i.importer:
            graph[i.importer].add(i.target)
    # Tarjan's strongly connected components, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    components.append(sorted(comp))
    cycles = []
    for comp in components:
        members = set(comp)
        # a shortest cycle through the component's first module (breadth first)
        first = comp[0]
        prev: dict[str, str] = {}
        frontier = [first]
        found = None
        while frontier and found is None:
            nxt_frontier = []
            for n in frontier:
                for m in sorted(graph[n] & members):
                    if m == first:
                        found = n
                        break
                    if m not in prev:
                        prev[m] = n
                        nxt_frontier.append(m)
                if found is not None:
                    break
            frontier = nxt_frontier
        path = [first]
        n = found
        while n is not None and n != first:
            path.append(n)
            n = prev.get(n)
        path.append(first)
        cycles.append(list(reversed(path)))
    return cycles


def cycle_message(cycle: list[str], imports: list[Import]) -> str:
    steps = []
    for a, b in zip(cycle, cycle[1:]):
        where = next((f"{i.path}:{i.line}{' (in a function)' if i.late else ''}" for i in imports
                      if i.importer == a and i.target == b and not i.type_only), "?")
        steps.append(f"{a} -> {b} [{where}]")
    return "import cycle: " + "; ".join(steps)


def core_io_violations(imports: list[Import]) -> list[str]:
    out = []
    for i in imports:
        if layer_of(i.importer) != "core":
            continue
        if any(i.target == m or i.target.startswith(m + ".") for m in IO_MODULES):
            out.append(f"{i.path}:{i.line}: core module {i.importer} imports {i.target}, an "
                       "I/O edge (the core is pure logic: I/O belongs to signerd.adapters)")
    return out


# Where a function may import a module of signerd: deliberately late, and no cycle (the daemon
# keeps `signerd --help` and `signerd init` light; the store factory loads the PostgreSQL driver
# only for a PostgreSQL URL). Anywhere else an import inside a function would only hide a cycle
# or a layer: it belongs at the top.
LATE_ALLOWED = frozenset({"signerd.daemon", "signerd.adapters.store.factory"})


def late_violations(imports: list[Import]) -> list[str]:
    return [f"{i.path}:{i.line}: {i.importer} imports {i.target} in a function"
            for i in imports
            if i.late and i.target.split(".")[0] == "signerd" and i.importer not in LATE_ALLOWED]


@pytest.fixture(scope="module")
def tree() -> tuple[set[str], list[Import]]:
    return scan(ROOT)


def test_every_module_is_in_a_layer(tree: tuple[set[str], list[Import]]) -> None:
    modules, _ = tree
    for m in sorted(modules):
        layer_of(m)  # raises, naming the module, when it is in no layer
    assert {"signerd.core.model", "signerd.adapters.hsm", "signerd.services.transfers",
            "signerd.app", "signerd.api.server", "signerd.cli", "signerd.daemon"} <= modules


@pytest.mark.parametrize("check, broken", [
    (layer_violations, "layer rule broken:\n"),
    (core_io_violations, "core purity rule broken:\n"),
    (late_violations, "function-level imports of signerd outside LATE_ALLOWED:\n"),
], ids=["layers", "core_does_no_io", "late_imports_are_deliberate"])
def test_import_rule(tree: tuple[set[str], list[Import]],
                     check: Callable[[list[Import]], list[str]], broken: str) -> None:
    _, imports = tree
    bad = check(imports)
    assert not bad, broken + "\n".join(bad)


def test_no_import_cycles(tree: tuple[set[str], list[Import]]) -> None:
    modules, imports = tree
    cycles = find_cycles(modules, imports)
    assert not cycles, "\n".join(cycle_message(c, imports) for c in cycles)


def test_the_checks_catch_violations(tmp_path: Path) -> None:
    """The checker on a synthetic package: a core module importing an adapter (late, in a
    function), a cycle between two services, one through a relative import, the core
    reaching a socket, cli importing a service, and a TYPE_CHECKING import that breaks a layer
    but makes no cycle."""
    files = {
        "signerd/__init__.py": "",
        "signerd/core/__init__.py": "",
        "signerd/core/model.py": "import socket\n\ndef f():\n    from signerd.adapters import hsm\n",
        "signerd/core/policy.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from ..services.a import X\n"),
        "signerd/adapters/__init__.py": "",
        "signerd/adapters/hsm.py": "from signerd.core import model\n",
        "signerd/services/__init__.py": "",
        "signerd/services/a.py": "from . import b\n",
        "signerd/services/b.py": "def g():\n    from .a import X\n",
        "signerd/cli.py": "from signerd.services.a import X\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules, imports = scan(tmp_path)
    layers = layer_violations(imports)
    assert any(v.startswith("signerd/core/model.py:4: signerd.core.model imports "
                            "signerd.adapters.hsm: core (layer 1)") for v in layers), layers
    assert any(v.startswith("signerd/cli.py:1: signerd.cli imports signerd.services.a: cli")
               for v in layers), layers
    assert any(v.startswith("signerd/core/policy.py:3:") and "TYPE_CHECKING" in v
               for v in layers), layers
    assert len(layers) == 3, layers
    cycles = find_cycles(modules, imports)
    assert cycles == [["signerd.adapters.hsm", "signerd.core.model", "signerd.adapters.hsm"],
                      ["signerd.services.a", "signerd.services.b", "signerd.services.a"]]
    message = cycle_message(cycles[1], imports)
    assert "signerd/services/b.py:2 (in a function)" in message, message
    io = core_io_violations(imports)
    assert io and io[0].startswith("signerd/core/model.py:1: core module signerd.core.model "
                                   "imports socket"), io
    assert len(io) == 1, io
    assert late_violations(imports) == [
        "signerd/core/model.py:4: signerd.core.model imports signerd.adapters.hsm in a function",
        "signerd/services/b.py:2: signerd.services.b imports signerd.services.a in a function"]
    # an import that runs only under type checking closes no cycle
    (tmp_path / "signerd/services/b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import X\n")
    modules, imports = scan(tmp_path)
    assert find_cycles(modules, imports) == [
        ["signerd.adapters.hsm", "signerd.core.model", "signerd.adapters.hsm"]]


SQL_METHODS = frozenset({"one", "all", "execute"})


def sql_outside_the_store(root: Path) -> list[str]:
    """Calls of a store transaction's raw SQL methods (``tx.one``, ``tx.all``, ``tx.execute``)
    outside ``signerd/adapters/store``: every query of the services is a ``Tx`` method, so the
    schema and the row codec live in one place."""
    out = []
    for p in sorted((root / "signerd").rglob("*.py")):
        rel = p.relative_to(root)
        if rel.parts[:3] == ("signerd", "adapters", "store") or "_pb2" in p.name:
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SQL_METHODS
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "tx"):
                out.append(f"{rel}:{node.lineno}: tx.{node.func.attr}(...)")
    return out


def test_queries_live_in_the_store() -> None:
    bad = sql_outside_the_store(ROOT)
    assert not bad, "SQL outside signerd/adapters/store (add a Tx method):\n" + "\n".join(bad)


def test_the_sql_check_catches_a_query(tmp_path: Path) -> None:
    (tmp_path / "signerd/services").mkdir(parents=True)
    (tmp_path / "signerd/adapters/store").mkdir(parents=True)
    (tmp_path / "signerd/services/a.py").write_text(
        "def f(tx):\n    return tx.one('SELECT * FROM wallets')\n")
    (tmp_path / "signerd/adapters/store/__init__.py").write_text(
        "def g(tx):\n    return tx.execute('SELECT 1')\n")
    assert sql_outside_the_store(tmp_path) == ["signerd/services/a.py:2: tx.one(...)"]


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports test modules by basename (the test folders are not packages): two
    ``test_x.py`` in different folders stop the whole suite at collection."""
    seen: dict[str, Path] = {}
    clash = []
    for p in sorted((ROOT / "tests").rglob("test_*.py")):
        if "node_modules" in p.parts:
            continue
        if p.name in seen:
            clash.append(f"{seen[p.name].relative_to(ROOT)} and {p.relative_to(ROOT)}")
        seen.setdefault(p.name, p)
    assert not clash, "test modules with the same basename:\n" + "\n".join(clash)
