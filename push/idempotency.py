"""Idempotency-Key for POST /logs: a repeat of an accepted batch is answered, not stored again.

The key of an accepted batch is stored (as its SHA-256) in push_idempotency_keys
by the writer, in the same transaction as the batch's records or in the same
spool append, so it survives restarts and outages exactly as the records do.
This process also remembers the keys it accepted (the rows may still be queued
or spooled), and runs one request per key at a time, so a retry that arrives
while the first attempt is still waiting for its commit waits for its answer.
Keys are kept for WINDOW; after that a repeat is a new batch.

With more than one process serving POST /logs (push.workers), the one-request-per-key rule holds
across them through a PostgreSQL advisory lock on (service, key), taken on a connection of this
process's own (`shared_url`) and released only once the batch is committed or spooled: a retry that
reaches another worker waits for the first attempt, then finds its key in the table. While the
database is unreachable the lock cannot be taken and, as for lookups, only this process's keys are
checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import psycopg
import psycopg_pool
from psycopg_pool import AsyncConnectionPool

from push.bodies import Refusal
from upwatch.db import error_summary
from upwatch.rows import PUSH_IDEMPOTENCY_KEYS, Batch

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
WINDOW = timedelta(hours=24)
MAX_LENGTH = 255
LOOKUP_TIMEOUT_S = 1.0
LOCK_WAIT_S = 30.0  # a retry waits this long for another process's attempt with the same key
LOCK_CLASS = 0x7570  # advisory lock namespace: (LOCK_CLASS xor service id, first 31 bits of the key hash)
_REMEMBERED = 100_000  # keys this process accepted, newest kept


def parse(value: str | None) -> str | Refusal | None:
    """The key of an `Idempotency-Key` header (a bare token or a quoted string), None without one,
    or 422 naming the header."""
    if value is None:
        return None
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= MAX_LENGTH or not all(" " <= c <= "~" for c in key):
        return Refusal(422, f"invalid {HEADER} header", [{
            "field": HEADER, "reason": f"must be 1 to {MAX_LENGTH} printable ASCII characters"}])
    return key


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def reused() -> Refusal:
    """422 for a key that was accepted with another body (a client bug: two batches under one key)."""
    return Refusal(422, f"{HEADER} was used for a different request body within {WINDOW.days * 24} h", [{
        "field": HEADER, "reason": "already used for another batch; send a new key for a new batch"}])


class Busy(Exception):
    """Another process's request with the same key did not finish within LOCK_WAIT_S."""


BUSY = Refusal(503, f"a request with this {HEADER} is still being stored; retry later",
               headers={"Retry-After": "5"})


@dataclass(frozen=True)
class Seen:
    """A key accepted before: how many records its batch had (the answer to repeat) and its body's hash."""

    accepted: int
    body_hash: str


@dataclass
class Claim:
    """A key held by one request for a body with hash `body_hash`; `seen`: the batch accepted with this
    key before, or None."""

    keys: IdempotencyKeys
    name: tuple[int, str]
    body_hash: str
    seen: Seen | None = None

    def companion(self, accepted: int) -> Batch:
        """The key's row, to be written with the batch it belongs to."""
        return Batch(PUSH_IDEMPOTENCY_KEYS.name, ("service_id", "key_hash", "accepted", "body_hash"),
                     [(*self.name, accepted, self.body_hash)])

    def accept(self, records: int) -> None:
        """The batch is queued with its key: from now on a repeat gets this answer (even if this request
        is cancelled before it answers, its rows and key are on their way to the database)."""
        self.seen = Seen(records, self.body_hash)
        self.keys.remember(self.name, self.seen)


class IdempotencyKeys:
    """Keys accepted within WINDOW: remembered here, and looked up in the database."""

    def __init__(self, pool: AsyncConnectionPool, *, shared_url: str | None = None):
        self.pool = pool
        self.shared_url = shared_url
        self._conn: psycopg.AsyncConnection | None = None
        self._connecting = asyncio.Lock()
        self._accepted: OrderedDict[tuple[int, str], tuple[float, Seen]] = OrderedDict()
        self._locks: dict[tuple[int, str], tuple[asyncio.Lock, int]] = {}  # lock, requests holding or waiting

    @contextlib.asynccontextmanager
    async def claim(self, service_id: int, hashed: str, body: str) -> AsyncIterator[Claim]:
        """Hold the key for one request; a concurrent request with the same key waits for it."""
        name = (service_id, hashed)
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                held = await self._lock(name) if self.shared_url else None
                try:
                    yield Claim(self, name, body, await self._seen(name))
                finally:
                    if held is not None:
                        await self._unlock(held, name)
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)

    async def _lock(self, name: tuple[int, str]) -> psycopg.AsyncConnection | None:
        """Take the advisory lock of `name` on this process's lock connection (which holds the locks of
        all its requests: one request per key in this process already); None without the database."""
        deadline = time.monotonic() + LOCK_WAIT_S
        pause_s = 0.005
        while True:
            try:
                conn = await self._connection()
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", _lock_id(name))
                row = await cur.fetchone()
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                logger.warning("idempotency key not locked, database unavailable error=%r", error_summary(e))
                self._conn = None
                return None
            if row is not None and row[0]:
                return conn
            if time.monotonic() >= deadline:
                raise Busy(f"{HEADER} held by another request for {LOCK_WAIT_S:.0f} s")
            await asyncio.sleep(pause_s)
            pause_s = min(0.1, pause_s * 2)

    async def _unlock(self, conn: psycopg.AsyncConnection, name: tuple[int, str]) -> None:
        with contextlib.suppress(psycopg.OperationalError, psycopg.InterfaceError):  # a lost session holds none
            await conn.execute("SELECT pg_advisory_unlock(%s, %s)", _lock_id(name))

    async def _connection(self) -> psycopg.AsyncConnection:
        async with self._connecting:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self.shared_url or "", autocommit=True,
                                                                   connect_timeout=int(LOOKUP_TIMEOUT_S) + 1)
            return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def remember(self, name: tuple[int, str], seen: Seen) -> None:
        self._accepted[name] = (time.monotonic(), seen)
        self._accepted.move_to_end(name)
        while len(self._accepted) > _REMEMBERED:
            self._accepted.popitem(last=False)

    async def _seen(self, name: tuple[int, str]) -> Seen | None:
        remembered = self._accepted.get(name)
        if remembered is not None:
            if time.monotonic() - remembered[0] <= WINDOW.total_seconds():
                return remembered[1]
            del self._accepted[name]
        try:
            async with self.pool.connection(timeout=LOOKUP_TIMEOUT_S) as conn:
                cur = await conn.execute("SELECT accepted, body_hash FROM push_idempotency_keys WHERE service_id = %s"
                                         " AND key_hash = %s AND created_at > now() - %s", (*name, WINDOW))
                row = await cur.fetchone()
        except (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout) as e:
            # Ingest goes on through the writer's spool during an outage; only the keys this
            # process accepted can be checked then (docs/push.md, "Retries and idempotency").
            logger.warning("idempotency key not checked, database unavailable error=%r", error_summary(e))
            return None
        return None if row is None else Seen(int(row[0]), str(row[1]))

    async def prune(self, conn: psycopg.AsyncConnection) -> int:
        """Delete keys older than WINDOW; the number deleted."""
        cur = await conn.execute("DELETE FROM push_idempotency_keys WHERE created_at < now() - %s", (WINDOW,))
        return cur.rowcount


def _lock_id(name: tuple[int, str]) -> tuple[int, int]:
    service_id, hashed = name
    return LOCK_CLASS ^ service_id, int(hashed[:8], 16) & 0x7FFFFFFF
