"""External check results for `kind: push` endpoints, healthchecks.io style.

POST or GET /checks/{name} reports success, /checks/{name}/fail a failure and
/checks/{name}/start the start of a run (the next result then gets its
duration as latency). Results land in probe_results with source 'push'.
If the endpoint's config has `auth: {bearer: ...}`, that token is required.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, ValidationError, field_validator

from prober.checks import push as push_kind
from push import records
from push.bodies import Refusal, body_problems, parse_json, read_limited
from push.context import QUEUE_FULL, UNAUTHORIZED, Context, presented_key, reply, same_secret, store
from push.keys import DB_TIMEOUT_S
from push.operations import Auth, Body, Call, json_document
from push.records import checked_timestamp, clean
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult

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


@dataclass(frozen=True)
class Target:
    """The push endpoint a request reports for: configured, enabled, its token presented, registered."""

    name: str
    endpoint_id: int


def _authorized(endpoint: Endpoint, raw: str | None) -> bool:
    auth = endpoint.options.auth if isinstance(endpoint.options, push_kind.Options) else None
    token = auth.bearer if auth else None
    return not token or same_secret(raw, token)


# (endpoints list, name -> endpoint): Config.endpoint scans the list, which with tens of thousands of
# endpoints costs milliseconds per check-in. Keyed by the list itself, which a reload replaces.
@dataclass
class _Index:
    endpoints: list[Endpoint] = field(default_factory=list)
    by_name: dict[str, Endpoint] = field(default_factory=dict)


_index = _Index()


def _configured(endpoints: list[Endpoint], name: str) -> Endpoint | None:
    if _index.endpoints is not endpoints:
        by_name: dict[str, Endpoint] = {}
        for e in endpoints:
            by_name.setdefault(e.name, e)
        _index.endpoints, _index.by_name = endpoints, by_name
    return _index.by_name.get(name)


async def _target(request: web.Request, context: Context) -> Target | Refusal:
    """The endpoint named in the path (404), its bearer token if it has one (401), and its id (503
    until the prober has registered it): the `auth` of every /checks operation."""
    name = request.match_info["name"]
    # Read per request: a reload replaces runtime.config.endpoints.
    endpoint = _configured(context.runtime.config.endpoints, name)
    if endpoint is None or endpoint.kind != "push" or not endpoint.enabled:
        return Refusal(404, f"no push endpoint named {name!r}")
    if not _authorized(endpoint, presented_key(request) or request.query.get("token")):
        return UNAUTHORIZED
    ids = context.endpoint_ids  # ids never change for a name (endpoints are upserted by name)
    if name not in ids:
        async with context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
            cur = await conn.execute("SELECT id FROM endpoints WHERE name = %s AND kind = 'push'", (name,))
            row = await cur.fetchone()
        if row is None:
            return Refusal(503, f"endpoint {name!r} is not registered yet; retry shortly",
                           headers={"Retry-After": "5"})
        ids[name] = int(row[0])
    return Target(name, ids[name])


# Documented as "none": most push endpoints have no token, and those that do take it as a bearer token
# or ?token= (for cron lines that can only GET a URL).
ENDPOINT: Auth[Target] = Auth("none", _target)


async def _report(request: web.Request, context: Context) -> CheckIn | Refusal:
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
        return body_problems(e, "invalid check result", index=0)


# POST takes an optional result (JSON, or text/plain as the error); GET reads no body.
POST_BODY: Body[CheckIn] = Body(_report, json_document(CheckIn), (CheckIn,))
GET_BODY: Body[CheckIn] = Body(_report)
CheckCall = Call[Target, CheckIn, None]


def handler(action: str) -> Callable[[CheckCall], Awaitable[web.Response]]:
    """The handler of /checks/{name} ("") or its /fail and /start variants."""

    async def handle(call: CheckCall) -> web.Response:
        return await report(call, action)

    return handle


async def report(call: CheckCall, action: str) -> web.Response:
    """Record one external check result (202), or the start of a run."""
    body, context, name = call.body, call.context, call.caller.name
    now = datetime.now(UTC)
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
    result = _result(context, body, ok=ok, latency_ms=latency_ms, now=now)
    prober = context.runtime.config.prober
    if not await store(context, records.probe_batch(result, call.caller.endpoint_id, location=prober.location,
                                                    prober=prober.instance)):
        return QUEUE_FULL.response()
    logger.debug("push check endpoint=%s ok=%s", name, ok)
    return reply({"endpoint": name, "ok": ok, "accepted": 1}, status=202)


def _result(context: Context, body: CheckIn, *, ok: bool, latency_ms: float | None, now: datetime) -> ProbeResult:
    error = body.error if body.error else (None if ok else "failure reported by the pushing service")
    # A job's own error may quote a URL with its token: masked like everything else stored.
    return ProbeResult(time=body.timestamp or now, ok=ok, latency_ms=latency_ms, source="push",
                       error_kind=None if ok else "reported", error=context.sensitive.text(clean(error)))
