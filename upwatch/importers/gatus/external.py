"""Gatus `external-endpoints` (results pushed to Gatus) as upwatch push endpoints."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from upwatch.importers.gatus.endpoints import ORDER, Converted, Names
from upwatch.importers.gatus.notes import Notes, dotted, go_duration, spelled

UNSCHEDULED_PERIOD = "1d"  # what a push endpoint without Gatus heartbeat gets: upwatch requires a period


def convert(items: Any, notes: Notes, names: Names) -> list[Converted]:
    """Every convertible entry of Gatus's `external-endpoints`."""
    out = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        key = dotted("external-endpoints", i)
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            notes.skip(key, "an external endpoint needs a name; not converted")
            continue
        group = str(item.get("group") or "")
        endpoint: dict[str, Any] = {"name": names.unique(item["name"], group, key), "kind": "push"}
        for name, value in item.items():
            _external_setting(str(name), value, endpoint, f"{key}.{name}", notes)
        if "period" not in endpoint:
            endpoint["period"] = UNSCHEDULED_PERIOD
            notes.change(f"{key}.heartbeat.interval", f"not set: upwatch needs a period for a push endpoint;"
                                                     f" {UNSCHEDULED_PERIOD} is written, set how often results come")
        notes.change(key, f"results are pushed to /api/v1/checks/{endpoint['name']} (or .../fail), not to Gatus's"
                          " /api/v1/endpoints/{key}/external")
        endpoint = {k: endpoint[k] for k in ORDER if k in endpoint}
        out.append(Converted(key, endpoint, group, _list(item.get("alerts")),
                             _list(item.get("maintenance-windows"))))
    return out


def _external_setting(name: str, value: Any, out: dict[str, Any], key: str, notes: Notes) -> None:
    if name in ("name", "alerts", "maintenance-windows"):
        return
    if name == "group" and value:
        out["tags"] = [str(value)]
    elif name == "token" and value:
        out["auth"] = {"bearer": str(value)}
    elif name == "enabled":
        if value is False:
            out["enabled"] = False
    elif name == "heartbeat" and isinstance(value, dict):
        interval = value.get("interval")
        try:
            period = go_duration(interval) if interval is not None else timedelta(0)
        except ValueError as e:
            notes.skip(f"{key}.interval", f"{e}; {UNSCHEDULED_PERIOD} is written, set how often results come")
            out["period"] = UNSCHEDULED_PERIOD
            return
        if period >= timedelta(seconds=1):
            out["period"] = spelled(period)
    elif name not in ("group", "token"):
        notes.skip(key, "not a Gatus external-endpoint setting (or not in this shape); not converted")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
