"""The push package has no import circle, counting every import (TYPE_CHECKING and function-level too)."""

from __future__ import annotations

import ast
from pathlib import Path

import push

ROOT = Path(push.__file__).parent


def modules() -> dict[str, Path]:
    return {"push" if f.stem == "__init__" else f"push.{f.stem}": f for f in ROOT.glob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """The push modules `path` imports anywhere in its body (`from push import x` counts as push.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                name = f"{node.module}.{a.name}"
                found.add(name if name in known else node.module)
    return found & known


def cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path start -> ... -> start, if there is one."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_push_modules_import_no_circle() -> None:
    known = modules()
    graph = {name: imports(path, set(known)) - {name} for name, path in known.items()}
    assert "push.routes" in graph["push.app"]  # the walk sees imports at all
    circles = [c for name in sorted(graph) if (c := cycle_from(name, graph))]
    assert circles == []
