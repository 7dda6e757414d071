"""The import graph of our packages has no cycles and follows the layering of docs/layering.md.

Every import counts: at module level, inside functions and under TYPE_CHECKING. So do the package
`__init__` modules an import runs on the way (`import a.b.c` runs a/__init__ and a/b/__init__): a
cycle through one of those breaks at start-up just the same, depending on which module is loaded first.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Directories whose .py files import each other by absolute names rooted there. grafana/src holds
# the dashboard generator's scripts, which import each other as top-level modules (`import panels`).
ROOTS = {REPO: ("upwatch", "prober", "push", "detector", "alerter", "upwatch_client"), REPO / "grafana" / "src": ()}

# Cycles other branches of this session remove, each by the imports that close it as
# (importer, imported) pairs, a pair covering the modules inside either package. The lead deletes an
# entry when its branch is merged; the test fails while an entry is stale, so none stays behind.
Allowance = frozenset[tuple[str, str]]
KNOWN_CYCLES: dict[str, Allowance] = {}
# Imports against the layering that other branches of this session remove; same life cycle.
KNOWN_VIOLATIONS: dict[str, Allowance] = {}


@dataclass(frozen=True)
class Edge:
    """`importer` imports `imported`, at `line` of the importer's file."""

    importer: str
    imported: str
    line: int


def modules() -> dict[str, Path]:
    """Every module of our packages by dotted name (a package by its own name, for its __init__)."""
    found: dict[str, Path] = {}
    for root, packages in ROOTS.items():
        files = [f for p in packages for f in (root / p).rglob("*.py")] if packages else list(root.glob("*.py"))
        for path in files:
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def ancestors(name: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b']."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name of a `from X import ...` statement's X."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def targets(node: ast.stmt, module: str, is_package: bool, known: set[str]) -> list[tuple[str, bool]]:
    """(module, whether only its namespace is used) for each name an import statement imports."""
    if isinstance(node, ast.Import):
        return [(alias.name, False) for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = resolve(node, module, is_package)
        # `from pkg import x` imports the submodule pkg.x if there is one, else a name of pkg's __init__.
        return [(f"{base}.{a.name}", False) if f"{base}.{a.name}" in known else (base, True) for a in node.names]
    return []


def edges_of(module: str, tree: ast.Module, is_package: bool, known: set[str]) -> set[Edge]:
    """The imports of one module that land in our packages, with the package __init__s they run."""
    own = {module, *ancestors(module)}  # already running when this module runs
    found: set[Edge] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for name, namespace in targets(node, module, is_package, known):
            runs = [a for a in ancestors(name) if a not in own] + ([name] if namespace or name not in own else [])
            found |= {Edge(module, m, node.lineno) for m in runs if m in known and m != module}
    return found


# Registries that import their entries by module path on first use, so that `import upwatch.config`
# (which checks names against them) stays free of pandas and scikit-learn: module -> its table's name.
# The table's string values are edges like any import, so the graph still sees them.
BY_NAME = {"detector.models": "MODELS"}


def registered(module: str, tree: ast.Module) -> set[Edge]:
    """Edges to the module paths written as the values of a BY_NAME registry's table."""
    table = BY_NAME.get(module)
    found: set[Edge] = set()
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == table and isinstance(node.value, ast.Dict):
            found |= {Edge(module, v.value, v.lineno) for v in node.value.values
                      if isinstance(v, ast.Constant) and isinstance(v.value, str)}
    return found


@functools.cache
def graph() -> dict[str, set[Edge]]:
    """Each module's imports of our modules."""
    known = modules()
    found = {}
    for name, path in sorted(known.items()):
        tree = ast.parse(path.read_text(), str(path))
        found[name] = edges_of(name, tree, path.name == "__init__.py", set(known)) | registered(name, tree)
    return found


def strongly_connected(edges: dict[str, set[Edge]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module (a cycle each)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for edge in edges.get(node, ()):
            if edge.imported not in index:
                visit(edge.imported)
                low[node] = min(low[node], low[edge.imported])
            elif edge.imported in stack:
                low[node] = min(low[node], index[edge.imported])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def shortest_cycle(start: str, component: set[str], edges: dict[str, set[Edge]]) -> list[Edge]:
    """The shortest import chain from `start` back to itself inside one component."""
    paths: dict[str, list[Edge]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in sorted(edges[node], key=lambda e: e.imported):
                if edge.imported == start:
                    return [*paths[node], edge]
                if edge.imported in component and edge.imported not in paths:
                    paths[edge.imported] = [*paths[node], edge]
                    following.append(edge.imported)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")


def cycles(edges: dict[str, set[Edge]]) -> list[str]:
    """One line per distinct shortest cycle through each module on a cycle, with file lines."""
    found: dict[frozenset[tuple[str, str]], str] = {}
    for component in strongly_connected(edges):
        for start in sorted(component):
            chain = shortest_cycle(start, component, edges)
            key = frozenset((e.importer, e.imported) for e in chain)
            found.setdefault(key, " -> ".join(f"{e.importer} (line {e.line})" for e in chain) + f" -> {start}")
    return sorted(found.values())


def covered(edge: Edge, allowance: Allowance) -> bool:
    return any(within(edge.importer, a) and within(edge.imported, b) for a, b in allowance)


def without(edges: dict[str, set[Edge]], allowance: Allowance) -> dict[str, set[Edge]]:
    return {m: {e for e in out if not covered(e, allowance)} for m, out in edges.items()}


def allowed(entries: dict[str, Allowance]) -> Allowance:
    return frozenset().union(*entries.values())


# Layers from the ground up (docs/layering.md); a module imports only from its layer and those below.
GROUND, REGISTRY, CONFIG, ON_CONFIG, SERVICE, CLI, ENTRY, STANDALONE = range(8)
REGISTRIES = ("prober.checks", "alerter.channels", "detector.models")
SERVICES = ("prober", "push", "detector", "alerter")
# upwatch modules that work on a loaded Config (run services, read the catalog, run commands): they
# import upwatch.config, so they sit just above it, below the services that use them.
ON_CONFIG_MODULES = ("upwatch.runtime", "upwatch.storage", "upwatch.catalog", "upwatch.commands",
                     "upwatch.reports.cli")  # `upwatch report` opens the configured database
# What a registry must never import of its own service: these import config and everything else.
SERVICE_MODULES = ("service", "cli", "app", "__main__")
GRAFANA_SCRIPTS = frozenset(p.stem for p in (REPO / "grafana" / "src").glob("*.py"))


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def layer(module: str) -> int:
    """The layer a module sits on."""
    if module in SERVICES and module != "push":
        # A service's package __init__ runs on the way to its registry; it imports nothing
        # (test_service_package_inits_import_nothing), so it sits on the ground floor.
        return GROUND
    if module.endswith(".__main__"):
        return ENTRY  # `python -m <service>` is the command line too
    if module == "upwatch.cli":
        return CLI
    if any(within(module, m) for m in ON_CONFIG_MODULES):
        return ON_CONFIG
    if within(module, "upwatch.config"):
        return CONFIG
    if within(module, "upwatch"):
        return GROUND
    if any(within(module, r) for r in REGISTRIES):
        return REGISTRY
    if any(within(module, s) for s in SERVICES):
        return SERVICE
    return STANDALONE  # upwatch_client (installed into users' apps) and the dashboard scripts


def service(module: str) -> str:
    """The service (or standalone package) a module belongs to; the push API is one of its own."""
    if module in GRAFANA_SCRIPTS:
        return "grafana"
    return module.split(".")[0]


def registry(module: str) -> str | None:
    return next((r for r in REGISTRIES if within(module, r)), None)


def violation(edge: Edge) -> str | None:
    """Why this import breaks the layering, or None."""
    a, b = edge.importer, edge.imported
    if layer(a) == STANDALONE or layer(b) == STANDALONE:
        return None if service(a) == service(b) else "upwatch_client and the dashboard scripts import none of ours"
    if layer(a) == REGISTRY:
        helper = service(a) == service(b) and layer(b) == SERVICE and b.split(".")[-1] not in SERVICE_MODULES
        if not (layer(b) == GROUND or registry(a) == registry(b) or helper):
            return "a registry imports only ground modules, its own package and its service's small helpers"
        return None
    if layer(b) > layer(a) and layer(a) != ENTRY:
        return "imports a higher layer"
    crossing = service(a) != service(b) and (service(a), service(b)) != ("prober", "push")
    # Registries are shared seams (config hands every service their Options through endpoint.options and
    # alerting.channels), so any service may import them; another service's own modules stay off limits.
    if layer(a) in (SERVICE, ENTRY) and layer(b) == SERVICE and crossing:
        return "services do not import each other (the prober mounting push is the one exception)"
    return None


def violations(edges: dict[str, set[Edge]]) -> list[str]:
    return sorted(f"{e.importer} (line {e.line}) -> {e.imported}: {why}"
                  for out in edges.values() for e in out if (why := violation(e)))


def test_graph_sees_every_kind_of_import() -> None:
    """The parts the other tests rely on: function-level, TYPE_CHECKING, relative and __init__ edges."""
    known = set(modules())
    tree = ast.parse("import typing\nif typing.TYPE_CHECKING:\n    from upwatch.config import Config\n"
                     "def f():\n    from .records import ProbeResult\n    import prober.checks.http\n")
    found = {(e.imported, e.line) for e in edges_of("upwatch.example", tree, False, known)}
    assert found == {("upwatch.config", 3), ("upwatch.records", 5), ("prober", 6), ("prober.checks", 6),
                     ("prober.checks.http", 6)}


def test_no_import_cycles() -> None:
    found = cycles(without(graph(), allowed(KNOWN_CYCLES)))
    assert not found, "import cycles:\n" + "\n".join(found)


@pytest.mark.parametrize("name", sorted(KNOWN_CYCLES))
def test_known_cycle_is_still_there(name: str) -> None:
    """A fixed cycle's allow-list entry goes, so the cycle cannot come back unnoticed."""
    edges = graph()
    others = allowed({k: v for k, v in KNOWN_CYCLES.items() if k != name})
    assert len(cycles(without(edges, others))) > len(cycles(without(edges, allowed(KNOWN_CYCLES)))), \
        f"the cycle {name!r} is gone: remove its KNOWN_CYCLES entry"


def test_layering() -> None:
    found = violations(without(graph(), allowed(KNOWN_VIOLATIONS)))
    assert not found, "imports against the layering (docs/layering.md):\n" + "\n".join(found)


@pytest.mark.parametrize("name", sorted(KNOWN_VIOLATIONS))
def test_known_violation_is_still_there(name: str) -> None:
    """A fixed violation's allow-list entry goes, so it cannot come back unnoticed."""
    found = [e for out in graph().values() for e in out if violation(e) and covered(e, KNOWN_VIOLATIONS[name])]
    assert found, f"the layering violation {name!r} is gone: remove its KNOWN_VIOLATIONS entry"


LAYER_CASES = [
    (Edge("prober.checks.http", "upwatch.config", 1),
     "a registry imports only ground modules, its own package and its service's small helpers"),
    (Edge("upwatch.durations", "upwatch.config.base", 1), "imports a higher layer"),
    (Edge("upwatch.runtime", "prober.service", 1), "imports a higher layer"),
    (Edge("alerter.cli", "upwatch.cli", 1), "imports a higher layer"),
    (Edge("prober.checks.http", "alerter.channels", 1),
     "a registry imports only ground modules, its own package and its service's small helpers"),
    (Edge("alerter.channels.email", "alerter.service", 1),
     "a registry imports only ground modules, its own package and its service's small helpers"),
    (Edge("alerter.channels.email", "alerter.records", 1), None),
    (Edge("panels", "upwatch.durations", 1), "upwatch_client and the dashboard scripts import none of ours"),
    (Edge("build", "panels", 1), None),
    (Edge("alerter.service", "detector.scoring", 1),
     "services do not import each other (the prober mounting push is the one exception)"),
    (Edge("alerter.service", "prober.checks", 1), None),
    (Edge("push.checks", "prober.checks.push", 1), None),
    (Edge("push.checks", "prober.writer", 1),
     "services do not import each other (the prober mounting push is the one exception)"),
    (Edge("upwatch_client.client", "upwatch.records", 1),
     "upwatch_client and the dashboard scripts import none of ours"),
    (Edge("prober.service", "push.app", 1), None),
    (Edge("upwatch.config.endpoints", "prober.checks", 1), None),
    (Edge("alerter.__main__", "upwatch.cli", 1), None),
    (Edge("upwatch.cli", "detector.service", 1), None),
]


@pytest.mark.parametrize(("edge", "why"), LAYER_CASES, ids=[f"{e.importer}->{e.imported}" for e, _ in LAYER_CASES])
def test_layer_rules(edge: Edge, why: str | None) -> None:
    assert violation(edge) == why


def dynamic_imports(tree: ast.Module) -> list[int]:
    """Lines that import by a computed name, which no import graph can see."""
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
        or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")))]


def test_no_dynamic_imports() -> None:
    """The graph above is the whole truth only while nothing imports by a string (importlib), except
    the BY_NAME registries, whose tables the graph reads."""
    found = [f"{path.relative_to(REPO)}:{line}" for name, path in modules().items() if name not in BY_NAME
             for line in dynamic_imports(ast.parse(path.read_text(), str(path)))]
    assert not found, "imports by computed name (use a plain import):\n" + "\n".join(found)


def test_dynamic_imports_are_seen() -> None:
    tree = ast.parse("import importlib\nimportlib.import_module('prober.cli')\n__import__('alerter')\n")
    assert dynamic_imports(tree) == [2, 3]


def test_service_package_inits_import_nothing() -> None:
    """What lets layer() put them on the ground floor."""
    for name in ("prober", "detector", "alerter"):
        tree = ast.parse((REPO / name / "__init__.py").read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)], name


def test_registry_tables_are_edges() -> None:
    found = {e.imported for e in graph()["detector.models"]}
    assert "detector.models.isolation_forest" in found
