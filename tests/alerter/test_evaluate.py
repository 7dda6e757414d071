"""Evaluation against a real PostgreSQL: results, incidents and rules in, state and outbox rows out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from alerting_support import add_endpoint, add_results, alerting, rows
from psycopg_pool import AsyncConnectionPool

from alerter import evaluate
from upwatch.db import open_pool


async def test_down_after_three_failures_then_resolved_after_two_successes(pool: AsyncConnectionPool) -> None:
    cfg = alerting()
    api = await add_endpoint(pool, "payments-api")
    await add_results(pool, api, "ff")
    await evaluate.run_once(pool, cfg)
    assert await rows(pool) == []
    await add_results(pool, api, "f")
    await evaluate.run_once(pool, cfg)
    [down] = await rows(pool)
    assert (down["kind"], down["event"], down["state"], down["channel"]) == ("down", "firing", "pending", "email")
    assert down["subject"] == "[upwatch] DOWN payments-api: timeout after 10 s"
    assert down["recipients"] == ["oncall@example.test"]
    assert [r["ok"] for r in down["payload"]["last_results"]] == [False, False, False]
    await add_results(pool, api, "ffs")
    await evaluate.run_once(pool, cfg)
    assert len(await rows(pool)) == 1
    await add_results(pool, api, "s")
    await evaluate.run_once(pool, cfg)
    resolved = (await rows(pool))[-1]
    assert resolved["event"] == "resolved"
    assert resolved["subject"].startswith("[upwatch] RESOLVED payments-api: up again")


async def test_open_incident_survives_a_restart_without_being_announced_again(database_url: str) -> None:
    cfg = alerting()
    first = await open_pool(database_url, max_size=2, name="first")
    api = await add_endpoint(first, "api")
    await add_results(first, api, "fff")
    await evaluate.run_once(first, cfg)
    await first.close()
    second = await open_pool(database_url, max_size=2, name="second")  # a new process: only the DB remembers
    try:
        await add_results(second, api, "fff")
        await evaluate.run_once(second, cfg)
        assert [r["event"] for r in await rows(second)] == ["firing"]
        await add_results(second, api, "ss")
        await evaluate.run_once(second, cfg)
        assert [r["event"] for r in await rows(second)] == ["firing", "resolved"]
    finally:
        await second.close()


async def test_maintenance_window_records_the_alert_without_sending_it(pool: AsyncConnectionPool) -> None:
    now = datetime.now(UTC)
    cfg = alerting(maintenance=[{"name": "db upgrade", "start": now - timedelta(hours=1),
                                 "end": now + timedelta(hours=1), "tags": ["db"]}])
    db = await add_endpoint(pool, "db", tags=("db",))
    web = await add_endpoint(pool, "web")
    await add_results(pool, db, "fff")
    await add_results(pool, web, "fff")
    await evaluate.run_once(pool, cfg)
    by_fp = {r["fingerprint"]: r for r in await rows(pool)}
    assert by_fp["down:db"]["state"] == "suppressed"
    assert by_fp["down:db"]["last_error"] == "silenced by maintenance window 'db upgrade'"
    assert by_fp["down:web"]["state"] == "pending"


async def test_child_down_is_folded_into_parents_message(pool: AsyncConnectionPool) -> None:
    cfg = alerting(group_wait="30s")
    child = await add_endpoint(pool, "checkout", depends_on=("payments",))  # child first: order must not matter
    parent = await add_endpoint(pool, "payments")
    await add_results(pool, child, "fff")
    await add_results(pool, parent, "fff")
    await evaluate.run_once(pool, cfg)
    by_fp = {r["fingerprint"]: r for r in await rows(pool)}
    assert by_fp["down:payments"]["state"] == "pending"
    assert by_fp["down:payments"]["payload"]["folded"] == ["checkout"]
    assert by_fp["down:checkout"]["state"] == "suppressed"
    assert by_fp["down:checkout"]["last_error"] == "folded into the DOWN alert of payments"


async def test_child_is_told_once_its_parent_recovers_while_it_stays_down(pool: AsyncConnectionPool) -> None:
    cfg = alerting()
    parent = await add_endpoint(pool, "payments")
    child = await add_endpoint(pool, "checkout", depends_on=("payments",))
    await add_results(pool, parent, "fff")
    await add_results(pool, child, "fff")
    await evaluate.run_once(pool, cfg)
    await add_results(pool, parent, "ss")
    await add_results(pool, child, "f")
    await evaluate.run_once(pool, cfg)
    sent = [(r["fingerprint"], r["event"]) for r in await rows(pool, "state = 'pending'")]
    assert sent == [("down:payments", "firing"), ("down:payments", "resolved"), ("down:checkout", "firing")]


async def test_one_failing_location_pages_nobody_when_two_are_required(pool: AsyncConnectionPool) -> None:
    cfg = alerting(min_locations=2)
    api = await add_endpoint(pool, "api")
    await add_results(pool, api, "ffff", location="eu")
    await add_results(pool, api, "ssss", location="us")
    await evaluate.run_once(pool, cfg)
    assert await rows(pool) == []
    await add_results(pool, api, "fff", location="us")
    await evaluate.run_once(pool, cfg)
    assert [r["event"] for r in await rows(pool)] == ["firing"]


async def test_missed_heartbeat_is_down_at_once(pool: AsyncConnectionPool) -> None:
    cfg = alerting()
    cron = await add_endpoint(pool, "nightly-backup", kind="push")
    await add_results(pool, cron, "f", error="no heartbeat since 02:00 (period 1d, grace 1h)",
                      error_kind="missing_heartbeat")
    await evaluate.run_once(pool, cfg)
    [down] = await rows(pool)
    assert down["subject"] == "[upwatch] DOWN nightly-backup: no heartbeat since 02:00 (period 1d, grace 1h)"


async def test_anomaly_incidents_at_or_above_min_severity_are_told_once(pool: AsyncConnectionPool) -> None:
    cfg = alerting(min_severity="high")
    api = await add_endpoint(pool, "api")
    async with pool.connection() as conn:
        for severity in ("medium", "high"):
            await conn.execute(
                "INSERT INTO incidents (series, endpoint_id, started_at, ended_at, peak_score, severity, reason)"
                " VALUES (%s, %s, now(), now(), 0.93, %s, 'latency 870 ms vs usual 120±15 ms')",
                (f"endpoint:{api}:latency:{severity}", api, severity))
    await evaluate.run_once(pool, cfg)
    [anomaly] = await rows(pool)
    assert anomaly["subject"] == "[upwatch] ANOMALY high api: latency 870 ms vs usual 120±15 ms"
    assert anomaly["payload"]["score"] == 0.93 and anomaly["severity"] == "high"
    async with pool.connection() as conn:  # the detector extends the same incident
        await conn.execute("UPDATE incidents SET points = points + 1, ended_at = now(), updated_at = now()")
    await evaluate.run_once(pool, cfg)
    assert len(await rows(pool)) == 1


async def test_certificate_expiring_within_the_configured_days_alerts(pool: AsyncConnectionPool) -> None:
    cfg = alerting(cert_expiry_days=14)
    api = await add_endpoint(pool, "api")
    await add_results(pool, api, "s", cert_not_after=datetime.now(UTC) + timedelta(days=30))
    await evaluate.run_once(pool, cfg)
    assert await rows(pool) == []
    await add_results(pool, api, "s", cert_not_after=datetime.now(UTC) + timedelta(days=5, hours=1))
    await evaluate.run_once(pool, cfg)
    [cert] = await rows(pool)
    assert cert["kind"] == "cert" and "certificate expires in 5 days" in cert["subject"]


async def test_threshold_rules_fire_resolve_and_keep_history(pool: AsyncConnectionPool) -> None:
    cfg = alerting(rules=[{"name": "api-errors", "endpoint": "api", "rule": "error_rate > 50% over 5m"},
                          {"name": "shop-5xx", "service": "shop", "rule": "status_code >= 500 count > 3 over 1m",
                           "severity": "critical"}])
    api = await add_endpoint(pool, "api")
    await add_results(pool, api, "ffs")  # 2 of 3 failed: 66.7 %, not yet DOWN (threshold 3)
    async with pool.connection() as conn:
        cur = await conn.execute("INSERT INTO services (name) VALUES ('shop') RETURNING id")
        shop = (await cur.fetchone())[0]  # type: ignore[index]
        for status in (200, 500, 502, 503, 504, 404):
            await conn.execute("INSERT INTO request_logs (time, service_id, status_code, latency_ms)"
                               " VALUES (now(), %s, %s, 10)", (shop, status))
    await evaluate.run_once(pool, cfg)
    subjects = sorted(r["subject"] for r in await rows(pool))
    assert subjects == ["[upwatch] RULE critical shop-5xx: status_code >= 500 count > 3 over 1m (now 4)",
                        "[upwatch] RULE high api-errors: error_rate > 50% over 5m (now 66.7%)"]
    await add_results(pool, api, "sssss")
    await evaluate.run_once(pool, cfg)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT rule, resolved_at IS NOT NULL, peak_value FROM alert_rule_firings"
                                 " ORDER BY rule")
        history = await cur.fetchall()
    assert [(h[0], h[1]) for h in history] == [("api-errors", True), ("shop-5xx", False)]
    assert [r["event"] for r in await rows(pool, "fingerprint = 'rule:api-errors'")] == ["firing", "resolved"]


async def test_routes_send_tagged_endpoints_to_their_team_and_webhook(pool: AsyncConnectionPool) -> None:
    cfg = alerting(webhooks=[{"name": "payments-slack", "url": "http://127.0.0.1:9/hook", "format": "slack"}],
                   routes=[{"tags": ["payments"], "recipients": ["payments@example.test"],
                            "webhooks": ["payments-slack"]}])
    pay = await add_endpoint(pool, "pay", tags=("payments",))
    other = await add_endpoint(pool, "other")
    await add_results(pool, pay, "fff")
    await add_results(pool, other, "fff")
    await evaluate.run_once(pool, cfg)
    targets = sorted((r["fingerprint"], r["channel"], tuple(r["recipients"])) for r in await rows(pool))
    assert targets == [("down:other", "email", ("oncall@example.test",)),
                       ("down:other", "webhook:payments-slack", ()),
                       ("down:pay", "email", ("payments@example.test",)),
                       ("down:pay", "webhook:payments-slack", ())]


async def test_two_evaluators_never_judge_the_same_results_twice(database_url: str) -> None:
    cfg = alerting()
    pools = [await open_pool(database_url, max_size=2, name=f"e{i}") for i in range(2)]
    try:
        ids = [await add_endpoint(pools[0], f"ep{i}") for i in range(20)]
        for endpoint_id in ids:
            await add_results(pools[0], endpoint_id, "fff")
        for _ in range(5):
            await asyncio.gather(*(evaluate.run_once(p, cfg) for p in pools for _ in range(2)))
        fired = [r["fingerprint"] for r in await rows(pools[0])]
        assert sorted(fired) == sorted(f"down:ep{i}" for i in range(20))
    finally:
        for p in pools:
            await p.close()


async def test_disabled_endpoint_stops_firing_without_reminders(pool: AsyncConnectionPool) -> None:
    cfg = alerting(repeat_interval="1s")
    api = await add_endpoint(pool, "api")
    await add_results(pool, api, "fff")
    await evaluate.run_once(pool, cfg)
    async with pool.connection() as conn:
        await conn.execute("UPDATE endpoints SET enabled = false WHERE id = %s", (api,))
        await conn.execute("UPDATE alert_state SET last_sent_at = now() - interval '1 hour'")
    await evaluate.run_once(pool, cfg)
    assert [r["event"] for r in await rows(pool)] == ["firing"]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT status FROM alert_state WHERE fingerprint = 'down:api'")
        assert await cur.fetchone() == ("ok",)


async def test_reminder_while_still_down_after_repeat_interval(pool: AsyncConnectionPool) -> None:
    cfg = alerting(repeat_interval="1h")
    api = await add_endpoint(pool, "api")
    await add_results(pool, api, "fff")
    await evaluate.run_once(pool, cfg)
    await evaluate.run_once(pool, cfg)
    assert [r["event"] for r in await rows(pool)] == ["firing"]
    async with pool.connection() as conn:  # an hour passes
        await conn.execute("UPDATE alert_state SET last_sent_at = last_sent_at - interval '1 hour'")
    await evaluate.run_once(pool, cfg)
    reminder = (await rows(pool))[-1]
    assert reminder["event"] == "reminder" and reminder["subject"] == "[upwatch] STILL DOWN api: timeout after 10 s"


async def test_skipped_runs_are_no_verdict_and_failed_assertions_are_named(pool: AsyncConnectionPool) -> None:
    cfg = alerting()
    api = await add_endpoint(pool, "api")
    await add_results(pool, api, "ff")
    await add_results(pool, api, "fff", error="previous run still in progress", error_kind="skipped")
    await evaluate.run_once(pool, cfg)
    assert await rows(pool) == []
    await add_results(pool, api, "f", error="status == 200: got 503", error_kind="assertion")
    await evaluate.run_once(pool, cfg)
    [down] = await rows(pool)
    assert down["subject"] == "[upwatch] DOWN api: assertion failed: status == 200: got 503"
