"""The provisioned dashboards as data: every query they make, and what its panel needs back."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
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
    entry: dict[str, Any]
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


def run_as_reader(url: str, sql: str) -> tuple[list[tuple[str, int]], list[tuple]]:  # type: ignore[type-arg]
    """Run one query the way Grafana's datasource does: as upwatch_reader, read-only; (columns, rows)."""
    with psycopg.connect(url) as conn:
        conn.read_only = True
        conn.execute("SET ROLE upwatch_reader")
        conn.execute("SET statement_timeout = '10s'")
        cur = conn.execute(sql.encode())
        assert cur.description is not None, "the query returned no result set"
        columns = [(c.name, c.type_code) for c in cur.description]
        return columns, cur.fetchall()


# ${__data.fields.name}, ${__data.fields["name"]} and ${__data.fields[2]} in links and cell templates
_DATA_FIELD = re.compile(r"\$\{__data\.fields(?:\.([\w-]+)|\[\"([^\"]+)\"\]|\[(\d+)\])")


@dataclass(frozen=True)
class Shown:
    """A table panel's view of its query's columns, the way Grafana derives it."""

    fields: list[str]  # shown names, in display order, after the transformations
    errors: list[str]  # references to columns the query did not return


def shown(panel: dict[str, Any], returned: list[str]) -> Shown:
    """Apply the panel's transformations to the returned column names and check every name it refers to.

    References checked: organize's excludeByName / indexByName / renameByName keys (source names);
    field overrides by name and by regexp, ${__data.fields...} in links, and options.sortBy
    (shown names, since Grafana applies overrides after transformations); legacy table
    styles' patterns. An organize indexByName is the panel's declared column list: a returned
    column it leaves out is an error too, since Grafana would show it unlabelled at the end.
    """
    errors: list[str] = []
    fields = list(returned)
    for step in panel.get("transformations", []):
        if step["id"] != "organize":
            errors.append(f"transformation {step['id']!r} is not modelled by tests/grafana: teach shown() about it")
            continue
        fields = _organize(step.get("options", {}), fields, errors)
    for pattern in (style.get("pattern", "") for style in panel.get("styles", [])):
        if len(pattern) > 1 and pattern.startswith("/") and pattern.endswith("/"):
            found = any(re.search(pattern[1:-1], f) for f in returned)
        else:
            found = pattern in returned
        if not found:
            errors.append(f"column style for {pattern!r} matches no column the query returns")
    for name in _shown_references(panel):
        if name not in fields:
            errors.append(f"refers to column {name!r}, not among {fields}")
    for item in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = item.get("matcher", {})
        if matcher.get("id") == "byRegexp" and not any(re.search(matcher["options"], f) for f in fields):
            errors.append(f"override for /{matcher['options']}/ matches none of {fields}")
    errors.extend(f"refers to field {i}, but only {len(fields)} are shown" for i in _field_indexes(panel)
                  if i >= len(fields))
    return Shown(fields, errors)


def _organize(options: dict[str, Any], fields: list[str], errors: list[str]) -> list[str]:
    for key in ("excludeByName", "indexByName", "renameByName"):
        errors.extend(f"organize.{key} names {name!r}, which the query does not return"
                      for name in options.get(key, {}) if name not in fields)
    order = options.get("indexByName", {})
    if order:
        errors.extend(f"returned column {name!r} is not in the panel's indexByName" for name in fields
                      if name not in order)
    kept = [f for f in fields if not options.get("excludeByName", {}).get(f)]
    kept.sort(key=lambda f: order.get(f, len(order)))
    return [options.get("renameByName", {}).get(f) or f for f in kept]


def _shown_references(panel: dict[str, Any]) -> list[str]:
    names = [item["matcher"]["options"] for item in panel.get("fieldConfig", {}).get("overrides", [])
             if item.get("matcher", {}).get("id") == "byName"]
    names += [s["displayName"] for s in panel.get("options", {}).get("sortBy", [])]
    text = json.dumps(panel.get("fieldConfig", {}))
    names += [m.group(1) or m.group(2) for m in _DATA_FIELD.finditer(text) if not m.group(3)]
    return names


def _field_indexes(panel: dict[str, Any]) -> list[int]:
    return [int(m.group(3)) for m in _DATA_FIELD.finditer(json.dumps(panel.get("fieldConfig", {}))) if m.group(3)]
