"""Outbox delivery against a real SMTP server (aiosmtpd) and a real webhook receiver (aiohttp)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from alerting_support import SmtpServer, add_endpoint, add_results, alerting, rows, wait_for
from psycopg_pool import AsyncConnectionPool

from alerter import evaluate, outbox
from upwatch.db import open_pool


async def drain(pool: AsyncConnectionPool, cfg: object) -> int:
    """Deliver until nothing is due; returns the number of alerts carried."""
    total = 0
    while carried := await outbox.deliver_next(pool, cfg):  # type: ignore[arg-type]
        total += carried
    return total


async def test_down_email_has_subject_text_html_and_dashboard_link(pool: AsyncConnectionPool,
                                                                   smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port)
    api = await add_endpoint(pool, "payments-api")
    await add_results(pool, api, "fff")
    await evaluate.run_once(pool, cfg)
    assert await drain(pool, cfg) == 1
    [message] = smtp.messages
    assert message["Subject"] == "[upwatch] DOWN payments-api: timeout after 10 s"
    assert message["To"] == "oncall@example.test" and message["From"] == "upwatch@localhost"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    link = "http://grafana.test:3000/d/upwatch-endpoint?var-endpoint=payments-api"
    assert "Reason: timeout after 10 s" in text and "Since: " in text and link in text
    assert "FAIL" in text and "Last results:" in text
    assert f"<a href='{link}'>" in html
    [sent] = await rows(pool)
    assert sent["state"] == "sent" and sent["attempts"] == 1


async def test_alerts_within_group_wait_go_out_as_one_message(pool: AsyncConnectionPool, smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port, group_wait="1500ms")
    ids = [await add_endpoint(pool, name) for name in ("a", "b", "c")]
    await add_results(pool, ids[0], "fff")
    await evaluate.run_once(pool, cfg)
    assert await outbox.deliver_next(pool, cfg) == 0  # still inside group_wait
    for endpoint_id in ids[1:]:
        await add_results(pool, endpoint_id, "fff")
    await evaluate.run_once(pool, cfg)
    await wait_for(lambda: outbox.deliver_next(pool, cfg), timeout_s=5)
    assert smtp.mailbox.subjects() == ["[upwatch] 3 alerts: DOWN a, DOWN b, DOWN c"]
    assert [r["state"] for r in await rows(pool)] == ["sent"] * 3


async def test_webhook_generic_and_slack_payloads(pool: AsyncConnectionPool, receiver: object) -> None:
    url = receiver.url  # type: ignore[attr-defined]
    cfg = alerting(smtp={"recipients": []}, webhooks=[
        {"name": "generic", "url": url, "headers": {"X-Token": "t0ken"}},
        {"name": "slack", "url": url, "format": "slack"}])
    api = await add_endpoint(pool, "api")
    await add_results(pool, api, "fff")
    await evaluate.run_once(pool, cfg)
    assert await drain(pool, cfg) == 2
    bodies = receiver.bodies  # type: ignore[attr-defined]
    generic = next(b for b in bodies if "alerts" in b)
    slack = next(b for b in bodies if "text" in b and "alerts" not in b)
    assert generic["subject"] == "[upwatch] DOWN api: timeout after 10 s"
    assert generic["alerts"][0]["endpoint"] == "api" and generic["alerts"][0]["event"] == "firing"
    assert slack["text"].startswith("*[upwatch] DOWN api: timeout after 10 s*")
    assert any(h.get("X-Token") == "t0ken" for h in receiver.headers)  # type: ignore[attr-defined]


async def test_webhook_client_error_is_permanent_and_visible(pool: AsyncConnectionPool, receiver: object) -> None:
    receiver.status = 404  # type: ignore[attr-defined]
    cfg = alerting(smtp={"recipients": []}, webhooks=[{"name": "ops", "url": receiver.url}])  # type: ignore[attr-defined]
    api = await add_endpoint(pool, "api")
    await add_results(pool, api, "fff")
    await evaluate.run_once(pool, cfg)
    await drain(pool, cfg)
    [alert] = await rows(pool)
    assert alert["state"] == "failed" and alert["last_error"] == "webhook ops answered 404: receiver says no"


async def test_a_failed_webhook_keeps_the_secret_in_its_url_out_of_errors_and_logs(
        pool: AsyncConnectionPool, caplog: pytest.LogCaptureFixture) -> None:
    # Slack-, Teams- and Discord-style webhooks carry their secret in the path; aiohttp's
    # TooManyRedirects (a redirect loop here) quotes the whole URL in its message.
    secret = "XyZsecret0123456789"

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(str(request.rel_url))

    app = web.Application()
    app.router.add_post("/services/T000/B000/{token}", loop)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    port = server.port
    try:
        url = f"http://127.0.0.1:{port}/services/T000/B000/{secret}?token={secret}"
        cfg = alerting(smtp={"recipients": []}, webhooks=[{"name": "slack", "url": url, "format": "slack"}])
        api = await add_endpoint(pool, "api")
        await add_results(pool, api, "fff")
        await evaluate.run_once(pool, cfg)
        with caplog.at_level(logging.DEBUG):
            await drain(pool, cfg)
    finally:
        await server.close()
    [alert] = await rows(pool)
    assert alert["state"] in ("pending", "failed") and "TooManyRedirects" in alert["last_error"]
    assert f"127.0.0.1:{port}" in alert["last_error"]  # where it went stays visible
    assert secret not in alert["last_error"]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("alerter", "upwatch"))]
    assert ours and not any(secret in line for line in ours)  # (the receiver's own access log has it)


async def test_smtp_outage_then_every_pending_alert_is_delivered_exactly_once(pool: AsyncConnectionPool,
                                                                            smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port, routes=[{"endpoints": [f"ep{i}"], "recipients": [f"team{i}@example.test"]}
                                      for i in range(5)])
    smtp.stop()  # connections refused from now on
    for i in range(5):
        await add_results(pool, await add_endpoint(pool, f"ep{i}"), "fff")
    await evaluate.run_once(pool, cfg)
    for _ in range(3):
        await drain(pool, cfg)
        await asyncio.sleep(0.25)  # past backoff_max (200 ms): every alert is retried
    pending = await rows(pool)
    assert all(r["state"] == "pending" and r["attempts"] >= 2 for r in pending)
    assert all(r["last_error"].startswith(f"cannot reach SMTP server 127.0.0.1:{smtp.port}") for r in pending)
    smtp.start()
    await wait_for(lambda: len(smtp.messages) == 5 or drain(pool, cfg), timeout_s=5)
    await asyncio.sleep(0.3)
    await drain(pool, cfg)
    assert sorted(rcpts[0] for _, rcpts in smtp.mailbox.envelopes) == [f"team{i}@example.test" for i in range(5)]
    assert [r["state"] for r in await rows(pool)] == ["sent"] * 5


async def test_refused_recipient_is_permanent_and_keeps_the_servers_message(pool: AsyncConnectionPool,
                                                                          smtp: SmtpServer) -> None:
    smtp.mailbox.refuse["oncall@example.test"] = "550 5.1.1 <oncall@example.test>: mailbox unavailable"
    cfg = alerting(smtp.port)
    await add_results(pool, await add_endpoint(pool, "api"), "fff")
    await evaluate.run_once(pool, cfg)
    await drain(pool, cfg)
    [alert] = await rows(pool)
    assert alert["state"] == "failed" and alert["attempts"] == 1
    assert alert["last_error"] == (f"recipients refused by 127.0.0.1:{smtp.port}: oncall@example.test: 550 "
                                   "5.1.1 <oncall@example.test>: mailbox unavailable")


async def test_temporarily_refused_recipient_is_retried(pool: AsyncConnectionPool, smtp: SmtpServer) -> None:
    smtp.mailbox.refuse["oncall@example.test"] = "450 4.2.1 mailbox busy, try later"
    cfg = alerting(smtp.port)
    await add_results(pool, await add_endpoint(pool, "api"), "fff")
    await evaluate.run_once(pool, cfg)
    await drain(pool, cfg)
    [alert] = await rows(pool)
    assert alert["state"] == "pending" and "450 4.2.1 mailbox busy" in alert["last_error"]
    smtp.mailbox.refuse.clear()
    await asyncio.sleep(0.1)
    await drain(pool, cfg)
    assert [r["state"] for r in await rows(pool)] == ["sent"] and len(smtp.messages) == 1


async def test_auth_failure_is_recorded_and_retried_until_max_age(pool: AsyncConnectionPool) -> None:
    from alerting_support import Mailbox, free_port

    server = SmtpServer(free_port(), Mailbox(), password="right")
    server.start()
    try:
        cfg = alerting(server.port, smtp={"username": "upwatch", "password": "wrong"},
                       delivery={"max_age": "1s"})
        await add_results(pool, await add_endpoint(pool, "api"), "fff")
        await evaluate.run_once(pool, cfg)
        await drain(pool, cfg)
        [alert] = await rows(pool)
        assert alert["state"] == "pending"
        assert alert["last_error"].startswith(f"authentication failed at 127.0.0.1:{server.port}: 535")
        await asyncio.sleep(1.05)
        await drain(pool, cfg)
        [alert] = await rows(pool)
        assert alert["state"] == "failed" and alert["attempts"] >= 2 and server.messages == []
    finally:
        server.stop()


async def test_two_senders_never_send_the_same_alert_twice(database_url: str, smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port, routes=[{"endpoints": [f"ep{i}"], "recipients": [f"t{i}@example.test"]}
                                      for i in range(30)])
    pools = [await open_pool(database_url, max_size=2, name=f"s{i}") for i in range(2)]
    try:
        for i in range(30):
            await add_results(pools[0], await add_endpoint(pools[0], f"ep{i}"), "fff")
        await evaluate.run_once(pools[0], cfg)
        carried = await asyncio.gather(*(drain(p, cfg) for p in pools))
        assert sum(carried) == 30
        assert sorted(r[0] for _, r in smtp.mailbox.envelopes) == sorted(f"t{i}@example.test" for i in range(30))
    finally:
        for p in pools:
            await p.close()


async def test_flapping_endpoint_sends_a_bounded_number_of_messages(pool: AsyncConnectionPool,
                                                                   smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port, failure_threshold=1, success_threshold=1, cooldown="10m")
    api = await add_endpoint(pool, "flappy")
    for i in range(40):
        await add_results(pool, api, "f" if i % 2 == 0 else "s")
        await evaluate.run_once(pool, cfg)
        await drain(pool, cfg)
    down, resolved = smtp.mailbox.subjects()
    assert down == "[upwatch] DOWN flappy: timeout after 10 s"
    assert resolved.startswith("[upwatch] RESOLVED flappy: up again after ")
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT suppressed_count FROM alert_state WHERE fingerprint = 'down:flappy'")
        assert (await cur.fetchone()) == (38,)
