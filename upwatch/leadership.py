"""One active copy of a singleton service (the detector, the alerter) with standby copies taking over.

Contract: `lead(url, name, stop, work)` runs `work(stepped_down)` only while this process holds the
leadership of `name`, and returns when `stop` is set. `stepped_down` is set when the leadership ends
or `stop` is set: work stops then (and may be started again on a later leadership).

Leadership is a session-level advisory lock taken on a connection of its own (not from the pool), so:

- only one process in the whole database holds it (pg_try_advisory_lock);
- a leader that dies (SIGKILL, a crash, the machine) loses it at once: PostgreSQL drops the lock
  with the session when the connection closes;
- a leader that hangs or is cut off from the database loses it within IDLE_TIMEOUT_S: the session
  is opened with `idle_session_timeout`, and the leader proves it is alive by a query every
  CHECK_S; a server that hears nothing for that long ends the session, and with it the lock;
- a leader that cannot confirm its session for STEP_DOWN_S (< IDLE_TIMEOUT_S) stops `work` itself
  (`stepped_down` is set; work must return soon after), and one whose session is gone stops at its
  next check; a new leader waits GRACE_S before it starts, so two copies never run at once, give or
  take the work's own stop time.

Standbys try to take the lock every CHECK_S. Why an advisory lock rather than a lease row: the
database itself ends the lock with the session, so a dead leader is replaced within one CHECK_S,
not after a lease runs out; the idle timeout covers the hung and the cut-off leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg

from upwatch.db import error_summary

logger = logging.getLogger(__name__)

CHECK_S = 1.0
STEP_DOWN_S = 4.0
IDLE_TIMEOUT_S = 8.0
# A new leader waits this long before it starts: a leader whose session the server ended (a restart,
# pg_terminate_backend) notices at its next check, within CHECK_S, and must have stopped by then.
GRACE_S = 2 * CHECK_S

Work = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, returning early when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def lock_key(name: str) -> int:
    """The advisory lock key of a singleton name: a stable signed 64-bit number."""
    return int.from_bytes(hashlib.blake2b(f"upwatch-leader:{name}".encode(), digest_size=8).digest(), "big",
                          signed=True)


async def lead(url: str, name: str, stop: asyncio.Event, work: Work) -> None:
    """Run `work` while this process leads `name`; stand by otherwise; return when `stop` is set."""
    key, waiting_logged = lock_key(name), False
    while not stop.is_set():
        try:
            conn = await _session(url)
        except (psycopg.Error, OSError) as e:
            logger.warning("leader election: database unavailable, retrying name=%s error=%r", name, error_summary(e))
            await pause(stop, CHECK_S * 2)
            continue
        try:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            row = await cur.fetchone()
            if row and row[0]:
                waiting_logged = False
                await pause(stop, GRACE_S)
                await conn.execute("SELECT 1")  # still ours after the grace
                if not stop.is_set():
                    logger.info("leader election: this process is the active %s", name)
                    await _while_leading(conn, name, stop, work)
            elif not waiting_logged:
                logger.info("leader election: another %s is active, standing by", name)
                waiting_logged = True
        except (psycopg.Error, OSError) as e:
            logger.warning("leader election: session lost name=%s error=%r", name, error_summary(e))
        finally:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()  # releases the lock, if held
        await pause(stop, CHECK_S)


async def _session(url: str) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
    # The server ends a session that sends nothing for this long: a hung leader's lock is let go
    # (PostgreSQL 14 and later; before, only a dead or disconnected leader is replaced).
    try:
        await conn.execute(f"SET idle_session_timeout = '{int(IDLE_TIMEOUT_S * 1000)}ms'")
    except psycopg.errors.UndefinedObject:
        logger.warning("leader election: this PostgreSQL has no idle_session_timeout (before 14): a hung "
                       "leader is not replaced until its connection closes")
    await conn.execute("SET application_name = 'upwatch-leader'")
    return conn


async def _while_leading(conn: psycopg.AsyncConnection, name: str, stop: asyncio.Event, work: Work) -> None:
    stepped_down = asyncio.Event()
    task = asyncio.create_task(work(stepped_down), name=f"{name}-leader-work")
    confirmed = time.monotonic()
    try:
        while not stop.is_set() and not task.done():
            await pause(stop, CHECK_S)
            try:
                async with asyncio.timeout(STEP_DOWN_S / 2):
                    await conn.execute("SELECT 1")
                confirmed = time.monotonic()
            except (psycopg.Error, OSError, TimeoutError) as e:
                # A session that is gone has already let the lock go: a standby may be starting now.
                if conn.closed or conn.broken or time.monotonic() - confirmed >= STEP_DOWN_S:
                    logger.error("leader election: stepping down, the session cannot be confirmed name=%s "
                                 "error=%r", name, error_summary(e) if isinstance(e, psycopg.Error) else repr(e))
                    return
    finally:
        stepped_down.set()
        await task  # work returns once stepped_down (or stop) is set; its errors are the caller's
