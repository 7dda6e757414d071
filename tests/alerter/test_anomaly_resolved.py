"""Anomaly RESOLVED notices (#13.6): the detector's own writer marks rows anomalous or normal, the alerter
(real PostgreSQL, real SMTP server on 127.0.0.1) tells ANOMALY, then RESOLVED once the series has been
judged normal for `anomaly_resolve_after`; a shorter lull tells nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerting_support import SmtpServer, add_endpoint, alerting, rows, wait_for
from psycopg_pool import AsyncConnectionPool

from alerter import evaluate, outbox, service
from detector import store
from detector.incidents import gap_for
from detector.scoring import Verdict
from detector.series import Series
from upwatch.config import Config
from upwatch.config.alerting import Alerting
from upwatch.db import open_pool
from upwatch.runtime import Runtime

STEP = timedelta(minutes=1)
START = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


class Detector:
    """Writes verdicts the way the detector service does: anomalies, incidents and watermark together."""

    def __init__(self, pool: AsyncConnectionPool, endpoint_id: int) -> None:
        self.pool, self.minute = pool, 0
        self.series = Series(f"endpoint:{endpoint_id}:latency", "latency", "latency", "ms", endpoint_id=endpoint_id)

    async def judge(self, pattern: str) -> None:
        """'aaann': one scored row a minute, a = anomalous, n = normal."""
        verdicts = []
        for mark in pattern:
            at = START + self.minute * STEP
            self.minute += 1
            anomalous = mark == "a"
            verdicts.append(Verdict(at, 900.0 if anomalous else 120.0, 0.95 if anomalous else 0.1, anomalous,
                                    "high", "latency 900 ms vs usual 120±15 ms" if anomalous else "", {}))
        async with self.pool.connection() as conn, conn.transaction():
            await store.record(conn, self.series, verdicts, None, gap_for(STEP))
            await store.advance(conn, self.series, verdicts[-1].time, verdicts[-1].score)


async def settle(pool: AsyncConnectionPool, cfg: Alerting) -> None:
    """One evaluation round over everything written so far, then deliver whatever it decided."""
    await evaluate.run_once(pool, cfg)
    while await outbox.deliver_next(pool, cfg):
        pass


async def test_resolved_is_delivered_once_after_the_quiet_time_across_a_restart(
        pool: AsyncConnectionPool, database_url: str, smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port, anomaly_resolve_after="10m")
    detector = Detector(pool, await add_endpoint(pool, "api"))
    first = await open_pool(database_url, max_size=3, name="alerter-1")
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(Runtime(Config(alerting=cfg), Path("upwatch.yaml"), database_url,
                                                   first), stop))
    try:
        await detector.judge("aaaaa")
        await wait_for(lambda: smtp.messages, timeout_s=10)
        await detector.judge("nnnn")  # 4 minutes back to normal: inside the quiet time
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        await first.close()
    second = await open_pool(database_url, max_size=3, name="alerter-2")  # a new process: only the DB remembers
    try:
        await settle(second, cfg)
        assert smtp.mailbox.subjects() == ["[upwatch] ANOMALY high api: latency 900 ms vs usual 120±15 ms"]
        await detector.judge("nnnnn")  # 9 minutes: still not over
        await settle(second, cfg)
        assert len(smtp.messages) == 1
        await detector.judge("n")  # 10 minutes judged normal since the last anomalous row
        await settle(second, cfg)
        await detector.judge("nnn")
        await settle(second, cfg)
    finally:
        await second.close()
    anomaly, resolved = smtp.mailbox.subjects()
    assert anomaly.startswith("[upwatch] ANOMALY high api")
    assert resolved == "[upwatch] RESOLVED api: back to normal after 4m"  # first to last anomalous row
    body = smtp.messages[1].get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Cause: latency 900 ms vs usual 120±15 ms" in text and "Now: back within its baseline for 10m" in text
    assert [(r["kind"], r["event"], r["state"]) for r in await rows(pool)] == [
        ("anomaly", "firing", "sent"), ("anomaly", "resolved", "sent")]


async def test_a_lull_inside_the_quiet_time_sends_nothing(pool: AsyncConnectionPool, smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port, anomaly_resolve_after="10m")
    detector = Detector(pool, await add_endpoint(pool, "api"))
    await detector.judge("aaa")
    await settle(pool, cfg)
    for _ in range(3):  # flapping: each lull shorter than the quiet time, each burst a new detector incident
        await detector.judge("nnnnnnnnn")
        await settle(pool, cfg)
        await detector.judge("aa")
        await settle(pool, cfg)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM incidents")
        assert await cur.fetchone() == (4,)
    assert [r["event"] for r in await rows(pool)] == ["firing"]
    await detector.judge("nnnnnnnnnn")
    await settle(pool, cfg)
    assert [r["event"] for r in await rows(pool)] == ["firing", "resolved"]
    assert [s.split(":")[0] for s in smtp.mailbox.subjects()] == ["[upwatch] ANOMALY high api",
                                                                  "[upwatch] RESOLVED api"]


async def test_an_anomaly_after_its_resolved_fires_again_after_the_cooldown_and_old_incidents_do_not(
        pool: AsyncConnectionPool, smtp: SmtpServer) -> None:
    cfg = alerting(smtp.port, anomaly_resolve_after="5m", cooldown="10m")
    detector = Detector(pool, await add_endpoint(pool, "api"))
    await detector.judge("aa")
    await settle(pool, cfg)
    await detector.judge("nnnnn")
    await settle(pool, cfg)
    async with pool.connection() as conn:  # the incidents watermark overlap reads the old incident again
        await conn.execute("UPDATE incidents SET updated_at = now()")
    await settle(pool, cfg)
    assert [r["event"] for r in await rows(pool)] == ["firing", "resolved"]
    await detector.judge("a")  # a new anomaly right after the RESOLVED: held back by the cooldown
    await settle(pool, cfg)
    assert [r["event"] for r in await rows(pool)] == ["firing", "resolved"]
    async with pool.connection() as conn:  # the cooldown is over (its clock lives in alert_state)
        cur = await conn.execute("UPDATE alert_state SET last_sent_at = last_sent_at - interval '11 minutes'"
                                 " WHERE kind = 'anomaly' AND status = 'firing' RETURNING suppressed_count")
        assert await cur.fetchone() == (1,)
    await settle(pool, cfg)
    assert [r["event"] for r in await rows(pool)] == ["firing", "resolved", "firing"]
    assert len(smtp.messages) == 3
    body = smtp.messages[2].get_body(("plain",))
    assert body is not None and "Held back: 1 notifications during the cooldown" in body.get_content()


async def test_resolved_waits_for_the_detector_to_judge_rows(pool: AsyncConnectionPool, smtp: SmtpServer) -> None:
    """Wall-clock time alone resolves nothing: a detector that stopped scoring has not seen the series recover."""
    cfg = alerting(smtp.port, anomaly_resolve_after="1m")
    detector = Detector(pool, await add_endpoint(pool, "api"))
    await detector.judge("aaa")  # two hours ago, by the rows' time; nothing judged since
    await settle(pool, cfg)
    await settle(pool, cfg)
    assert [r["event"] for r in await rows(pool)] == ["firing"]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT status FROM alert_state WHERE kind = 'anomaly'")
        assert await cur.fetchone() == ("firing",)
