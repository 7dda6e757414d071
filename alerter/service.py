"""The alerter service: evaluate new results every `evaluate_interval`, deliver the outbox
as soon as something is due. A database outage pauses both loops; nothing is lost
because state, cursors and the outbox all live in the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alerter import evaluate, outbox, rules
from upwatch import leadership
from upwatch.config.alerting import Alerting
from upwatch.db import error_summary
from upwatch.runtime import Runtime, pause

logger = logging.getLogger(__name__)

DB_RETRY_MAX_S = 10.0


async def evaluate_loop(pool: AsyncConnectionPool, alerting: Alerting, stop: asyncio.Event,
                        wake: asyncio.Event) -> None:
    """Run evaluation rounds until stopped; rules only every `rule_interval`."""
    interval, rule_interval = alerting.evaluate_interval.total_seconds(), alerting.rule_interval.total_seconds()
    last_rules, delay = float("-inf"), interval
    watch = rules.Watch()
    while not stop.is_set():
        rules_due = time.monotonic() - last_rules >= rule_interval
        try:
            report = await evaluate.run_once(pool, alerting, rules_due, watch)
        except (psycopg.Error, PoolTimeout) as e:
            delay = min(DB_RETRY_MAX_S, delay * 2)
            logger.warning("alerter evaluation failed, retrying in %.1f s error=%r", delay, error_summary(e))
        else:
            delay = interval
            if rules_due and not report.skipped:
                last_rules = time.monotonic()
            if report.alerts:
                wake.set()
        await pause(stop, delay)


async def deliver_loop(pool: AsyncConnectionPool, alerting: Alerting, stop: asyncio.Event,
                       wake: asyncio.Event) -> None:
    """Deliver due outbox rows one message at a time; sleep when nothing is due."""
    poll, delay = alerting.delivery.poll_interval.total_seconds(), 0.0
    while not stop.is_set():
        wake.clear()
        try:
            carried = await outbox.deliver_next(pool, alerting)
        except (psycopg.Error, PoolTimeout) as e:
            delay = min(DB_RETRY_MAX_S, max(poll, delay * 2))
            logger.warning("alerter delivery paused, retrying in %.1f s error=%r", delay, error_summary(e))
            await pause(stop, delay)
            continue
        delay = 0.0
        if not carried:
            await pause(stop, poll, wake)


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    """Run until `stop` is set."""
    alerting = runtime.config.alerting
    if not alerting.enabled:
        logger.info("alerter disabled by alerting.enabled=false")
        await stop.wait()
        return
    logger.info("alerter started evaluate_interval_s=%g group_wait_s=%g", alerting.evaluate_interval.total_seconds(),
                alerting.group_wait.total_seconds())
    wake = asyncio.Event()

    async def evaluate(stepped_down: asyncio.Event) -> None:
        await evaluate_loop(runtime.pool, alerting, stepped_down, wake)

    # Evaluation runs in one copy of the alerter at a time (others stand by and take over, see
    # upwatch.leadership); every copy delivers.
    tasks = [asyncio.create_task(leadership.lead(runtime.database_url, "alerter", stop, evaluate),
                                 name="alerter-evaluate")]
    # Senders are independent: SKIP LOCKED hands each a different message.
    tasks += [asyncio.create_task(deliver_loop(runtime.pool, alerting, stop, wake), name=f"alerter-deliver-{i}")
              for i in range(alerting.delivery.concurrency)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    logger.info("alerter stopped")
