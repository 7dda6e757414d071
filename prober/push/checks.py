"""External check results for `kind: push` endpoints, healthchecks.io style.

POST or GET /checks/{name} reports success, /checks/{name}/fail a failure and
/checks/{name}/start the start of a run (the next result then gets its
duration as latency). Results land in probe_results with source 'push'.
If the endpoint's config has `auth: {bearer: ...}`, that token is required.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, ValidationError, field_validator

from prober.checks import push
from prober.push.app import UNAUTHORIZED, ctx, presented_key, reply, store
from prober.push.bodies import Refusal, parse_json, read_limited
from prober.push.keys import DB_TIMEOUT_S
from prober.push.records import checked_timestamp, clean
from upwatch.config.endpoints import Endpoint

logger = logging.getLogger(__name__)


class CheckIn(BaseModel):
    """A reported check result; everything optional (an empty POST means success)."""

    model_config = ConfigDict(extra="forbid")

    ok: StrictBool | None = None
    latency_ms: Annotated[StrictFloat, Field(ge=0, le=86_400_000)] | None = None
    error: Annotated[str, Field(max_length=4096)] | None = None
    timestamp: datetime | None = None

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return checked_timestamp(value)


def _authorized(endpoint: Endpoint, raw: str | None) -> bool:
    auth = endpoint.options.auth if isinstance(endpoint.options, push.Options) else None
    token = auth.bearer if auth else None
    if not token:
        return True
    given = hashlib.sha256((raw or "").encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(given, hashlib.sha256(token.encode()).digest())


# (endpoints list, name -> endpoint): Config.endpoint scans the list, which with tens of thousands of
# endpoints costs milliseconds per check-in. Keyed by the list itself, which a reload replaces.
_index: tuple[list[Endpoint], dict[str, Endpoint]] = ([], {})


def _configured(endpoints: list[Endpoint], name: str) -> Endpoint | None:
    global _index
    if _index[0] is not endpoints:
        by_name: dict[str, Endpoint] = {}
        for e in endpoints:
            by_name.setdefault(e.name, e)
        _index = (endpoints, by_name)
    return _index[1].get(name)


async def _endpoint_id(request: web.Request, name: str) -> int | Refusal:
    # Read per request: a reload replaces runtime.config.endpoints.
    endpoint = _configured(ctx(request).runtime.config.endpoints, name)
    if endpoint is None or endpoint.kind != "push" or not endpoint.enabled:
        return Refusal(404, f"no push endpoint named {name!r}")
    if not _authorized(endpoint, presented_key(request) or request.query.get("token")):
        return UNAUTHORIZED
    ids = ctx(request).endpoint_ids  # ids never change for a name (endpoints are upserted by name)
    if name not in ids:
        async with ctx(request).runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
            cur = await conn.execute("SELECT id FROM endpoints WHERE name = %s AND kind = 'push'", (name,))
            row = await cur.fetchone()
        if row is None:
            return Refusal(503, f"endpoint {name!r} is not registered yet; retry shortly",
                           headers={"Retry-After": "5"})
        ids[name] = int(row[0])
    return ids[name]


async def _report(request: web.Request) -> CheckIn | Refusal:
    if request.method == "GET":
        return CheckIn()
    raw = await read_limited(request, 64 * 1024)
    if isinstance(raw, Refusal):
        return raw
    if not raw.strip():
        return CheckIn()
    if request.content_type == "text/plain":
        return CheckIn(error=clean(raw[:4096].decode("utf-8", "replace")))
    if request.content_type != "application/json":
        return Refusal(415, "Content-Type must be application/json or text/plain")
    data = parse_json(raw)
    if isinstance(data, Refusal):
        return data
    try:
        return CheckIn.model_validate(data)
    except ValidationError as e:
        details = [{"index": 0, "field": ".".join(str(p) for p in err["loc"]) or "(body)", "reason": err["msg"]}
                   for err in e.errors(include_url=False)]
        return Refusal(422, "invalid check result", details)


def handler(action: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of /checks/{name} ("") or its /fail and /start variants."""

    async def handle(request: web.Request) -> web.Response:
        return await report(request, action)

    return handle


async def report(request: web.Request, action: str) -> web.Response:
    """Record one external check result (202), or the start of a run."""
    name = request.match_info["name"]
    endpoint_id = await _endpoint_id(request, name)
    if isinstance(endpoint_id, Refusal):
        return endpoint_id.response()
    body = await _report(request)
    if isinstance(body, Refusal):
        return body.response()
    context, now = ctx(request), datetime.now(UTC)
    if body.timestamp is not None and body.timestamp < now - context.runtime.config.storage.retention.probe_results:
        return Refusal(422, "invalid check result", [{"index": 0, "field": "timestamp",
                                                      "reason": "timestamp is older than the retention period"}]
                       ).response()
    if action == "start":
        context.started[name] = now
        return reply({"endpoint": name, "started_at": now}, status=202)
    ok = (action != "fail") if body.ok is None else body.ok and action != "fail"
    latency_ms = body.latency_ms
    started = context.started.pop(name, None)
    if latency_ms is None and started is not None:
        latency_ms = (now - started).total_seconds() * 1000
    row = _row(context.runtime.config, endpoint_id, body, ok=ok, latency_ms=latency_ms, now=now)
    row["error"] = context.sensitive.text(row["error"])  # a job's own error may quote a URL with its token
    if not await store(context, ("probe_results", [row])):
        return Refusal(503, "write queue is full; retry later", headers={"Retry-After": "1"}).response()
    logger.debug("push check endpoint=%s ok=%s", name, ok)
    return reply({"endpoint": name, "ok": ok, "accepted": 1}, status=202)


def _row(config: Any, endpoint_id: int, body: CheckIn, *, ok: bool, latency_ms: float | None,
         now: datetime) -> dict[str, Any]:
    error = body.error if body.error else (None if ok else "failure reported by the pushing service")
    return {
        "time": body.timestamp or now, "endpoint_id": endpoint_id, "id": uuid.uuid4(),
        "location": config.prober.location, "prober": config.prober.instance, "source": "push",
        "ok": ok, "latency_ms": latency_ms, "error_kind": None if ok else "reported", "error": clean(error),
    }
