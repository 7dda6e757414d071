"""Rows written by the version before typed payloads and channel lists (alerts.payload and
alert_state.details as plain JSON, channels named "email" and "webhook:<name>") are still
delivered and continued after an upgrade."""

from __future__ import annotations

from typing import Any

from alerting_support import SmtpServer, add_endpoint, add_results, alerting, rows
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from alerter import evaluate, outbox

OLD_RESULT = {"time": "2026-11-30T09:59:58.120000+00:00", "ok": False, "status_code": None, "latency_ms": 10000.0,
              "location": "", "error": "timeout after 10 s"}
OLD_PAYLOAD = {"endpoint": "api", "target": "https://api.example.test/health", "severity": "critical",
               "event": "firing", "at": "2026-11-30T09:59:58.120000+00:00",
               "since": "2026-11-30T09:59:58.120000+00:00", "suppressed": 0, "last_results": [OLD_RESULT] * 3,
               "reason": "timeout after 10 s", "cause": "timeout after 10 s", "folded": ["checkout"]}


async def queue_old(pool: AsyncConnectionPool, channel: str, recipients: list[str], payload: dict[str, Any]) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO alerts (fingerprint, kind, event, severity, channel, recipients, subject, payload, state)"
            " VALUES ('down:api', 'down', 'firing', 'critical', %s, %s, '', %s, 'pending')",
            (channel, recipients, Jsonb(payload)))


async def test_alerts_queued_by_the_previous_version_are_delivered(pool: AsyncConnectionPool, smtp: SmtpServer,
                                                                   receiver: Any) -> None:
    cfg = alerting(smtp.port, webhooks=[{"name": "ops", "url": receiver.url}])
    await queue_old(pool, "email", ["oncall@example.test"], OLD_PAYLOAD)
    await queue_old(pool, "webhook:ops", [], OLD_PAYLOAD)
    await queue_old(pool, "webhook:gone", [], {"endpoint": "api"})  # its webhook was removed from the config
    while await outbox.deliver_next(pool, cfg):
        pass
    [message] = smtp.messages
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert message["Subject"] == "[upwatch] DOWN api: timeout after 10 s"
    assert "Reason: timeout after 10 s" in text and "Target: https://api.example.test/health" in text
    assert "Also affected: checkout (depend on api)" in text
    assert "09:59:58 FAIL - 10000 ms  timeout after 10 s" in text
    [body] = receiver.bodies
    assert body["alerts"][0]["endpoint"] == "api" and body["alerts"][0]["last_results"][0]["ok"] is False
    assert body["alerts"][0]["since"] == "2026-11-30T09:59:58.120000+00:00"
    states = [(r["channel"], r["state"], r["last_error"]) for r in await rows(pool)]
    assert states == [("email", "sent", None), ("webhook:ops", "sent", None),
                      ("webhook:gone", "failed", "channel 'webhook:gone' is no longer configured")]


async def test_an_incident_tracked_by_the_previous_version_resolves_with_its_cause(pool: AsyncConnectionPool,
                                                                                   smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port)
    api = await add_endpoint(pool, "api")
    details = {"payload": {"endpoint": "api", "target": "https://api.example.test/health", "severity": "critical"},
               "recent": [OLD_RESULT] * 3, "locations": {"": {"failures": 3, "successes": 0, "down": True}},
               "cause": "timeout after 10 s", "announced": True}
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO alert_state (fingerprint, kind, endpoint_id, status, consecutive_failures, since,"
            " last_sent_at, last_error, details) VALUES ('down:api', 'down', %s, 'firing', 3,"
            " now() - interval '5 minutes', now() - interval '5 minutes', 'timeout after 10 s', %s)",
            (api, Jsonb(details)))
    await add_results(pool, api, "ss")
    await evaluate.run_once(pool, cfg)
    while await outbox.deliver_next(pool, cfg):
        pass
    [message] = smtp.messages
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert message["Subject"].startswith("[upwatch] RESOLVED api: up again after 5m")
    assert "Cause: timeout after 10 s" in text and "Target: https://api.example.test/health" in text
    assert "09:59:58 FAIL - 10000 ms  timeout after 10 s" in text  # the old recent results, then the new ones
    [resolved] = await rows(pool)
    assert resolved["payload"]["cause"] == "timeout after 10 s" and len(resolved["payload"]["last_results"]) == 5
