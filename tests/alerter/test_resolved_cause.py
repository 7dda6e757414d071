"""RESOLVED messages name what made the endpoint DOWN, not just its last error; push endpoints say
what they wait for instead of `Target: push`. Real path: endpoints synced from config, stored
results, evaluation, outbox, a real SMTP server."""

from __future__ import annotations

from email.message import EmailMessage

from alerting_support import SmtpServer, add_results, alerting, rows
from psycopg_pool import AsyncConnectionPool

from alerter import evaluate, outbox
from upwatch.catalog import sync_endpoints
from upwatch.config.endpoints import Endpoint

MISSED = "no result within 6m (none seen recently)"


async def sync(pool: AsyncConnectionPool, *endpoints: Endpoint) -> dict[str, int]:
    async with pool.connection() as conn:
        return (await sync_endpoints(conn, list(endpoints))).ids


async def step(pool: AsyncConnectionPool, cfg: object) -> None:
    await evaluate.run_once(pool, cfg)  # type: ignore[arg-type]
    while await outbox.deliver_next(pool, cfg):  # type: ignore[arg-type]
        pass


def text(message: EmailMessage) -> str:
    content: str = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return "\n".join(content.splitlines()) + "\n"


async def test_resolved_names_the_cause_of_the_down_and_the_last_error(pool: AsyncConnectionPool,
                                                                       smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port)
    ids = await sync(pool, Endpoint(name="nightly-backup", kind="push", period="5m", grace="1m"))
    backup = ids["nightly-backup"]
    await add_results(pool, backup, "f", error=MISSED, error_kind="missing_heartbeat")
    await step(pool, cfg)
    await add_results(pool, backup, "ff", error="disk full", error_kind="reported")
    await step(pool, cfg)
    await add_results(pool, backup, "ss")
    await step(pool, cfg)
    down, resolved = smtp.messages
    # strip(): a subject this long is folded right after "Subject:", and Python's parser keeps that space
    assert str(down["Subject"]).strip() == f"[upwatch] DOWN nightly-backup: {MISSED}"
    assert str(resolved["Subject"]).strip().startswith("[upwatch] RESOLVED nightly-backup: up again after ")
    body = text(resolved)
    assert f"Cause: {MISSED}\n" in body and "Last error: disk full\n" in body
    assert "Reason: disk full" not in body
    target = "check-ins to /api/v1/checks/nightly-backup every 5m (grace 1m)"
    assert f"Target: {target}\n" in text(down) and f"Target: {target}\n" in body
    assert "Target: push" not in text(down) + body
    [_, r] = await rows(pool)
    assert r["payload"]["cause"] == MISSED and r["payload"]["last_error"] == "disk full"


async def test_resolved_after_one_kind_of_failure_names_only_the_cause(
        pool: AsyncConnectionPool, smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port)
    ids = await sync(pool, Endpoint(name="api", url="https://api.example.test/health"))
    await add_results(pool, ids["api"], "fff", error="connection refused", error_kind="connect")
    await step(pool, cfg)
    await add_results(pool, ids["api"], "ss")
    await step(pool, cfg)
    _, resolved = smtp.messages
    body = text(resolved)
    assert "Cause: connection refused\n" in body and "Last error" not in body
    assert "Target: https://api.example.test/health\n" in body
