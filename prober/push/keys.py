"""Push clients: services and their API keys.

A raw key (`uwk_` + 43 url-safe characters) is shown once and never stored:
the database keeps its SHA-256 and a 12-character prefix to find it by.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, errors, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from prober.push import origins

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
            "INSERT INTO services (name, description, base_url, privacy_level, retention_days, allowed_hosts,"
            " replay_methods) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING " + _SERVICE_COLUMNS,
            (name, description, base_url, privacy_level, retention_days, allowed_hosts or [], methods),
        )
    except errors.UniqueViolation:
        raise PushError(f"service {name!r} already exists") from None
    row = await cur.fetchone()
    assert row is not None
    logger.info("service created name=%s id=%d", name, row["id"])
    return row


_SERVICE_COLUMNS = ("id, name, description, base_url, allowed_hosts, replay_methods, privacy_level, retention_days,"
                    " created_at")
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
    await cur.execute(
        "SELECT " + ", ".join(f"s.{c.strip()}" for c in _SERVICE_COLUMNS.split(",")) +
        ", (SELECT count(*) FROM api_keys k WHERE k.service_id = s.id AND k.revoked_at IS NULL) AS active_keys"
        " FROM services s ORDER BY s.name"
    )
    return await cur.fetchall()


async def get_service(conn: AsyncConnection, name: str) -> dict[str, Any] | None:
    """One service by name."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT " + _SERVICE_COLUMNS + " FROM services WHERE name = %s", (name,))
    return await cur.fetchone()


async def delete_service(conn: AsyncConnection, name: str, *, purge: bool) -> dict[str, int]:
    """Remove a service and its keys; with purge also its logs and rollups. PushError if logs remain."""
    async with conn.transaction():
        cur = await conn.execute("SELECT id FROM services WHERE name = %s FOR UPDATE", (name,))
        row = await cur.fetchone()
        if row is None:
            raise PushError(f"no service named {name!r}")
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
    row = await cur.fetchone()
    assert row is not None
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
    logger.info("key revoked prefix=%s", prefix)
    return row[0]


class KeyStore:
    """Checks raw keys against the database, caching answers for `ttl_s` and
    batching last_used_at updates, so ingest does not cost a query per request.

    A key revoked through this store stops working at once; one revoked by
    another process (the CLI) within `ttl_s`.
    """

    def __init__(self, pool: AsyncConnectionPool, *, ttl_s: float = 5.0):
        self.pool = pool
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, bytes | None, Caller | None]] = {}
        self._used: set[int] = set()
        self._inflight: dict[str, asyncio.Future[tuple[bytes | None, Caller | None]]] = {}

    async def authenticate(self, raw: str | None) -> Caller | None:
        """The caller owning `raw`, or None for a missing, unknown or revoked key."""
        if not raw or not raw.startswith(KEY_PREFIX) or len(raw) > 200:
            return None
        prefix, now = raw[:PREFIX_LEN], time.monotonic()
        cached = self._cache.get(prefix)
        if cached is None or now - cached[0] > self.ttl_s:
            cached = await self._refresh(prefix)
        _, stored, caller = cached
        # Compare even when the prefix is unknown so timing does not tell which part failed.
        ok = hmac.compare_digest(stored or _DUMMY_HASH, hash_key(raw))
        if not ok or caller is None:
            return None
        self._used.add(caller.key_id)
        return caller

    async def _refresh(self, prefix: str) -> tuple[float, bytes | None, Caller | None]:
        """One lookup per prefix at a time: concurrent requests with the same key share it."""
        pending = self._inflight.get(prefix)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(prefix))
            self._inflight[prefix] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(prefix, None))
        stored, caller = await asyncio.shield(pending)
        entry = (time.monotonic(), stored, caller)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[prefix] = entry
        return entry

    def forget(self, prefix: str | None = None) -> None:
        """Drop cached answers (after a revoke or delete in this process)."""
        if prefix is None:
            self._cache.clear()
        else:
            self._cache.pop(prefix, None)

    async def _lookup(self, prefix: str) -> tuple[bytes | None, Caller | None]:
        async with self.pool.connection(timeout=DB_TIMEOUT_S) as conn:
            cur = await conn.execute(
                "SELECT k.id, k.key_hash, s.id, s.name, s.privacy_level FROM api_keys k"
                " JOIN services s ON s.id = k.service_id WHERE k.prefix = %s AND k.revoked_at IS NULL", (prefix,))
            row = await cur.fetchone()
        if row is None:
            return None, None
        return bytes(row[1]), Caller(row[0], prefix, row[2], row[3], row[4])

    async def flush_usage(self) -> int:
        """Write last_used_at for keys used since the previous flush; return how many."""
        used, self._used = self._used, set()
        if not used:
            return 0
        async with self.pool.connection(timeout=DB_TIMEOUT_S) as conn:
            await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = ANY(%s)", (sorted(used),))
        return len(used)
