"""Builders for the Grafana JSON model: panels, template variables, annotations, dashboards.

Only what upwatch's dashboards use. Every panel and query points at the one
provisioned datasource; panels are laid out left to right, 24 columns wide.
"""

from __future__ import annotations

from typing import Any

DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "upwatch-db"}
Json = dict[str, Any]

# Grafana chooses $__interval from the range and the panel width; from one
# minute up the per-minute rollups are exact, below it only raw rows are.
RAW = "$__interval_ms < 60000"
ROLLUP = "$__interval_ms >= 60000"
# Points per series: enough for a smooth line, and it makes 30 days one point per
# hour, which the hourly rollups serve.
MAX_DATA_POINTS = 500
# Rollup rows for the range: hourly ones where Grafana asks for points an hour
# or more apart (sql/0050), per-minute ones otherwise; same columns either way.
PROBE_ROLLUP = "probe_rollup($__timeFrom(), $__timeTo(), $__interval_ms)"
REQUEST_ROLLUP = "request_rollup($__timeFrom(), $__timeTo(), $__interval_ms)"
# Phase timings and status codes are only in raw rows and in the hourly detail rollup
# (sql/0180): raw rows for points closer than an hour, the endpoint `e`'s hourly rows otherwise.
BELOW_HOURLY = "$__interval_ms < 3600000"
HOURLY = "$__interval_ms >= 3600000"
PROBE_DETAIL = "probe_detail($__timeFrom(), $__timeTo(), e.id)"


def target(sql: str, fmt: str = "time_series", ref: str = "A") -> Json:
    """One raw-SQL query of a panel."""
    return {"refId": ref, "datasource": DATASOURCE, "editorMode": "code", "format": fmt,
            "rawQuery": True, "rawSql": sql.strip()}


def _panel(kind: str, title: str, description: str, targets: list[Json], size: tuple[int, int],
           defaults: Json, options: Json, overrides: list[Json] | None = None, **extra: Any) -> Json:
    return {"type": kind, "title": title, "description": description, "datasource": DATASOURCE,
            "gridPos": {"w": size[0], "h": size[1]}, "maxDataPoints": MAX_DATA_POINTS, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []}, "options": options, **extra}


def timeseries(title: str, description: str, *sqls: str, unit: str = "short", stack: bool = False,
               bars: bool = False, size: tuple[int, int] = (12, 8), overrides: list[Json] | None = None,
               **extra: Any) -> Json:
    """A time series panel; each SQL returns a "time" column plus numeric columns (long or wide)."""
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1, "fillOpacity": 60 if (stack or bars) else 10,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults = {"unit": unit, "custom": custom, "min": 0}
    options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
               "tooltip": {"mode": "multi", "sort": "desc"}}
    targets = [target(sql, "time_series", chr(ord("A") + i)) for i, sql in enumerate(sqls)]
    return _panel("timeseries", title, description, targets, size, defaults, options, overrides, **extra)


def stat(title: str, description: str, sql: str, *, unit: str = "short", size: tuple[int, int] = (6, 4),
         thresholds: list[Json] | None = None, mappings: list[Json] | None = None, decimals: int | None = None,
         overrides: list[Json] | None = None) -> Json:
    """Single numbers: one row whose numeric columns are each shown."""
    defaults: Json = {"unit": unit, "mappings": mappings or [], "color": {"mode": "thresholds"},
                      "thresholds": {"mode": "absolute", "steps": thresholds or [{"color": "blue", "value": None}]}}
    if decimals is not None:
        defaults["decimals"] = decimals
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "colorMode": "value", "graphMode": "none", "textMode": "value_and_name", "orientation": "auto",
               "justifyMode": "auto"}
    return _panel("stat", title, description, [target(sql, "table")], size, defaults, options, overrides)


def table(title: str, description: str, sql: str, columns: tuple[str, ...], *, size: tuple[int, int] = (24, 8),
          overrides: list[Json] | None = None, mappings: list[Json] | None = None) -> Json:
    """A table showing `columns` of what the query returns, in that order.

    The list is stored as an organize transformation, so the panel states what it shows and the
    dashboard tests can hold the query to it (tests/grafana: every column returned and filled).
    """
    defaults = {"custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
                "mappings": mappings or []}
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}}
    organize = {"id": "organize", "options": {"excludeByName": {}, "renameByName": {},
                                              "indexByName": {name: i for i, name in enumerate(columns)}}}
    return _panel("table", title, description, [target(sql, "table")], size, defaults, options, overrides,
                  transformations=[organize])


def bargauge(title: str, description: str, sql: str, *, unit: str = "short", size: tuple[int, int] = (12, 8),
             thresholds: list[Json] | None = None, minimum: float | None = None,
             maximum: float | None = None) -> Json:
    """One bar per row: a text label column plus a numeric column."""
    defaults: Json = {"unit": unit, "color": {"mode": "thresholds"},
                      "thresholds": {"mode": "absolute", "steps": thresholds or [{"color": "blue", "value": None}]}}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    options = {"reduceOptions": {"values": True, "calcs": [], "fields": ""}, "orientation": "horizontal",
               "displayMode": "gradient", "showUnfilled": True, "valueMode": "color", "namePlacement": "left"}
    return _panel("bargauge", title, description, [target(sql, "table")], size, defaults, options)


def piechart(title: str, description: str, sql: str, *, size: tuple[int, int] = (8, 8)) -> Json:
    """Shares of a whole: a text label column plus a numeric column, one row per slice."""
    options = {"reduceOptions": {"values": True, "calcs": [], "fields": ""}, "pieType": "donut",
               "displayLabels": ["name", "percent"],
               "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "values": ["value"]},
               "tooltip": {"mode": "single"}}
    return _panel("piechart", title, description, [target(sql, "table")], size, {"unit": "short"}, options)


def heatmap(title: str, description: str, sql: str, *, size: tuple[int, int] = (24, 10)) -> Json:
    """Pre-bucketed heatmap: a time column plus one numeric column per row of cells."""
    options = {"calculate": False, "cellGap": 1, "yAxis": {"axisPlacement": "left"},
               "rowsFrame": {"layout": "auto"}, "showValue": "never",
               "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5, "fill": "dark-orange",
                         "scale": "exponential", "min": 0, "max": 1},
               "tooltip": {"mode": "single", "yHistogram": False}, "legend": {"show": True},
               "filterValues": {"le": 1e-9}}
    return _panel("heatmap", title, description, [target(sql, "time_series")], size, {"unit": "percentunit"}, options)


def override(field: str, **properties: Any) -> Json:
    """Field override by exact name; properties like unit="ms" or links=[...]."""
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": key, "value": value} for key, value in properties.items()]}


def query_variable(name: str, label: str, sql: str) -> Json:
    """A single-value template variable filled by a query (first column = value)."""
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "query": sql,
            "definition": sql, "refresh": 1, "multi": False, "includeAll": False, "sort": 1,
            "current": {}, "options": [], "hide": 0, "skipUrlSync": False, "regex": ""}


def annotation(name: str, sql: str, color: str) -> Json:
    """Annotations from SQL returning time (and optional timeend), text and tags."""
    return {"name": name, "datasource": DATASOURCE, "enable": True, "hide": False, "iconColor": color,
            "target": target(sql, "table", "Anno")}


def steps(*pairs: tuple[str, float | None]) -> list[Json]:
    """Threshold steps from (color, lower bound) pairs; the first bound is None."""
    return [{"color": color, "value": value} for color, value in pairs]


def dashboard(uid: str, title: str, description: str, panels: list[Json], *, variables: list[Json] | None = None,
              annotations: list[Json] | None = None, time_from: str = "now-24h") -> Json:
    """The dashboard model, with ids and grid positions assigned in order."""
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
               "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}
    return {"uid": uid, "title": title, "description": description, "tags": ["upwatch"], "editable": False,
            "timezone": "browser", "schemaVersion": 39, "version": 1, "refresh": "1m", "graphTooltip": 1,
            "time": {"from": time_from, "to": "now"}, "fiscalYearStartMonth": 0, "liveNow": False,
            "links": [{"title": "upwatch", "type": "dashboards", "tags": ["upwatch"], "asDropdown": True,
                       "includeVars": False, "keepTime": True}],
            "templating": {"list": variables or []},
            "annotations": {"list": [builtin, *(annotations or [])]},
            "panels": _layout(panels)}


def _layout(panels: list[Json]) -> list[Json]:
    x = y = row_height = 0
    for number, panel in enumerate(panels, start=1):
        w, h = panel["gridPos"]["w"], panel["gridPos"]["h"]
        if x + w > 24:
            x, y, row_height = 0, y + row_height, 0
        panel["id"] = number
        panel["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x, row_height = x + w, max(row_height, h)
    return panels
