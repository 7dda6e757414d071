"""Helpers for alerter tests: a controllable SMTP server, config, and rows written as the prober/detector would."""

from __future__ import annotations

import asyncio
import email
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from upwatch.config.alerting import Alerting


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler that keeps every accepted message and can refuse recipients."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: dict[str, str] = {}  # address -> SMTP reply
        self.refuse_once: dict[str, str] = {}  # address -> SMTP reply, for the next RCPT of it only
        self.data_reply: str | None = None  # refuse every message with this reply instead of keeping it
        self.slow_replies = 0  # how many of the next accepted messages get their 250 only after slow_s
        self.slow_s = 0.0
        self.data_attempts = 0
        self.on_message: Callable[[EmailMessage], None] | None = None

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if address in self.refuse_once:
            return self.refuse_once.pop(address)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_attempts += 1
        if self.data_reply is not None:
            return self.data_reply
        message = email.message_from_bytes(envelope.content, policy=default)  # type: ignore[arg-type]
        self.messages.append(message)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        if self.on_message is not None:
            self.on_message(message)
        if self.slow_replies > 0:  # kept, but the client hears so only later: it cannot know it arrived
            self.slow_replies -= 1
            await asyncio.sleep(self.slow_s)
        return "250 Message accepted for delivery"

    def received(self) -> dict[str, int]:
        """How many copies each address was given."""
        counts: dict[str, int] = {}
        for _, rcpts in self.envelopes:
            for rcpt in rcpts:
                counts[rcpt] = counts.get(rcpt, 0) + 1
        return counts

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that tests can stop (connections refused) and start again."""

    def __init__(self, port: int, mailbox: Mailbox, password: str | None = None) -> None:
        self.port, self.mailbox, self.password = port, mailbox, password
        self.controller: Controller | None = None

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == (self.password or "").encode()
        return AuthResult(success=ok, handled=False)

    def start(self) -> None:
        extra: dict[str, Any] = {}
        if self.password is not None:
            extra = {"authenticator": self._authenticate, "auth_require_tls": False}
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **extra)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        return self.mailbox.messages


def alerting(smtp_port: int = 9, **overrides: Any) -> Alerting:
    """An Alerting config for tests: short intervals, no group wait unless asked."""
    data: dict[str, Any] = {
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "recipients": ["oncall@example.test"], "timeout": "2s"},
        "group_wait": "0s", "evaluate_interval": "50ms", "grafana_url": "http://grafana.test:3000",
        "delivery": {"poll_interval": "50ms", "backoff": "50ms", "backoff_max": "200ms"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return Alerting.model_validate(data)


async def add_endpoint(pool: AsyncConnectionPool, name: str, tags: tuple[str, ...] = (),
                       depends_on: tuple[str, ...] = (), kind: str = "http") -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO endpoints (name, kind, target, tags, config) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (name, kind, f"https://{name}.example.test/health", list(tags), Jsonb({"depends_on": list(depends_on)})))
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def add_results(pool: AsyncConnectionPool, endpoint_id: int, outcomes: str, location: str = "",
                      error: str = "timeout after 10 s", error_kind: str = "timeout",
                      cert_not_after: datetime | None = None) -> None:
    """'fffss': failures and successes, written as the prober writes them (newest last)."""
    now = datetime.now(UTC)
    rows = []
    for i, outcome in enumerate(outcomes):
        ok = outcome == "s"
        at = now - timedelta(milliseconds=len(outcomes) - i)
        rows.append((at, endpoint_id, uuid.uuid4(), location, ok, 200 if ok else None, 12.5 if ok else 10000.0,
                     None if ok else error_kind, None if ok else error, cert_not_after))
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO probe_results (time, endpoint_id, id, location, ok, status_code, latency_ms, error_kind,"
            " error, cert_not_after) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)


async def rows(pool: AsyncConnectionPool, where: str = "true") -> list[dict[str, Any]]:
    """Alerts rows as dicts, oldest first."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, fingerprint, kind, event, channel, recipients, subject, payload, state, attempts,"
            f" last_error, severity FROM alerts WHERE {where} ORDER BY id")
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]


async def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0, step_s: float = 0.02) -> Any:
    """Poll `condition` (sync or async) until truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(step_s)


async def recipients(pool: AsyncConnectionPool) -> dict[str, tuple[str, int]]:
    """alert_recipients as {recipient: (state, attempts)}."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT recipient, state, attempts FROM alert_recipients ORDER BY recipient")
        return {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
