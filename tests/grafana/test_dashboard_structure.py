"""The dashboards as Grafana will load them: uids, datasource, panel types and ids, variables, links."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from typing import Any

import grafana_dashboards
import grafana_seed
import pytest
import yaml
from grafana_dashboards import ROOT

DASHBOARDS = grafana_dashboards.load()
EXPECTED_UIDS = {"upwatch-overview", "upwatch-endpoint", "upwatch-anomalies", "upwatch-alerts", "upwatch-traffic"}
# Core panel types of Grafana 11: no plugin needs installing.
PANEL_TYPES = {"timeseries", "stat", "table", "heatmap", "bargauge", "gauge", "piechart", "barchart", "text",
               "row", "state-timeline", "status-history", "logs"}


def test_dashboards_are_generated_from_their_source() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "grafana" / "src" / "build.py"), "--check"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def test_mypy_checks_every_dashboard_script() -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert sorted(settings["modules"]) == sorted(p.stem for p in (ROOT / "grafana" / "src").glob("*.py"))


def test_dashboard_uids_are_unique_and_complete() -> None:
    files = sorted(grafana_dashboards.DASHBOARD_DIR.glob("*.json"))
    uids = [json.loads(p.read_text())["uid"] for p in files]
    assert len(uids) == len(set(uids))
    assert set(uids) == EXPECTED_UIDS


def test_provider_loads_the_dashboard_folder() -> None:
    provider = yaml.safe_load((grafana_dashboards.PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["folder"] == "upwatch" and entry["type"] == "file"
    assert entry["options"]["path"] == "/etc/grafana/provisioning/dashboards/upwatch"


def test_datasource_reads_credentials_from_the_environment() -> None:
    ds = grafana_dashboards.datasource()
    assert ds["uid"] == "upwatch-db" and ds["user"] == "upwatch_reader"
    assert ds["jsonData"]["timescaledb"] is True
    assert ds["secureJsonData"]["password"] == "${UPWATCH_READER_PASSWORD}"
    assert re.fullmatch(r"\$\{[A-Z_]+\}", ds["url"]) and re.fullmatch(r"\$\{[A-Z_]+\}", ds["jsonData"]["database"])


def _datasource_refs(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            found.append(node["datasource"])
        for value in node.values():
            found.extend(_datasource_refs(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_datasource_refs(value))
    return found


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_every_query_uses_the_provisioned_datasource(uid: str) -> None:
    provisioned = grafana_dashboards.datasource()
    refs = [r for r in _datasource_refs(DASHBOARDS[uid]) if r.get("type") != "grafana"]
    assert refs
    assert all(r == {"type": provisioned["type"], "uid": provisioned["uid"]} for r in refs), refs
    for panel in grafana_dashboards.panels(DASHBOARDS[uid]):
        assert panel["datasource"]["uid"] == provisioned["uid"], panel["title"]


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_panels_have_unique_ids_known_types_and_fit_the_grid(uid: str) -> None:
    panels = list(grafana_dashboards.panels(DASHBOARDS[uid]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        assert panel["title"] and panel["targets"]


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_no_endpoint_or_service_name_is_hard_coded(uid: str) -> None:
    known = set(grafana_seed.endpoint_names(grafana_seed.Scale(endpoints=50))) | set(grafana_seed.SERVICES)
    for config in (ROOT / "examples" / "upwatch.yaml", ROOT / "deploy" / "upwatch.yaml"):
        if config.exists():
            known |= {e["name"] for e in yaml.safe_load(config.read_text()).get("endpoints", [])}
    text = json.dumps(DASHBOARDS[uid])
    assert not [name for name in known if f"'{name}'" in text or f'\\"{name}\\"' in text]
    for query in grafana_dashboards.queries(DASHBOARDS[uid]):
        # Any comparison with a name compares with a template variable.
        for value in re.findall(r"\bname\s*(?:=|IN)\s*\(?\s*'?([^\s')]+)", query.sql):
            assert value.startswith("$"), f"{query.id}: name compared with {value!r}"


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_time_series_queries_use_grafana_time_macros(uid: str) -> None:
    for query in grafana_dashboards.queries(DASHBOARDS[uid]):
        if query.format == "time_series":
            grouped = "$__timeGroupAlias(" in query.sql and "$__timeFilter(" in query.sql
            edges = "$__timeFrom()" in query.sql and "$__timeTo()" in query.sql  # a line across the range
            assert grouped or edges, query.id
        if query.kind not in ("variable",) and "FROM probe_results" in query.sql and "now()" not in query.sql:
            assert "$__timeFilter(" in query.sql, f"{query.id}: reads raw rows without a time filter"


def test_variables_are_the_ones_links_use() -> None:
    names = {uid: {v["name"] for v in m["templating"]["list"]} for uid, m in DASHBOARDS.items()}
    assert names["upwatch-endpoint"] == {"endpoint"}
    assert names["upwatch-traffic"] == {"service"}
    links = re.findall(r"/d/([\w-]+)\?var-(\w+)=", json.dumps(DASHBOARDS))
    assert links
    for uid, variable in links:
        assert uid in DASHBOARDS and variable in names[uid]
