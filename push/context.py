"""What every push handler shares: the Context of the app, JSON replies, the writer, credentials.

The one module of request helpers: handlers, the route table and the app all import it, and it
imports none of them, so the push package has no import circle.
"""

from __future__ import annotations

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

from prober.spool import Batch
from prober.writer import Reservation
from push.bodies import Refusal
from push.idempotency import IdempotencyKeys
from push.keys import KeyStore
from push.masking import Masking
from push.ratelimit import RateLimiter
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


CONTEXT = web.AppKey("push_context", Context)


def ctx(request: web.Request) -> Context:
    """The push context of the application serving `request`."""
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
        await writer.flush()
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


def is_admin(context: Context, raw: str | None) -> bool:
    """Whether `raw` is the admin token (constant-time; never true when no token is configured)."""
    return bool(context.admin_token and raw) and same_secret(raw, context.admin_token or "")
