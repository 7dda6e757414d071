"""The pages import only the ground layer, config and their own modules (issue #12's layering)."""

from __future__ import annotations

import ast
from pathlib import Path

import upwatch.config.alerting
from upwatch import maintenance

ROOT = Path(__file__).resolve().parents[2]
# upwatch covers the ground modules and upwatch.config; prober.checks is a registry (degraded conditions
# are evaluated as checks evaluate assertions).
OWN = {"prober.pages", "prober.checks", "upwatch"}
SERVICES = {"prober", "push", "detector", "alerter"}


def imported(path: Path) -> set[str]:
    """Every module name an import statement in `path` names (relative imports resolved to their package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_pages_import_no_other_service() -> None:
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "prober" / "pages").rglob("*.py")
        for name in imported(path)
        if name.split(".")[0] in SERVICES and not any(name == o or name.startswith(o + ".") for o in OWN)
    }
    assert offending == set()


def test_maintenance_is_ground_layer() -> None:
    names = imported(ROOT / "upwatch" / "maintenance.py")
    assert not {n for n in names if n.split(".")[0] in SERVICES or n.startswith("upwatch.config")}
    # The config validates day names against its own list; both must name the same weekdays in order.
    assert maintenance.DAYS == upwatch.config.alerting.DAYS
