"""What every push handler shares: the Context of the app, JSON replies, the writer, credentials.

The one module of request helpers: handlers, the route table and the app all import it, and it
imports none of them, so the push package has no import circle.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any, Protocol

from aiohttp import web

from push.bodies import Refusal
from push.idempotency import IdempotencyKeys
from push.keys import KeyStore, hash_key
from push.masking import Masking
from push.ratelimit import RateLimiter
from upwatch.rows import Batch, Reservation
from upwatch.runtime import Runtime

UNAUTHORIZED = Refusal(401, "missing or invalid credentials", headers={"WWW-Authenticate": "Bearer"})
QUEUE_FULL = Refusal(503, "write queue is full; retry later", headers={"Retry-After": "1"})


class Writer(Protocol):
    """The prober's batched writer: all-or-nothing, never blocks; False when its queue is full.
    Push rows are offered as `external`: they may fill only `external_limit` rows of the queue."""

    external_limit: int

    def offer_batch(self, batch: Batch, *, external: bool = False, room: Reservation | None = None) -> bool: ...

    def reserve(self, count: int) -> Reservation | None:
        """Hold room for `count` external rows (None: no room, counted as a request refused unread)."""

    async def flush(self) -> None:
        """Return once everything offered so far is committed or spooled to disk."""


# How long a durable acknowledgement waits for others to share its commit. Each commit costs the
# writer a transaction (~5 round trips) and PostgreSQL a WAL flush whatever its size: single records
# at concurrency 32 were committed ~3 per transaction, which cost more than validating them.
GROUP_WINDOW_S = 0.002


class Commits:
    """Durable acknowledgements in groups: requests that offer rows within `window_s` of the first wait
    for one writer flush, so one commit covers them all; each is still answered only once its own rows
    are committed (or spooled), because the flush starts after every one of them offered its rows."""

    def __init__(self, writer: Writer, window_s: float | None = None):
        self.writer = writer
        self.window_s = GROUP_WINDOW_S if window_s is None else window_s
        self._next: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()  # strong references to the groups being flushed

    async def durable(self) -> None:
        """Return once everything this task offered before the call is committed or spooled."""
        if self.window_s <= 0:  # the writer's own queue groups them: rows offered during a commit share the next
            await self.writer.flush()
            return
        task = self._next
        if task is None:
            task = self._next = asyncio.create_task(self._flush(), name="push-commit-group")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        await asyncio.shield(task)  # one request cancelled does not cancel the others' commit

    async def _flush(self) -> None:
        await asyncio.sleep(self.window_s)
        self._next = None  # who offers from now on joins the next group: this flush may not cover it
        await self.writer.flush()


@dataclass
class Context:
    """What the push handlers share."""

    runtime: Runtime
    writer: Writer
    keys: KeyStore
    limiter: RateLimiter
    admin_token: str | None
    sensitive: Masking
    idempotency: IdempotencyKeys
    started: dict[str, datetime] = field(default_factory=dict)  # push endpoint -> last /start
    endpoint_ids: dict[str, int] = field(default_factory=dict)  # push endpoint name -> endpoints.id
    background_every_s: float = 5.0
    rollup_every_s: float = 30.0
    commits: Commits = field(init=False)
    admin_digest: bytes | None = field(init=False)  # the admin token as is_admin compares it, hashed once

    def __post_init__(self) -> None:
        self.commits = Commits(self.writer)
        self.admin_digest = hash_key(self.admin_token) if self.admin_token else None


CONTEXT = web.AppKey("push_context", Context)


def ctx(request: web.Request) -> Context:
    """The push context of the application serving `request`."""
    try:
        return request.app[CONTEXT]  # the push app's own handler: no ChainMapProxy of the apps per request
    except KeyError:
        return request.config_dict[CONTEXT]


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, IPv4Address | IPv6Address | IPv4Interface | IPv6Interface):
        return str(value.ip if isinstance(value, IPv4Interface | IPv6Interface) else value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | memoryview):
        return None
    raise TypeError(f"cannot encode {type(value).__name__}")


dumps = partial(json.dumps, default=_default, separators=(",", ":"))


def reply(body: Any, status: int = 200) -> web.Response:
    """A JSON response (datetimes as ISO 8601, addresses as strings)."""
    return web.json_response(body, status=status, dumps=dumps)


async def store(context: Context, batch: Batch, room: Reservation | None = None,
                queued: Callable[[], None] | None = None) -> bool:
    """Offer a batch to the writer as external rows (with the room the caller reserved, see
    Writer.reserve; `queued` is called once they are offered); with push.durable_ack wait until they
    are durable. False: the push share of the queue is full."""
    writer = context.writer
    if not writer.offer_batch(batch, external=True, room=room):
        return False
    if queued is not None:
        queued()
    if context.runtime.config.push.durable_ack:
        await context.commits.durable()
    return True


def presented_key(request: web.Request) -> str | None:
    """The credential sent as `Authorization: Bearer ...` or `X-API-Key`."""
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key") or None


def same_secret(given: str | None, expected: str) -> bool:
    """Whether `given` is `expected`, in constant time (both hashed first, so lengths leak nothing)."""
    digest = hashlib.sha256((given or "").encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(digest, hashlib.sha256(expected.encode()).digest())


def is_admin(context: Context, raw: str | None, digest: bytes | None = None) -> bool:
    """Whether `raw` is the admin token (constant-time; never true when no token is configured).
    `digest`: hash_key(raw), when the caller has it already (a key check hashes the same string)."""
    expected = context.admin_digest
    if expected is None or not raw:
        return False
    return hmac.compare_digest(hash_key(raw) if digest is None else digest, expected)
