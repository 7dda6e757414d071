"""Alerter latency and burst throughput against a real PostgreSQL and a local SMTP server.

    python bench/alerter_latency.py [--trials 40] [--burst 1000]

1. Latency: endpoints cross failure_threshold one after another while the alerter
   service runs with default settings (evaluate_interval 1s, poll_interval 1s) except
   group_wait=0s (excluded by definition). Measured from the insert of the failing check
   that crosses the threshold to the SMTP server accepting the message.
2. Burst: N endpoints cross the threshold at once; time until every alert is accepted,
   with grouping (default batch_size: up to 200 alerts per message), and with one
   message per alert (batch_size 1) from one sender and from four (concurrency 4).

Uses $UPWATCH_DATABASE_URL if set, else a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import os

from aiosmtpd.controller import Controller
from psycopg_pool import AsyncConnectionPool

from alerter import service
from upwatch import db
from upwatch.config import Config
from upwatch.config.alerting import Alerting
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.runtime import Runtime

_DOWN = re.compile(r"DOWN (ep-\w+)")


class Arrivals:
    """aiosmtpd handler: when each endpoint's DOWN was accepted."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        self.messages += 1
        for name in _DOWN.findall(envelope.content.decode("utf-8", "replace")):
            self.at.setdefault(name, now)
        return "250 accepted"


async def fail(pool: AsyncConnectionPool, endpoint_ids: list[int], count: int) -> None:
    rows = [(datetime.now(UTC), eid, uuid.uuid4(), False, "timeout", "timeout after 10 s")
            for eid in endpoint_ids for _ in range(count)]
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.executemany("INSERT INTO probe_results (time, endpoint_id, id, ok, error_kind, error)"
                              " VALUES (%s, %s, %s, %s, %s, %s)", rows)


async def endpoints(pool: AsyncConnectionPool, prefix: str, n: int) -> list[int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO endpoints (name, kind, target) SELECT %s || g, 'http', 'bench' FROM generate_series(1, %s) g"
            " RETURNING id", (prefix, n))
        return [r[0] for r in await cur.fetchall()]


async def until(done: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> None:
    """Poll `done` (filled in by the SMTP server's own thread) for at most `timeout_s`."""
    for _ in range(int(timeout_s / step_s)):
        if done():
            return
        await asyncio.sleep(step_s)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run_service(pool: AsyncConnectionPool, url: str,
                      alerting: Alerting) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(Runtime(Config(alerting=alerting), Path("bench"), url, pool), stop))
    return stop, task


async def latency(pool: AsyncConnectionPool, url: str, smtp_port: int, arrivals: Arrivals, trials: int) -> None:
    alerting = Alerting.model_validate({"smtp": {"host": "127.0.0.1", "port": smtp_port,
                                                 "recipients": ["oncall@example.test"]}, "group_wait": "0s"})
    ids = await endpoints(pool, "ep-lat", trials)
    await fail(pool, ids, 2)
    stop, task = await run_service(pool, url, alerting)
    await asyncio.sleep(1.5)  # the first two failures are evaluated: nothing fires yet
    crossed: dict[str, float] = {}
    for i, eid in enumerate(ids, start=1):
        await fail(pool, [eid], 1)
        crossed[f"ep-lat{i}"] = time.monotonic()
        await asyncio.sleep(0.25)
    await until(lambda: len([n for n in crossed if n in arrivals.at]) >= trials, 30)
    stop.set()
    await task
    waits = [arrivals.at[n] - t for n, t in crossed.items() if n in arrivals.at]
    print(f"latency (threshold-crossing check -> SMTP accepted), {len(waits)}/{trials} delivered:")
    print(f"  p50 {pct(waits, 50):.2f} s  p95 {pct(waits, 95):.2f} s  p99 {pct(waits, 99):.2f} s"
          f"  max {max(waits):.2f} s  mean {statistics.mean(waits):.2f} s")


async def burst(pool: AsyncConnectionPool, url: str, smtp_port: int, arrivals: Arrivals, n: int,
                batch_size: int, concurrency: int, label: str) -> None:
    alerting = Alerting.model_validate({
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "recipients": ["oncall@example.test"]},
        "group_wait": "0s", "failure_threshold": 1,
        "delivery": {"batch_size": batch_size, "concurrency": concurrency}})
    prefix = f"ep-{label}"
    ids = await endpoints(pool, prefix, n)
    messages_before = arrivals.messages
    stop, task = await run_service(pool, url, alerting)
    started = time.monotonic()
    await fail(pool, ids, 1)
    names = [f"{prefix}{i}" for i in range(1, n + 1)]
    await until(lambda: all(name in arrivals.at for name in names), 300)
    elapsed = max(arrivals.at.get(name, time.monotonic()) for name in names) - started
    stop.set()
    await task
    delivered = sum(name in arrivals.at for name in names)
    print(f"burst of {n} alerts, batch_size {batch_size}, concurrency {concurrency}: {delivered} delivered"
          f" in {elapsed:.2f} s ({delivered / elapsed:.0f} alerts/s, {arrivals.messages - messages_before} messages)")


async def main(args: argparse.Namespace, url: str) -> None:
    await migrate(url)
    pool = await db.open_pool(url, max_size=5)
    arrivals = Arrivals()
    controller = Controller(arrivals, hostname="127.0.0.1", port=args.smtp_port)
    controller.start()
    try:
        await latency(pool, url, args.smtp_port, arrivals, args.trials)
        await burst(pool, url, args.smtp_port, arrivals, args.burst, 200, 1, "grouped")
        await burst(pool, url, args.smtp_port, arrivals, args.burst, 1, 1, "single")
        await burst(pool, url, args.smtp_port, arrivals, args.burst, 1, 4, "parallel")
    finally:
        controller.stop()
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--smtp-port", type=int, default=18025)
    options = parser.parse_args()
    external = os.environ.get("UPWATCH_DATABASE_URL")
    if external:
        asyncio.run(main(options, external))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            # the server's user (embedded_postgres, as root) must enter it; it holds nothing secret
            os.chmod(tmp, 0o755)  # noqa: S103 - see above
            server = EmbeddedPostgres(Path(tmp) / "pg", settings={"fsync": "off"})
            try:
                asyncio.run(main(options, server.start()))
            finally:
                server.stop()
