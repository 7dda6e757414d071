"""Per-recipient delivery against a real SMTP server (aiosmtpd): every recipient gets every alert
once, retries go only to those still owed (also after a restart), under one Message-ID."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alerting_support import SmtpServer, add_endpoint, add_results, alerting, recipients, rows, wait_for
from psycopg_pool import AsyncConnectionPool

from alerter import evaluate, outbox
from upwatch.db import open_pool

A, B = "a@example.test", "b@example.test"


def two_recipients(port: int, **overrides: Any) -> Any:
    return alerting(port, smtp={"recipients": [A, B], **overrides})


async def down(pool: AsyncConnectionPool, cfg: Any) -> None:
    await add_results(pool, await add_endpoint(pool, "api"), "fff")
    await evaluate.run_once(pool, cfg)


async def retry(pool: AsyncConnectionPool, cfg: Any) -> None:
    """The next attempt, as soon as its backoff has passed."""
    await wait_for(lambda: outbox.deliver_next(pool, cfg), timeout_s=10)


async def settled(pool: AsyncConnectionPool, cfg: Any) -> None:
    """Wait past backoff_max (200 ms) and check that nothing is due any more."""
    await asyncio.sleep(0.3)
    assert await outbox.deliver_next(pool, cfg) == 0


def message_ids(smtp: SmtpServer) -> list[str]:
    return [str(m["Message-ID"]) for m in smtp.messages]


async def test_recipient_refused_for_now_gets_the_alert_on_retry_and_the_other_only_once(
        pool: AsyncConnectionPool, smtp: SmtpServer) -> None:
    smtp.mailbox.refuse_once[B] = "450 4.2.1 mailbox busy, try later"
    cfg = two_recipients(smtp.port)
    await down(pool, cfg)
    assert await outbox.deliver_next(pool, cfg) == 1
    [alert] = await rows(pool)
    assert alert["state"] == "pending" and alert["last_error"] == f"{B}: 450 4.2.1 mailbox busy, try later"
    assert await recipients(pool) == {A: ("sent", 1), B: ("pending", 1)}
    await retry(pool, cfg)
    assert smtp.mailbox.envelopes == [("upwatch@localhost", [A]), ("upwatch@localhost", [B])]
    assert smtp.mailbox.received() == {A: 1, B: 1}
    first, second = message_ids(smtp)
    assert first == second and first.startswith(f"<upwatch.{alert['id']}.")
    assert [str(m["To"]) for m in smtp.messages] == [f"{A}, {B}"] * 2
    [alert] = await rows(pool)
    assert (alert["state"], alert["attempts"], alert["last_error"]) == ("sent", 2, None)
    assert await recipients(pool) == {A: ("sent", 1), B: ("sent", 2)}
    await settled(pool, cfg)
    assert smtp.mailbox.received() == {A: 1, B: 1}


async def test_after_a_restart_only_the_recipients_still_owed_are_sent_to(database_url: str,
                                                                          smtp: SmtpServer) -> None:
    smtp.mailbox.refuse_once[B] = "451 4.3.0 try again later"
    cfg = two_recipients(smtp.port)
    first = await open_pool(database_url, max_size=2, name="before")
    try:
        await down(first, cfg)
        await outbox.deliver_next(first, cfg)
    finally:
        await first.close()
    assert smtp.mailbox.received() == {A: 1}
    second = await open_pool(database_url, max_size=2, name="after")  # a new process: only the DB remembers
    try:
        await retry(second, cfg)
        await settled(second, cfg)
        assert smtp.mailbox.received() == {A: 1, B: 1}
        assert len(set(message_ids(smtp))) == 1
        assert [r["state"] for r in await rows(second)] == ["sent"]
    finally:
        await second.close()


async def test_a_permanently_refused_recipient_does_not_hold_back_the_others(pool: AsyncConnectionPool,
                                                                           smtp: SmtpServer) -> None:
    smtp.mailbox.refuse[B] = "550 5.1.1 no such user"
    cfg = two_recipients(smtp.port)
    await down(pool, cfg)
    await outbox.deliver_next(pool, cfg)
    await settled(pool, cfg)
    assert smtp.mailbox.received() == {A: 1}
    [alert] = await rows(pool)
    assert alert["state"] == "sent" and alert["last_error"] == f"{B}: 550 5.1.1 no such user"
    assert await recipients(pool) == {A: ("sent", 1), B: ("failed", 1)}


@pytest.mark.parametrize(("reply", "state"), [("554 5.7.1 message rejected as spam", "failed"),
                                              ("451 4.3.0 queue full, try later", "pending")],
                         ids=["5xx-permanent", "4xx-retried"])
async def test_reply_to_data_decides_whether_the_message_is_retried(pool: AsyncConnectionPool, smtp: SmtpServer,
                                                                    reply: str, state: str) -> None:
    smtp.mailbox.data_reply = reply
    cfg = two_recipients(smtp.port)
    await down(pool, cfg)
    await outbox.deliver_next(pool, cfg)
    [alert] = await rows(pool)
    assert alert["state"] == state and alert["attempts"] == 1
    assert alert["last_error"] == f"message refused by 127.0.0.1:{smtp.port}: {reply}"
    assert await recipients(pool) == {A: (state, 1), B: (state, 1)}
    if state == "failed":
        await settled(pool, cfg)
        assert smtp.mailbox.data_attempts == 1
    else:
        smtp.mailbox.data_reply = None
        await retry(pool, cfg)
        assert smtp.mailbox.received() == {A: 1, B: 1} and smtp.mailbox.data_attempts == 2


@pytest.mark.parametrize(("slow", "final", "copies"), [(1, "sent", 2), (5, "unconfirmed", 2)],
                         ids=["slow-once", "always-slow"])
async def test_final_reply_slower_than_the_timeout_is_resent_once_under_the_same_message_id(
        pool: AsyncConnectionPool, smtp: SmtpServer, slow: int, final: str, copies: int) -> None:
    # The server keeps the message but answers 3 s later than our 1 s timeout: it may have arrived.
    smtp.mailbox.slow_replies, smtp.mailbox.slow_s = slow, 4.0
    cfg = alerting(smtp.port, smtp={"recipients": [A], "timeout": "1s"})
    await down(pool, cfg)
    await outbox.deliver_next(pool, cfg)
    [alert] = await rows(pool)
    assert alert["state"] == "pending"
    assert alert["last_error"] == (f"no reply within 1 s after sending the message to 127.0.0.1:{smtp.port}:"
                                   " it may have been delivered")
    assert await recipients(pool) == {A: ("uncertain", 1)}
    await retry(pool, cfg)
    await settled(pool, cfg)
    assert await recipients(pool) == {A: (final, 2)}
    [alert] = await rows(pool)
    assert alert["state"] == "sent" and alert["attempts"] == 2
    assert smtp.mailbox.received() == {A: copies}
    assert len(set(message_ids(smtp))) == 1


async def test_webhook_retries_carry_the_same_idempotency_key(pool: AsyncConnectionPool, receiver: Any) -> None:
    receiver.status = 503
    cfg = alerting(smtp={"recipients": []}, webhooks=[{"name": "ops", "url": receiver.url}])
    await down(pool, cfg)
    await outbox.deliver_next(pool, cfg)
    receiver.status = 200
    await retry(pool, cfg)
    [alert] = await rows(pool)
    assert alert["state"] == "sent" and alert["attempts"] == 2
    keys = [h.get("Idempotency-Key") for h in receiver.all_headers]
    assert len(keys) == 2 and keys[0] == keys[1] and str(keys[0]).startswith(f"upwatch.{alert['id']}.")


async def test_a_retried_message_keeps_its_alerts_and_new_alerts_go_in_a_new_message(
        pool: AsyncConnectionPool, smtp: SmtpServer) -> None:
    smtp.mailbox.refuse_once[B] = "450 4.2.1 mailbox busy, try later"
    cfg = two_recipients(smtp.port)
    for name in ("a", "b"):
        await add_results(pool, await add_endpoint(pool, name), "fff")
    await evaluate.run_once(pool, cfg)
    assert await outbox.deliver_next(pool, cfg) == 2
    await add_results(pool, await add_endpoint(pool, "c"), "fff")
    await evaluate.run_once(pool, cfg)
    await retry(pool, cfg)
    await retry(pool, cfg)
    await settled(pool, cfg)
    got: dict[str, list[tuple[str, str]]] = {A: [], B: []}
    for message, (_, rcpts) in zip(smtp.messages, smtp.mailbox.envelopes, strict=True):
        for rcpt in rcpts:
            got[rcpt].append((str(message["Subject"]), str(message["Message-ID"])))
    assert sorted(s for s, _ in got[A]) == sorted(s for s, _ in got[B]) == [
        "[upwatch] 2 alerts: DOWN a, DOWN b", "[upwatch] DOWN c: timeout after 10 s"]
    assert sorted(got[A]) == sorted(got[B])  # the same two messages, Message-IDs included
    assert [r["state"] for r in await rows(pool)] == ["sent"] * 3
