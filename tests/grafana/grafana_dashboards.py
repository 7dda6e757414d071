"""The provisioned dashboards as data: every query they make, and what its panel needs back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "grafana" / "provisioning"
DASHBOARD_DIR = PROVISIONING / "dashboards" / "upwatch"
DATASOURCE_FILE = PROVISIONING / "datasources" / "upwatch.yml"


@dataclass(frozen=True)
class Query:
    dashboard: str  # uid
    where: str  # panel title, "annotation: NAME" or "variable: NAME"
    kind: str  # panel type, "annotation" or "variable"
    sql: str
    format: str  # "time_series" or "table"
    interval: str | None = None  # the panel's minimum interval
    max_data_points: int | None = None

    @property
    def id(self) -> str:
        return f"{self.dashboard.removeprefix('upwatch-')}/{self.where}"


def load() -> dict[str, dict[str, Any]]:
    """Dashboard uid -> its JSON model."""
    models = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARD_DIR.glob("*.json"))]
    return {m["uid"]: m for m in models}


def datasource() -> dict[str, Any]:
    """The provisioned datasource entry."""
    (entry,) = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))["datasources"]
    return entry


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in rows."""
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(model: dict[str, Any]) -> Iterator[Query]:
    """Every SQL query of a dashboard: panel targets, annotations and template variables."""
    uid = model["uid"]
    for panel in panels(model):
        for target in panel.get("targets", []):
            where = panel["title"] + ("" if len(panel["targets"]) == 1 else f" [{target['refId']}]")
            yield Query(uid, where, panel["type"], target["rawSql"], target.get("format", "time_series"),
                        panel.get("interval"), panel.get("maxDataPoints"))
    for annotation in model.get("annotations", {}).get("list", []):
        if annotation.get("builtIn"):
            continue
        target = annotation.get("target", {})
        yield Query(uid, f"annotation: {annotation['name']}", "annotation",
                    target.get("rawSql") or annotation.get("rawQuery", ""), "table")
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            sql = variable["query"] if isinstance(variable["query"], str) else variable["query"]["rawSql"]
            yield Query(uid, f"variable: {variable['name']}", "variable", sql, "table")


def all_queries() -> list[Query]:
    """Every query of every provisioned dashboard."""
    return [q for model in load().values() for q in queries(model)]
