"""The endpoint dashboard's "Failed assertions" panel shows what the prober really stores: a real
HTTP check with failing assertions against a local target, written by the real batch writer,
read back by the panel's query as Grafana sends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grafana_dashboards
import psycopg
from grafana_macros import Context, TimeRange, Variable, expand
from psycopg_pool import AsyncConnectionPool

from prober.checks import http
from prober.writer import BatchWriter
from tests.prober import targets
from upwatch.config.endpoints import Endpoint

ASSERTIONS = ["[STATUS] == 200", "[BODY].status == DOWN", {"header": {"name": "X-Version", "equals": "2.0"}},
              "len([BODY].items) > 5"]


def _panel_sql(title: str, endpoint: str) -> str:
    (query,) = [q for q in grafana_dashboards.all_queries() if q.id == f"endpoint/{title}"]
    ctx = Context(TimeRange.last(timedelta(hours=6), datetime.now(UTC) + timedelta(seconds=1)),
                  {"endpoint": Variable(endpoint)},
                  min_interval=grafana_dashboards.datasource()["jsonData"]["timeInterval"])
    return expand(query.sql, ctx, panel_interval=query.interval, panel_max_data_points=query.max_data_points)


async def test_failed_assertions_panel_shows_the_checks_stored_results(
        pool: AsyncConnectionPool, database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO endpoints (name, kind) VALUES ('shop', 'http') RETURNING id").fetchone()
    assert row is not None
    writer = BatchWriter(pool, tmp_path, flush_interval_s=0.05)
    await writer.start()
    session = http.new_session()
    try:
        async with targets.serve(targets.app()) as base:
            endpoint = Endpoint.model_validate({"name": "shop", "url": f"{base}/ok", "timeout": "2s",
                                                "assertions": ASSERTIONS})
            result = await http.run(endpoint, session)
    finally:
        await session.close()
    assert writer.offer("probe_results", [result.to_row(row[0], location="here", prober="test")])
    await writer.stop()
    assert not result.ok and result.error_kind == "assertion"

    columns, rows = grafana_dashboards.run_as_reader(database_url, _panel_sql("Failed assertions", "shop"))
    names = [name for name, _ in columns]
    (panel,) = [p for p in grafana_dashboards.panels(grafana_dashboards.load()["upwatch-endpoint"])
                if p["title"] == "Failed assertions"]
    assert grafana_dashboards.shown(panel, names).errors == []
    shown = [{name: value for name, value in zip(names, r, strict=True)} for r in rows]
    failed = [a.to_json() for a in result.assertions if not a.ok]
    assert [(s["assertion"], s["actual"], s["reason"], s["status_code"]) for s in shown] == \
        [(a["assertion"], a["actual"], a["reason"], 200) for a in failed]
    assert [s["assertion"] for s in shown] == ["[BODY].status == DOWN", "header X-Version == '2.0'",
                                               "len([BODY].items) > 5"]
    assert shown[0]["reason"] == "expected == DOWN, got UP" and shown[2]["actual"] == "2"
