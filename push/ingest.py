"""POST /logs: validate a batch of request logs as a whole and hand it to the writer."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from aiohttp import web

from push import decoding, idempotency, records
from push.bodies import JSON_TYPES, Refusal, Unread
from push.context import QUEUE_FULL, Context, store
from push.keys import Caller
from push.operations import REF, Body, Call
from push.ratelimit import RateLimiter
from push.records import LogRecord
from upwatch.rows import Reservation

logger = logging.getLogger(__name__)


@dataclass
class _Throttle:
    every_s: float
    last: float = float("-inf")

    def due(self) -> bool:
        """True at most once per every_s."""
        now = time.monotonic()
        if now - self.last < self.every_s:
            return False
        self.last = now
        return True


_refusal_log = _Throttle(10.0)  # under overload thousands of requests a second are refused


def _log_refusal(service: str) -> None:
    if _refusal_log.due():
        logger.warning("push requests refused unread, writer queue full service=%s", service)


async def _unread(request: web.Request, context: Context) -> Unread:
    push = context.runtime.config.push
    return Unread(request, push.max_body_bytes, push.max_batch_records)


_RECORD = {"$ref": REF.format(model="LogRecord")}
# The body of POST /logs, read by post_logs itself once the request may be stored.
LOGS: Body[Unread] = Body(_unread, {"required": True, "content": {
    "application/json": {"schema": {"oneOf": [_RECORD, {"type": "array", "items": _RECORD, "minItems": 1}]}},
    "application/x-ndjson": {"schema": {"type": "string", "description": "one LogRecord per line"}}}},
    (LogRecord,))

IngestCall = Call[Caller, Unread, None]


async def post_logs(call: IngestCall) -> web.Response:
    """Accept 1..max_batch_records records (202) or refuse the whole batch. With an Idempotency-Key,
    a repeat of an accepted batch gets the first 202 again and stores nothing."""
    context, caller, request = call.context, call.caller, call.request
    wait_s = context.limiter.acquire(caller.key_id)
    if wait_s:
        return Refusal(429, "rate limit exceeded for this key",
                       headers={"Retry-After": RateLimiter.retry_after(wait_s)}).response()
    key = idempotency.parse(request.headers.get(idempotency.HEADER))
    if isinstance(key, Refusal):
        return key.response()
    # Refuse before reading: under overload, parsing and validating bodies only to refuse them took
    # the CPU the writer needed. Room for a largest allowed batch is held while this one is read, so
    # what is read fits.
    writer = context.writer
    room = writer.reserve(min(context.runtime.config.push.max_batch_records, writer.external_limit))
    if room is None:
        _log_refusal(caller.service)
        return QUEUE_FULL.response()
    try:
        if key is None:
            return await _ingest(call, None, room)
        raw = await call.body.raw()
        if isinstance(raw, Refusal):
            return raw.response()
        hashed, body = idempotency.key_hash(key), idempotency.body_hash(raw)
        try:
            return await _claimed(call, room, raw, hashed, body)
        except idempotency.Busy:
            return idempotency.BUSY.response()
    finally:
        room.release()  # if the batch was not offered with it


async def _claimed(call: IngestCall, room: Reservation, raw: bytes, hashed: str, body: str) -> web.Response:
    context, caller = call.context, call.caller
    async with context.idempotency.claim(caller.service_id, hashed, body) as claim:
        if claim.seen is not None:
            if claim.seen.body_hash != body:
                return idempotency.reused().response()
            logger.info("push batch repeated, not stored again service=%s records=%d", caller.service,
                        claim.seen.accepted)
            response = accepted(claim.seen.accepted)
            response.headers["Idempotent-Replayed"] = "true"
            return response
        response = await _ingest(call, claim, room, raw)
        if context.idempotency.shared_url and response.status == 202 and not context.runtime.config.push.durable_ack:
            await context.writer.flush()  # the key is held across processes until its batch is in the table
        return response


async def _ingest(call: IngestCall, claim: idempotency.Claim | None, room: Reservation,
                  raw: bytes | None = None) -> web.Response:
    """Read, validate and store a batch (with the room held for it, and its idempotency key if any)."""
    context, caller = call.context, call.caller
    push = context.runtime.config.push
    now = datetime.now(UTC)
    valid = await _validated(call, raw, now - context.runtime.config.storage.retention.request_logs)
    if isinstance(valid, Refusal):
        return valid.response()
    batch = records.batch(valid, service_id=caller.service_id, privacy_level=caller.privacy_level,
                          sensitive=context.sensitive, max_body_bytes=push.max_stored_body_bytes, now=now)
    queued = None
    if claim is not None:  # the key is stored with the records, in the same transaction
        batch.companions = (claim.companion(len(valid)),)
        queued = partial(claim.accept, len(valid))
    if not await store(context, batch, room, queued):
        logger.warning("push batch refused, writer queue full service=%s records=%d", caller.service, len(valid))
        return QUEUE_FULL.response()
    return accepted(len(valid))


def accepted(count: int) -> web.Response:
    """202 `{"accepted": count}`. Formatted here rather than by json.dumps: for a single record that
    was ~10 us of the request's ~230 us of server CPU (docs/push.md, "Benchmark")."""
    return web.Response(body=b'{"accepted":%d}' % count, status=202, content_type="application/json",
                        charset="utf-8")


async def _validated(call: IngestCall, raw: bytes | None, oldest: datetime) -> Sequence[records.Record] | Refusal:
    """The valid records of the body, or why it is refused. A JSON body is first decoded and checked in
    one msgspec call (push.decoding); only what that cannot decide is parsed and checked record by record."""
    body, caller = call.body, call.caller
    if body.request.content_type.lower() in JSON_TYPES:
        if raw is None:
            read = await body.raw()
            if isinstance(read, Refusal):
                return read
            raw = read
        fast = decoding.decode(raw, privacy_level=caller.privacy_level, oldest=oldest, max_records=body.max_records)
        if fast is not None:
            return fast
    parsed = await body.records(raw)
    if isinstance(parsed, Refusal):
        return parsed
    data = parsed.records
    valid, problems = records.validate(data, privacy_level=caller.privacy_level, oldest=oldest,
                                       suspect=parsed.suspect)
    if problems:
        bad = len({p["index"] for p in problems})
        logger.info("push batch refused service=%s records=%d invalid=%d", caller.service, len(data), bad)
        return Refusal(422, f"{bad} of {len(data)} records are invalid; nothing was stored", problems)
    return valid
