"""Push clients: services and their API keys.

A raw key (`uwk_` + 43 url-safe characters) is shown once and never stored:
the database keeps its SHA-256 and a 12-character prefix to find it by.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import AsyncConnection, errors, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from push import origins
from upwatch.db import DatabaseUnavailable, connect, error_summary

logger = logging.getLogger(__name__)

# How long a request waits for a pooled connection before answering 503.
DB_TIMEOUT_S = 3.0
KEY_PREFIX = "uwk_"
PREFIX_LEN = 12
_DUMMY_HASH = hashlib.sha256(b"upwatch-no-such-key").digest()


class PushError(Exception):
    """An operation on services or keys that cannot be done; the message says why."""


@dataclass(frozen=True)
class Caller:
    """Who an accepted API key belongs to."""

    key_id: int
    prefix: str
    service_id: int
    service: str
    privacy_level: int


def generate_key() -> str:
    """A new raw API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(raw: str) -> bytes:
    """The stored form of a raw key."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).digest()


async def create_service(conn: AsyncConnection, name: str, *, description: str = "", base_url: str | None = None,
                         privacy_level: int = 0, retention_days: int = 30,
                         allowed_hosts: list[str] | None = None,
                         replay_methods: list[str] | None = None) -> dict[str, Any]:
    """Insert a service; PushError if the name is taken or a replay setting is invalid."""
    methods = check_replay_settings(base_url, allowed_hosts or [], replay_methods or [])
    try:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL("INSERT INTO services (name, description, base_url, privacy_level, retention_days, allowed_hosts,"
                    " replay_methods) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {}").format(_SERVICE_COLUMNS),
            (name, description, base_url, privacy_level, retention_days, allowed_hosts or [], methods),
        )
    except errors.UniqueViolation:
        raise PushError(f"service {name!r} already exists") from None
    row = await returned(cur)
    logger.info("service created name=%s id=%d", name, row["id"])
    return row


_SERVICE_FIELDS = ("id", "name", "description", "base_url", "allowed_hosts", "replay_methods", "privacy_level",
                   "retention_days", "created_at")
_SERVICE_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, _SERVICE_FIELDS))


async def returned(cur: psycopg.AsyncCursor[dict[str, Any]]) -> dict[str, Any]:
    """The row of an INSERT ... RETURNING, which always has one (none is a bug, not a client error)."""
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return row
_METHOD = re.compile(r"[A-Za-z]{1,16}")


def check_replay_settings(base_url: str | None, allowed_hosts: list[str], replay_methods: list[str]) -> list[str]:
    """The replay methods upper-cased; PushError naming the bad base_url, allow-list entry or method."""
    try:
        if base_url is not None:
            origins.origin_of(base_url)
        for entry in allowed_hosts:
            origins.allowed_entry(entry)
    except origins.OriginError as e:
        raise PushError(f"replay allow-list: {e}") from None
    for method in replay_methods:
        if not _METHOD.fullmatch(method):
            raise PushError(f"replay method {method!r} is not an HTTP method name")
    return sorted({m.upper() for m in replay_methods})


async def list_services(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every service with its number of active keys."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql.SQL(
        "SELECT {}, (SELECT count(*) FROM api_keys k WHERE k.service_id = s.id AND k.revoked_at IS NULL)"
        " AS active_keys FROM services s ORDER BY s.name").format(
            sql.SQL(", ").join(sql.Identifier("s", c) for c in _SERVICE_FIELDS)))
    return await cur.fetchall()


async def get_service(conn: AsyncConnection, name: str) -> dict[str, Any] | None:
    """One service by name."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql.SQL("SELECT {} FROM services WHERE name = %s").format(_SERVICE_COLUMNS), (name,))
    return await cur.fetchone()


async def delete_service(conn: AsyncConnection, name: str, *, purge: bool) -> dict[str, int]:
    """Remove a service and its keys; with purge also its logs and rollups. PushError if logs remain."""
    async with conn.transaction():
        cur = await conn.execute("SELECT id FROM services WHERE name = %s FOR UPDATE", (name,))
        row = await cur.fetchone()
        if row is None:
            raise PushError(f"no service named {name!r}")
        await conn.execute("SELECT pg_notify(%s, '')", (KEYS_CHANNEL,))  # every cached key, on commit
        service_id = row[0]
        counts = {"logs": 0, "rollups": 0, "replays": 0}
        if not purge:
            cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM request_logs WHERE service_id = %s)", (service_id,))
            if (await cur.fetchone() or [False])[0]:
                raise PushError(f"service {name!r} has stored logs; use --purge to delete them too")
        for table, key in (("request_replays", "replays"), ("request_logs", "logs"), ("request_rollup_1m", "rollups")):
            cur = await conn.execute(sql.SQL("DELETE FROM {} WHERE service_id = %s").format(sql.Identifier(table)),
                                     (service_id,))
            counts[key] = cur.rowcount
        cur = await conn.execute("DELETE FROM api_keys WHERE service_id = %s", (service_id,))
        counts["keys"] = cur.rowcount
        await conn.execute("DELETE FROM services WHERE id = %s", (service_id,))
    logger.info("service deleted name=%s %s", name, " ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


async def create_key(conn: AsyncConnection, service: str, name: str = "") -> tuple[str, dict[str, Any]]:
    """A new key for `service`: (raw key, stored row). The raw key cannot be recovered later."""
    found = await get_service(conn, service)
    if found is None:
        raise PushError(f"no service named {service!r}")
    raw = generate_key()
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "INSERT INTO api_keys (service_id, name, prefix, key_hash) VALUES (%s, %s, %s, %s)"
        " RETURNING id, name, prefix, created_at, last_used_at, revoked_at",
        (found["id"], name, raw[:PREFIX_LEN], hash_key(raw)),
    )
    row = await returned(cur)
    logger.info("key created service=%s prefix=%s", service, row["prefix"])
    return raw, row


async def list_keys(conn: AsyncConnection, service: str) -> list[dict[str, Any]]:
    """A service's keys (never their hashes); PushError for an unknown service."""
    found = await get_service(conn, service)
    if found is None:
        raise PushError(f"no service named {service!r}")
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_keys"
        " WHERE service_id = %s ORDER BY created_at, id", (found["id"],))
    return await cur.fetchall()


async def revoke_key(conn: AsyncConnection, prefix: str) -> datetime:
    """Revoke the key with this prefix; return when. PushError if none is active."""
    cur = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = %s AND revoked_at IS NULL RETURNING revoked_at",
        (prefix,))
    row = await cur.fetchone()
    if row is None:
        raise PushError(f"no active key with prefix {prefix!r}")
    await conn.execute("SELECT pg_notify(%s, %s)", (KEYS_CHANNEL, prefix))  # on commit: every KeyStore following
    logger.info("key revoked prefix=%s", prefix)
    revoked_at: datetime = row[0]
    return revoked_at


# Revocations and service deletions are NOTIFYed here (payload: the key prefix, '' for all), so that
# every process serving POST /logs (push.workers) drops its cached answer at once (KeyStore.follow).
KEYS_CHANNEL = "upwatch_push_keys"


class _Entry(NamedTuple):
    """What the database said about a prefix, and when (monotonic seconds). Never the raw key."""

    checked_at: float
    key_hash: bytes | None
    caller: Caller | None


_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, DatabaseUnavailable)
_CACHE_MAX = 10_000


class KeyStore:
    """Checks raw keys against the database, caching answers for `ttl_s` and
    batching last_used_at updates, so ingest does not cost a query per request.

    A key revoked through this store stops working at once; one revoked by
    another process (the CLI) within `ttl_s`. While the database is
    unreachable, a key verified within the last `outage_grace_s` keeps being
    accepted without waiting for the database, and a background task retries
    every `retry_s` (through the pool, else on a connection of its own while
    the pool backs off): each retry that reaches the database re-checks every
    cached key, so a revocation takes effect within about `retry_s` of the
    database being back, and the outage ends once the pool answers.
    """

    def __init__(self, pool: AsyncConnectionPool, *, ttl_s: float = 5.0, outage_grace_s: float = 86_400.0,
                 retry_s: float = 1.0):
        self.pool = pool
        self.ttl_s = ttl_s
        self.outage_grace_s = outage_grace_s
        self.retry_s = retry_s
        self._cache: dict[str, _Entry] = {}
        self._used: set[int] = set()
        self._inflight: dict[str, asyncio.Future[tuple[bytes | None, Caller | None]]] = {}
        self._down_since: float | None = None
        self._recovery: asyncio.Task[None] | None = None
        self.following = asyncio.Event()  # set while follow() listens for revocations

    @property
    def database_down(self) -> bool:
        """Whether key checks are being answered from the cache because the database is unreachable."""
        return self._down_since is not None

    async def authenticate(self, raw: str | None, digest: bytes | None = None) -> Caller | None:
        """The caller owning `raw`, or None for a missing, unknown or revoked key. While the database is
        unreachable a key not verified recently raises psycopg.OperationalError (the API answers 503).
        `digest`: hash_key(raw), when the caller has it already."""
        if not raw or not raw.startswith(KEY_PREFIX) or len(raw) > 200:
            return None
        prefix, now = raw[:PREFIX_LEN], time.monotonic()
        entry = self._cache.get(prefix)
        if entry is None or now - entry.checked_at > self.ttl_s:
            entry = await self._current(prefix, entry)
        # Compare even when the prefix is unknown so timing does not tell which part failed.
        ok = hmac.compare_digest(entry.key_hash or _DUMMY_HASH, hash_key(raw) if digest is None else digest)
        if not ok or entry.caller is None:
            return None
        self._used.add(entry.caller.key_id)
        return entry.caller

    async def _current(self, prefix: str, stale: _Entry | None) -> _Entry:
        """A fresh answer from the database, or while it is unreachable the stale one if it verified a
        key within the grace period."""
        if self._down_since is None:
            try:
                return await self._refresh(prefix)
            except _UNAVAILABLE as e:
                self._went_down(e)
        self._start_recovery()
        if stale is not None and stale.caller is not None and \
                time.monotonic() - stale.checked_at <= self.outage_grace_s:
            return stale
        raise psycopg.OperationalError("database unavailable; this key cannot be verified until it is back")

    async def _refresh(self, prefix: str) -> _Entry:
        """One lookup per prefix at a time: concurrent requests with the same key share it."""
        pending = self._inflight.get(prefix)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(prefix))
            self._inflight[prefix] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(prefix, None))
        stored, caller = await asyncio.shield(pending)
        return self._remember(prefix, stored, caller)

    def _remember(self, prefix: str, stored: bytes | None, caller: Caller | None) -> _Entry:
        if len(self._cache) >= _CACHE_MAX:
            self._evict()
        entry = _Entry(time.monotonic(), stored, caller)
        self._cache[prefix] = entry
        return entry

    def _evict(self) -> None:
        """Make room without losing the verified keys an outage would need: unknown prefixes go first."""
        now = time.monotonic()
        self._cache = {p: e for p, e in self._cache.items()
                       if e.caller is not None and now - e.checked_at <= self.outage_grace_s}
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()

    def forget(self, prefix: str | None = None) -> None:
        """Drop cached answers (after a revoke or delete in this process)."""
        if prefix is None:
            self._cache.clear()
        else:
            self._cache.pop(prefix, None)

    async def _lookup(self, prefix: str) -> tuple[bytes | None, Caller | None]:
        async with self.pool.connection(timeout=DB_TIMEOUT_S) as conn:
            found = await _lookup_many(conn, [prefix])
        return found.get(prefix, (None, None))

    def _went_down(self, error: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning("push keys answered from cache, database unavailable keys=%d error=%r",
                           sum(1 for e in self._cache.values() if e.caller is not None), error_summary(error))

    def _start_recovery(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name="push-key-recovery")

    async def _recover(self) -> None:
        """Until the pool answers again, every retry_s: re-check every cached prefix, through the pool if
        it answers (the outage is over), else on a connection of our own (the pool may still be backing
        off), so revocations made once the database is back apply at once either way."""
        while self._down_since is not None:
            prefixes = list(self._cache)
            found, pool_ok = await self._recheck(prefixes)
            if found is not None:
                for prefix in prefixes:
                    self._remember(prefix, *found.get(prefix, (None, None)))
            if pool_ok:
                logger.info("push keys checked in the database again keys=%d outage_s=%.1f",
                            len(prefixes), time.monotonic() - self._down_since)
                self._down_since = None
                return
            await asyncio.sleep(self.retry_s)

    async def _recheck(self, prefixes: list[str]) -> tuple[dict[str, tuple[bytes, Caller]] | None, bool]:
        """(what the database says about `prefixes` or None if unreachable, whether the pool answered)."""
        try:
            async with self.pool.connection(timeout=min(self.retry_s, DB_TIMEOUT_S)) as conn:
                return await _lookup_many(conn, prefixes), True
        except _UNAVAILABLE:
            pass
        conninfo = self.pool.conninfo
        if not isinstance(conninfo, str):
            return None, False
        try:
            conn = await connect(conninfo, timeout_s=2.0)
        except DatabaseUnavailable:
            return None, False
        try:
            return await _lookup_many(conn, prefixes), False
        except psycopg.Error:
            return None, False
        finally:
            await conn.close()

    async def follow(self, url: str, *, retry_s: float = 2.0) -> None:
        """Drop cached answers as revocations are NOTIFYed on KEYS_CHANNEL (until cancelled; on a connection
        of its own, reconnecting after `retry_s`; the whole cache is dropped on each reconnect, since a
        notification may have been missed meanwhile)."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(KEYS_CHANNEL)))
                    self.forget()
                    self.following.set()
                    async for note in conn.notifies():
                        self.forget(note.payload or None)
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                logger.debug("key revocations not followed, retrying error=%r", error_summary(e))
            self.following.clear()
            await asyncio.sleep(retry_s)

    async def close(self) -> None:
        """Stop the outage retries, if any."""
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
            self._recovery = None

    async def flush_usage(self) -> int:
        """Write last_used_at for keys used since the previous flush; return how many. On a database
        error the keys stay pending for the next flush."""
        used, self._used = self._used, set()
        if not used:
            return 0
        try:
            async with self.pool.connection(timeout=DB_TIMEOUT_S) as conn:
                await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = ANY(%s)", (sorted(used),))
        except (psycopg.Error, PoolTimeout):
            self._used |= used
            raise
        return len(used)


async def _lookup_many(conn: AsyncConnection, prefixes: list[str]) -> dict[str, tuple[bytes, Caller]]:
    """The active key (hash and owner) of each prefix that has one."""
    if not prefixes:
        return {}
    cur = await conn.execute(
        "SELECT k.prefix, k.id, k.key_hash, s.id, s.name, s.privacy_level FROM api_keys k"
        " JOIN services s ON s.id = k.service_id WHERE k.prefix = ANY(%s) AND k.revoked_at IS NULL", (prefixes,))
    return {row[0]: (bytes(row[2]), Caller(row[1], row[0], row[3], row[4], row[5])) for row in await cur.fetchall()}
