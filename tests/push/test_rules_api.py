"""Threshold rules and alerts over the API (#19.5): CRUD at /rules with the config's rules read-only,
list and ack at /alerts, and an API rule over pushed logs judged by the running alerter as the logs
arrive (real HTTP, PostgreSQL and SMTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from alerter import evaluate, service
from prober.writer import BatchWriter
from push import create_app
from tests.alerter.alerting_support import Mailbox, SmtpServer, alerting, free_port, wait_for
from tests.push.conftest import ADMIN_TOKEN, CONFIG, Api
from upwatch import config
from upwatch.catalog import sync_endpoints
from upwatch.config import Config
from upwatch.runtime import Runtime

RULES = """alerting:
  rules:
    - name: web-slow
      rule: p95(latency_ms) > 2000 over 10m
      endpoint: web
"""


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port(), Mailbox())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def api(database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> AsyncIterator[Api]:
    """The push API with a config that has one threshold rule of its own."""
    cfg = config.parse(CONFIG.format(url=database_url, rate=1000.0) + RULES, "test.yaml", {})
    async with pool.connection() as conn:
        await sync_endpoints(conn, cfg.endpoints)
    writer = BatchWriter(pool, tmp_path / "spool", flush_interval_s=0.05)
    await writer.start()
    runtime = Runtime(cfg, tmp_path / "test.yaml", database_url, pool)
    client = TestClient(TestServer(create_app(runtime, writer, admin_token=ADMIN_TOKEN), host="127.0.0.1"))
    await client.start_server()
    yield Api(client, pool, writer, runtime)
    await client.close()
    await writer.stop()


async def call(api: Api, method: str, path: str, json: Any = None) -> tuple[int, Any]:
    resp = await api.client.request(method, path, json=json, headers=api.admin)
    return resp.status, await resp.json()


async def test_rules_crud_with_config_rules_listed_as_source_config(api: Api) -> None:
    await api.service("shop")
    status, created = await call(api, "POST", "/rules", {"name": "shop-errors", "service": "shop",
                                                        "rule": "error_rate > 5% over 5m"})
    assert status == 201, created
    assert (created["source"], created["severity"], created["endpoint"]) == ("api", "high", None)
    status, listed = await call(api, "GET", "/rules")
    assert status == 200
    assert [(r["name"], r["source"]) for r in listed["items"]] == [("web-slow", "config"), ("shop-errors", "api")]
    assert (await call(api, "GET", "/rules/web-slow"))[1]["rule"] == "p95(latency_ms) > 2000 over 10m"
    status, changed = await call(api, "PUT", "/rules/shop-errors", {"service": "shop", "severity": "critical",
                                                                    "rule": "error_rate > 10% over 1m"})
    assert status == 200 and (changed["rule"], changed["severity"]) == ("error_rate > 10% over 1m", "critical")
    assert (await call(api, "GET", "/rules/shop-errors"))[1]["severity"] == "critical"
    assert await call(api, "DELETE", "/rules/shop-errors") == (200, {"deleted": "shop-errors"})
    assert (await call(api, "GET", "/rules/shop-errors"))[0] == 404
    assert (await call(api, "DELETE", "/rules/shop-errors"))[0] == 404
    assert (await call(api, "PUT", "/rules/nope", {"endpoint": "web", "rule": "count > 1 over 1m"}))[0] == 404


@pytest.mark.parametrize(("method", "body"), [("PUT", {"endpoint": "web", "rule": "count > 1 over 1m"}),
                                              ("DELETE", None)], ids=["put", "delete"])
async def test_config_rules_are_read_only(api: Api, method: str, body: Any) -> None:
    status, error = await call(api, method, "/rules/web-slow", body)
    assert status == 409
    assert "config file (alerting.rules)" in error["error"] and "read-only" in error["error"]
    assert error["details"] == [{"field": "source", "reason": "config"}]
    assert (await call(api, "GET", "/rules/web-slow"))[1]["source"] == "config"


async def test_a_new_rule_cannot_take_a_config_or_api_rules_name(api: Api) -> None:
    rule = {"name": "web-slow", "endpoint": "web", "rule": "count > 1 over 1m"}
    status, error = await call(api, "POST", "/rules", rule)
    assert status == 409 and "config file" in error["error"]
    assert (await call(api, "POST", "/rules", {**rule, "name": "web-count"}))[0] == 201
    status, error = await call(api, "POST", "/rules", {**rule, "name": "web-count"})
    assert (status, error) == (409, {"error": "rule 'web-count' exists"})


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"name": "r", "endpoint": "web", "rule": "latency > 5"}, "rule", "is not a rule like"),
    ({"name": "r", "endpoint": "web", "rule": "p95(bytes) > 5 over 1m"}, "rule", "unknown field 'bytes'"),
    ({"name": "r", "endpoint": "web", "service": "shop", "rule": "count > 1 over 1m"}, "service", "exactly one"),
    ({"name": "r", "rule": "count > 1 over 1m"}, "endpoint", "exactly one"),
    ({"name": "r", "service": "no-such", "rule": "count > 1 over 1m"}, "service", "no service named 'no-such'"),
    ({"name": "r", "endpoint": "gone", "rule": "count > 1 over 1m"}, "endpoint", "no endpoint named 'gone'"),
    ({"name": "r", "endpoint": "web", "rule": "count > 1 over 1m", "severity": "low"}, "severity", "Input should"),
    ({"name": "a/b", "endpoint": "web", "rule": "count > 1 over 1m"}, "name", "letters, digits"),
    ({"name": "r", "endpoint": "web", "rule": "count > 1 over 1m", "window": "5m"}, "window", "Extra inputs"),
], ids=["grammar", "field", "both", "neither", "unknown-service", "unknown-endpoint", "severity", "name", "extra"])
async def test_invalid_rules_are_refused_naming_the_field(api: Api, body: dict[str, Any], field: str,
                                                          reason: str) -> None:
    status, error = await call(api, "POST", "/rules", body)
    assert status == 422, error
    [detail] = error["details"]
    assert detail["field"] == field and reason in detail["reason"], detail
    assert (await call(api, "GET", "/rules"))[1]["items"] == [(await call(api, "GET", "/rules/web-slow"))[1]]


async def test_rule_and_alert_routes_need_the_admin_token(api: Api) -> None:
    key = await api.service("shop")
    for method, path in [("GET", "/rules"), ("POST", "/rules"), ("GET", "/rules/web-slow"),
                         ("PUT", "/rules/web-slow"), ("DELETE", "/rules/web-slow"), ("GET", "/alerts"),
                         ("POST", "/alerts/1/ack")]:
        for headers in ({}, {"Authorization": f"Bearer {key}"}):
            resp = await api.client.request(method, path, headers=headers)
            assert resp.status == 401, (method, path, headers)


async def test_api_rule_over_pushed_logs_is_judged_by_the_running_alerter_as_logs_arrive(
        api: Api, database_url: str, smtp: SmtpServer) -> None:
    """rule_interval is an hour, so once the new rule has been judged (it fires), only the arrival of more
    logs can make the running alerter judge it again (it resolves)."""
    key = await api.service("shop")
    cfg = alerting(smtp.port, rule_interval="1h")
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(Runtime(Config(alerting=cfg), Path("upwatch.yaml"), database_url,
                                                   api.pool), stop))

    async def push(count: int) -> None:
        resp = await api.client.post("/logs", json=[{"path": "/pay", "status_code": 200}] * count,
                                     headers={"X-API-Key": key})
        assert resp.status == 202

    try:
        await push(1)
        await api.writer.flush()
        status, _ = await call(api, "POST", "/rules", {"name": "shop-quiet", "service": "shop",
                                                      "rule": "count < 3 over 5m"})
        assert status == 201
        await wait_for(lambda: smtp.messages, timeout_s=15)
        await push(2)
        await wait_for(lambda: len(smtp.messages) == 2, timeout_s=15)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    fired, resolved = (s.strip() for s in smtp.mailbox.subjects())
    assert fired == "[upwatch] RULE high shop-quiet: count < 3 over 5m (now 1)"
    assert resolved.startswith("[upwatch] RESOLVED shop: back to normal after ")
    status, alerts = await call(api, "GET", "/alerts?status=ok&kind=rule")
    assert status == 200
    [alert] = alerts["items"]
    assert (alert["fingerprint"], alert["kind"], alert["status"], alert["acked_at"]) == (
        "rule:shop-quiet", "rule", "ok", None)
    assert (await call(api, "GET", "/alerts"))[1] == {"items": []}  # firing ones by default
    assert (await call(api, "GET", "/alerts?kind=bogus"))[1]["details"][0]["field"] == "kind"


async def test_an_acked_alert_gets_no_reminders_until_it_fires_again(api: Api, smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port, repeat_interval="1h")
    await call(api, "POST", "/rules", {"name": "web-count", "endpoint": "web", "rule": "count >= 0 over 1m"})
    await evaluate.run_once(api.pool, cfg)  # no results: no data, not firing
    async with api.pool.connection() as conn:
        await conn.execute("INSERT INTO probe_results (time, endpoint_id, id, location, ok)"
                           " SELECT now(), id, gen_random_uuid(), '', true FROM endpoints WHERE name = 'web'")
    await evaluate.run_once(api.pool, cfg)
    [alert] = (await call(api, "GET", "/alerts"))[1]["items"]
    assert (alert["fingerprint"], alert["status"], alert["severity"]) == ("rule:web-count", "firing", "high")
    status, acked = await call(api, "POST", f"/alerts/{alert['id']}/ack", {"by": "alice"})
    assert status == 200 and acked["acked_by"] == "alice" and acked["acked_at"] is not None
    async with api.pool.connection() as conn:  # the reminder is due (repeat_interval passed)
        await conn.execute("UPDATE alert_state SET last_sent_at = now() - interval '2 hours'")
    await evaluate.run_once(api.pool, cfg)
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT event FROM alerts ORDER BY id")
        assert await cur.fetchall() == [("firing",)]
        await conn.execute("UPDATE alert_state SET acked_at = NULL")  # without the ack, the reminder goes out
    await evaluate.run_once(api.pool, cfg)
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT event FROM alerts ORDER BY id")
        assert await cur.fetchall() == [("firing",), ("reminder",)]
    assert (await call(api, "POST", f"/alerts/{alert['id']}/ack"))[0] == 200
    status, _ = await call(api, "PUT", "/rules/web-count", {"endpoint": "web", "rule": "count >= 5 over 1m"})
    assert status == 200
    await evaluate.run_once(api.pool, cfg)  # the changed rule no longer holds: RESOLVED
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT status, acked_at, acked_by FROM alert_state WHERE kind = 'rule'")
        assert await cur.fetchall() == [("ok", None, None)]  # the ack ended with its firing
    status, error = await call(api, "POST", "/alerts/999999/ack")
    assert status == 404 and error == {"error": "no such alert"}


async def test_ack_of_an_alert_that_is_not_firing_is_a_conflict(api: Api) -> None:
    async with api.pool.connection() as conn:
        cur = await conn.execute("INSERT INTO alert_state (fingerprint, kind, status) VALUES ('down:web', 'down', 'ok')"
                                 " RETURNING id")
        row = await cur.fetchone()
    assert row is not None
    status, error = await call(api, "POST", f"/alerts/{row[0]}/ack")
    assert status == 409 and "not firing" in error["error"]
    assert (await call(api, "GET", "/alerts?status=all"))[1]["items"][0]["status"] == "ok"

