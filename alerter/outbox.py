"""The alerts outbox: rows are written pending in the deciding transaction, then a sender
claims a group with `FOR UPDATE SKIP LOCKED`, delivers it and marks it, all in one
transaction per message.

Delivery bound: the row lock is held while the channel talks to the server, so a
second alerter never picks the same rows. If the process dies after the server
accepted the message but before the commit, the rows are still pending and that
one message is sent again: at most one duplicate per crash, never a loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from alerter import render
from alerter.channels import CHANNELS, split
from alerter.records import Alert, Delivery, Notice
from upwatch.config.alerting import Alerting

logger = logging.getLogger(__name__)

_COLUMNS = "id, fingerprint, kind, event, severity, channel, recipients, payload, created_at, attempts"


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
    payload: dict[str, Any] = field(default_factory=dict)
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
              Jsonb(r.payload), r.state, r.last_error, r.next_attempt_at) for r in rows])


def _alert(row: tuple[Any, ...]) -> Alert:
    return Alert(row[0], row[1], row[2], row[3], row[4], row[5], tuple(row[6]), row[7], row[8], row[9])


async def _claim(conn: AsyncConnection, batch: int) -> list[Alert]:
    """Lock the oldest due alert and the alerts that can share its message."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE state = 'pending' AND next_attempt_at <= clock_timestamp()"
        " ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED")
    first = await cur.fetchone()
    if first is None:
        return []
    # Alerts for the same channel and recipients go out together: the due ones, and
    # fresh ones still inside their group_wait.
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE state = 'pending' AND channel = %s AND recipients = %s AND id <> %s"
        " AND (next_attempt_at <= clock_timestamp() OR attempts = 0)"
        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
        (first[5], first[6], first[0], batch - 1))
    return [_alert(first)] + [_alert(r) for r in await cur.fetchall()]


async def _send(notice: Notice, channel: str, alerting: Alerting) -> Delivery:
    kind, target = split(channel)
    module = CHANNELS.get(kind)
    if module is None:
        return Delivery.failed(f"unknown channel {kind!r}", permanent=True)
    result: Delivery = await module.send(notice, module.options(alerting, target))
    return result


async def _record(conn: AsyncConnection, alerts: Sequence[Alert], notice: Notice, delivery: Delivery,
                  alerting: Alerting) -> None:
    ids = [a.id for a in alerts]
    if delivery.ok:
        await conn.execute(
            "UPDATE alerts SET state = 'sent', sent_at = clock_timestamp(), attempts = attempts + 1,"
            " last_error = %s, body = %s, subject = CASE WHEN subject = '' THEN %s ELSE subject END"
            " WHERE id = ANY(%s)", (delivery.error, notice.text, notice.subject, ids))
        return
    d = alerting.delivery
    await conn.execute(
        "UPDATE alerts SET attempts = attempts + 1, last_error = %s,"
        " state = CASE WHEN %s OR created_at < clock_timestamp() - %s THEN 'failed' ELSE 'pending' END,"
        " next_attempt_at = clock_timestamp() + least(%s * power(2, attempts), %s)"
        " WHERE id = ANY(%s)", (delivery.error, delivery.permanent, d.max_age, d.backoff, d.backoff_max, ids))


async def deliver_next(pool: AsyncConnectionPool, alerting: Alerting) -> int:
    """Claim, deliver and mark one message; returns how many alerts it carried (0: nothing due).

    Database errors propagate (the caller retries later); channel errors are recorded."""
    async with pool.connection() as conn, conn.transaction():
        alerts = await _claim(conn, alerting.delivery.batch_size)
        if not alerts:
            return 0
        notice = render.notice(alerts, alerting.grafana_url)
        delivery = await _send(notice, alerts[0].channel, alerting)
        await _record(conn, alerts, notice, delivery, alerting)
    if delivery.ok:
        logger.info("alert sent channel=%s alerts=%d subject=%r", alerts[0].channel, len(alerts), notice.subject)
    else:
        logger.warning("alert delivery failed channel=%s alerts=%d permanent=%s error=%r", alerts[0].channel,
                       len(alerts), delivery.permanent, delivery.error)
    return len(alerts)


async def recent(conn: AsyncConnection, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest alerts, optionally only those in `state`, for `upwatch alerts list`."""
    cur = await conn.execute(
        "SELECT a.id, a.created_at, a.state, a.kind, a.event, coalesce(e.name, a.payload->>'endpoint', ''),"
        " a.channel, a.recipients, a.attempts, a.subject, a.last_error, a.sent_at, a.next_attempt_at"
        " FROM alerts a LEFT JOIN endpoints e ON e.id = a.endpoint_id"
        " WHERE %(state)s::text IS NULL OR a.state = %(state)s ORDER BY a.id DESC LIMIT %(limit)s",
        {"state": state, "limit": limit})
    names = ("id", "created_at", "state", "kind", "event", "endpoint", "channel", "recipients", "attempts",
             "subject", "last_error", "sent_at", "next_attempt_at")
    return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
