"""The alerts outbox: rows are written pending in the deciding transaction, then a sender
claims a message with `FOR UPDATE SKIP LOCKED`, delivers it and marks it, all in one
transaction per message.

A message is fixed on its first attempt: its alerts get one message_id, which is the
Message-ID (email) or Idempotency-Key (webhook) of every retry, and each recipient's outcome
is kept in alert_recipients (alerter/ledger.py), so a retry goes only to those still owed.

Delivery bound: the row lock is held while the channel talks to the server, so a
second alerter never picks the same rows. If the process dies after the server
accepted the message but before the commit, the rows are still pending and that
one message is sent again, under the same Message-ID: at most one duplicate per crash,
never a loss.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from alerter import ledger, render
from alerter.channels import CHANNELS
from alerter.records import Alert, Delivery, Notice, Payload
from upwatch.config.alerting import Alerting

logger = logging.getLogger(__name__)

_COLUMNS = sql.SQL("id, fingerprint, kind, event, severity, channel, recipients, payload, created_at, attempts,"
                   " message_id")


@dataclass
class Row:
    """An alert to be written to the outbox."""

    fingerprint: str
    kind: str
    event: str
    channel: str
    endpoint_id: int | None = None
    severity: str | None = None
    recipients: tuple[str, ...] = ()
    subject: str = ""
    payload: Payload = field(default_factory=Payload)
    state: str = "pending"
    last_error: str | None = None
    next_attempt_at: datetime | None = None


async def enqueue(conn: AsyncConnection, rows: Sequence[Row]) -> None:
    """Insert alerts; call inside the transaction that decided them."""
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO alerts (fingerprint, kind, event, endpoint_id, severity, channel, recipients, subject,"
            " payload, state, last_error, next_attempt_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()))",
            [(r.fingerprint, r.kind, r.event, r.endpoint_id, r.severity, r.channel, list(r.recipients), r.subject,
              Jsonb(r.payload.to_json()), r.state, r.last_error, r.next_attempt_at) for r in rows])


def _alert(row: tuple[Any, ...]) -> Alert:
    return Alert(row[0], row[1], row[2], row[3], row[4], row[5], tuple(row[6]), Payload.from_json(row[7] or {}),
                 row[8], row[9], row[10])


async def _claim(conn: AsyncConnection, batch: int) -> list[Alert]:
    """Lock the oldest due message: a retried one exactly as first sent, or a new one made of the
    oldest due alert and the alerts that can share it."""
    # Only a message's first row is claimable, so two senders never split one message.
    cur = await conn.execute(sql.SQL(
        "SELECT {} FROM alerts a WHERE state = 'pending' AND next_attempt_at <= clock_timestamp()"
        " AND (message_id IS NULL OR NOT EXISTS"
        "      (SELECT 1 FROM alerts s WHERE s.message_id = a.message_id AND s.id < a.id))"
        " ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED").format(_COLUMNS))
    first = await cur.fetchone()
    if first is None:
        return []
    if first[10] is not None:
        cur = await conn.execute(sql.SQL("SELECT {} FROM alerts WHERE message_id = %s AND id <> %s"
                                         " AND state = 'pending' ORDER BY id FOR UPDATE").format(_COLUMNS),
                                 (first[10], first[0]))
        return [_alert(first)] + [_alert(r) for r in await cur.fetchall()]
    # Alerts for the same channel and recipients go out together: the due ones, and
    # fresh ones still inside their group_wait.
    cur = await conn.execute(sql.SQL(
        "SELECT {} FROM alerts WHERE state = 'pending' AND channel = %s AND recipients = %s AND id <> %s"
        " AND message_id IS NULL AND (next_attempt_at <= clock_timestamp() OR attempts = 0)"
        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED").format(_COLUMNS),
        (first[5], first[6], first[0], batch - 1))
    # Lowest id first: that alert heads the message on every retry (see the first query).
    alerts = sorted([_alert(first)] + [_alert(r) for r in await cur.fetchall()], key=lambda a: a.id)
    message_id = f"{alerts[0].id}.{uuid.uuid4().hex[:16]}"
    await conn.execute("UPDATE alerts SET message_id = %s WHERE id = ANY(%s)", (message_id, [a.id for a in alerts]))
    return [replace(a, message_id=message_id) for a in alerts]


async def _send(notice: Notice, name: str, alerting: Alerting) -> Delivery:
    """Through the channel called `name` (by the type registered in CHANNELS)."""
    channel = alerting.channel(name)
    if channel is None:  # renamed or removed since the alert was queued
        return Delivery.failed(f"channel {name!r} is no longer configured", permanent=True)
    return await CHANNELS[channel.type].send(notice, channel.options)


async def _record(conn: AsyncConnection, alerts: Sequence[Alert], notice: Notice, delivery: Delivery,
                  standing: dict[str, ledger.Standing], alerting: Alerting) -> None:
    head, ids, d = alerts[0], [a.id for a in alerts], alerting.delivery
    cur = await conn.execute("SELECT %s::timestamptz < clock_timestamp() - %s", (head.created_at, d.max_age))
    expired = bool((await cur.fetchone() or (False,))[0])
    if head.recipients:
        settled = ledger.settle(standing, notice.owed, delivery, expired)
        await ledger.save(conn, head.id, settled)
        state, problems = ledger.verdict(head.recipients, standing | settled)
        last_error = delivery.error or problems
    else:  # webhooks: the receiver's answer is the outcome
        state = "sent" if delivery.ok else "failed" if delivery.permanent or expired else "pending"
        last_error = delivery.error
    await conn.execute(
        "UPDATE alerts SET state = %s, attempts = attempts + 1, last_error = %s,"
        " sent_at = CASE WHEN %s = 'sent' THEN clock_timestamp() END,"
        " body = CASE WHEN %s = 'sent' THEN %s ELSE body END,"
        " subject = CASE WHEN subject = '' THEN %s ELSE subject END,"
        " next_attempt_at = CASE WHEN %s = 'pending' THEN clock_timestamp() + least(%s * power(2, attempts), %s)"
        "                   ELSE next_attempt_at END"
        " WHERE id = ANY(%s)",
        (state, last_error, state, state, notice.text, notice.subject, state, d.backoff, d.backoff_max, ids))


async def deliver_next(pool: AsyncConnectionPool, alerting: Alerting) -> int:
    """Claim, deliver and mark one message; returns how many alerts it carried (0: nothing due).

    Database errors propagate (the caller retries later); channel errors are recorded."""
    async with pool.connection() as conn, conn.transaction():
        alerts = await _claim(conn, alerting.delivery.batch_size)
        if not alerts:
            return 0
        standing = await ledger.load(conn, alerts[0].id)
        notice = replace(render.notice(alerts, alerting.grafana_url), message_id=alerts[0].message_id or "",
                         envelope=ledger.owed(alerts[0].recipients, standing))
        if alerts[0].recipients and not notice.owed:
            delivery = Delivery.sent()  # every recipient already settled: only the alert's state is behind
        else:
            delivery = await _send(notice, alerts[0].channel, alerting)
        await _record(conn, alerts, notice, delivery, standing, alerting)
    if delivery.ok:
        logger.info("alert sent channel=%s alerts=%d to=%d subject=%r error=%r", alerts[0].channel, len(alerts),
                    len(notice.owed), notice.subject, delivery.error)
    else:
        logger.warning("alert delivery failed channel=%s alerts=%d to=%d permanent=%s error=%r", alerts[0].channel,
                       len(alerts), len(notice.owed), delivery.permanent, delivery.error)
    return len(alerts)


@dataclass(frozen=True)
class Listed:
    """One alert as `upwatch alerts list` shows it."""

    id: int
    created_at: datetime
    state: str
    kind: str
    event: str
    endpoint: str
    channel: str
    recipients: tuple[str, ...]
    attempts: int
    subject: str
    last_error: str | None
    sent_at: datetime | None
    next_attempt_at: datetime | None


async def recent(conn: AsyncConnection, state: str | None = None, limit: int = 50) -> list[Listed]:
    """The newest alerts, optionally only those in `state`, for `upwatch alerts list`."""
    cur = await conn.execute(
        "SELECT a.id, a.created_at, a.state, a.kind, a.event, coalesce(e.name, a.payload->>'endpoint', ''),"
        " a.channel, a.recipients, a.attempts, a.subject, a.last_error, a.sent_at, a.next_attempt_at"
        " FROM alerts a LEFT JOIN endpoints e ON e.id = a.endpoint_id"
        " WHERE %(state)s::text IS NULL OR a.state = %(state)s ORDER BY a.id DESC LIMIT %(limit)s",
        {"state": state, "limit": limit})
    return [Listed(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(r[7]), r[8], r[9], r[10], r[11], r[12])
            for r in await cur.fetchall()]
