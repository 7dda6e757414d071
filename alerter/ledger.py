"""Per-recipient outcomes of one outbox message (table alert_recipients, keyed by the message's
first alert), so a retry goes only to the recipients still owed, and a restart still knows who
already has the message.

A recipient is `pending` (owed: not tried yet, or refused with 4xx), `sent`, `failed` (5xx, or
given up after delivery.max_age), `uncertain` (the message was sent but the server's final reply
never came: it may have it, and is owed at most one more copy under the same Message-ID) or
`unconfirmed` (uncertain, and not sent again: it has most likely arrived at least once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from psycopg import AsyncConnection

from alerter.records import Delivery, Outcome, RecipientState

OWED: tuple[RecipientState, ...] = ("pending", "uncertain")
RECEIVED: tuple[RecipientState, ...] = ("sent", "unconfirmed")


@dataclass(frozen=True)
class Standing:
    """Where one recipient stands after the attempts so far."""

    state: RecipientState
    attempts: int = 0
    error: str | None = None


async def load(conn: AsyncConnection, head: int) -> dict[str, Standing]:
    """The recorded recipients of the message whose first alert is `head`; empty before its first attempt."""
    cur = await conn.execute("SELECT recipient, state, attempts, last_error FROM alert_recipients"
                             " WHERE alert_id = %s", (head,))
    return {r[0]: Standing(r[1], r[2], r[3]) for r in await cur.fetchall()}


def owed(recipients: Iterable[str], standing: Mapping[str, Standing]) -> tuple[str, ...]:
    """Who still has to be tried: never tried, or left pending or uncertain."""
    return tuple(r for r in recipients if r not in standing or standing[r].state in OWED)


def _outcome(rcpt: str, delivery: Delivery) -> Outcome:
    if rcpt in delivery.recipients:
        return delivery.recipients[rcpt]
    # No word on this recipient (the connection, TLS or login failed): the attempt as a whole decides.
    if delivery.ok:
        return Outcome("sent")
    return Outcome("failed" if delivery.permanent else "pending", delivery.error)


def settle(standing: Mapping[str, Standing], tried: Iterable[str], delivery: Delivery,
           expired: bool) -> dict[str, Standing]:
    """The new standing of each recipient tried in this attempt."""
    out = {}
    for rcpt in tried:
        before = standing.get(rcpt, Standing("pending"))
        o = _outcome(rcpt, delivery)
        state, error = o.state, o.error
        if before.state == "uncertain" and state in OWED:
            # It may have the message already: one more resend at most, however the retries go.
            state = "unconfirmed" if state == "uncertain" else "uncertain"
        if state in OWED and expired:
            state = "unconfirmed" if state == "uncertain" else "failed"
            error = f"gave up after delivery.max_age: {error}"
        out[rcpt] = Standing(state, before.attempts + 1, error)
    return out


def verdict(recipients: Iterable[str], standing: Mapping[str, Standing]) -> tuple[str, str | None]:
    """The alert's state (pending while anyone is owed; sent if anyone received it; else failed) and
    what to show as its last error: who did not get it, and why."""
    states = {r: standing.get(r, Standing("pending")) for r in recipients}
    problems = "; ".join(f"{r}: {s.state}: {s.error}" for r, s in states.items()
                         if s.state != "sent" and s.error)
    if any(s.state in OWED for s in states.values()):
        return "pending", problems or None
    return ("sent" if any(s.state in RECEIVED for s in states.values()) else "failed"), problems or None


async def save(conn: AsyncConnection, head: int, settled: Mapping[str, Standing]) -> None:
    """Record the recipients tried in this attempt."""
    if not settled:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO alert_recipients AS a (alert_id, recipient, state, attempts, last_error, sent_at)"
            " VALUES (%s, %s, %s, %s, %s, CASE WHEN %s THEN clock_timestamp() END)"
            " ON CONFLICT (alert_id, recipient) DO UPDATE SET state = excluded.state,"
            " attempts = excluded.attempts, last_error = excluded.last_error,"
            " sent_at = coalesce(a.sent_at, excluded.sent_at), updated_at = clock_timestamp()",
            [(head, r, s.state, s.attempts, s.error, s.state == "sent") for r, s in settled.items()])
