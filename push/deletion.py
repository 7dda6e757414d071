"""DELETE /logs: a key holder deletes their own service's logs (a range, or all), and what was built from them.

One transaction, holding the rollup watermark row (rollup._step locks it too), so the incremental
rollup neither counts a row deleted here nor misses a subtraction, and refresh_hourly_rollups' lock:

- request_logs rows of the service with from <= time < to, and the replays of those rows;
- request_rollup_1m: the service's minutes wholly inside the range are dropped (also those whose raw
  logs retention already removed); the at most two minutes the range cuts are recomputed from the
  logs left;
- request_client_ips_1h and request_status_1h: whole hours dropped likewise; in the hours the range
  cuts, the deleted rows the incremental rollup had counted (id <= watermark) are subtracted;
- request_rollup_1h (refresh_hourly_rollups builds it from the minutes): whole hours dropped; when
  the range cuts an hour, rollup_progress moves back to it, so request_rollup() reads minutes from
  there until the next refresh rebuilds those hours;
- an audit_events row and a `logs deleted` log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aiohttp import web
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, field_validator

from push import rollup
from push.bodies import DATE_TIME_TEXT, Refusal
from push.context import reply
from push.keys import DB_TIMEOUT_S, Caller
from push.operations import Call
from push.query import as_utc

logger = logging.getLogger(__name__)

ADMIN_REFUSED = Refusal(403, "only a service key deletes its own logs; the admin token purges a whole service"
                             " with DELETE /services/{name}?purge=true")


class DeleteQuery(BaseModel):
    """What DELETE /logs removes: [from, to) (either end may be open), or everything with all=true."""

    model_config = ConfigDict(extra="forbid")

    from_: Annotated[datetime, DATE_TIME_TEXT] | None = Field(default=None, alias="from")
    to: Annotated[datetime, DATE_TIME_TEXT] | None = None
    all: bool = False

    @field_validator("all", mode="before")
    @classmethod
    def _true_or_false(cls, value: Any) -> Any:
        # Only what the document's boolean allows: "yes" or "1" deleting everything would be a surprise.
        if isinstance(value, str) and value not in ("true", "false"):
            raise ValueError("must be true or false")
        return value

    @field_validator("from_", "to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return as_utc(value)


def refusal(q: DeleteQuery) -> Refusal | None:
    """What JSON Schema cannot say: a range or all=true (never both, never neither), from before to."""
    def bad(name: str, reason: str) -> Refusal:
        return Refusal(422, "invalid query parameters", [{"field": name, "reason": reason}])

    if q.all and (q.from_ or q.to):
        return bad("all", "all=true deletes everything; leave out from and to")
    if not q.all and q.from_ is None and q.to is None:
        return bad("from", "give from and/or to, or all=true to delete every log of this service")
    if q.from_ and q.to and q.from_ >= q.to:
        return bad("to", "must be after from")
    return None


@dataclass(frozen=True)
class Span:
    """[since, until) with open ends as None, and its whole and cut units of a given size."""

    since: datetime | None
    until: datetime | None

    def whole(self, unit: timedelta) -> dict[str, datetime | None]:
        """The buckets of `unit` wholly inside, as {"whole_since", "whole_until"} (None: unbounded)."""
        return {"whole_since": self.since and _ceil(self.since, unit),
                "whole_until": self.until and _floor(self.until, unit)}

    def cut(self, unit: timedelta) -> list[datetime]:
        """The buckets of `unit` only partly inside: those of the ends not on a boundary."""
        return sorted({_floor(t, unit) for t in (self.since, self.until) if t is not None and _floor(t, unit) != t})


def _floor(t: datetime, unit: timedelta) -> datetime:
    t = t.astimezone(UTC)
    return rollup.hour_floor(t) if unit == timedelta(hours=1) else t.replace(second=0, microsecond=0)


def _ceil(t: datetime, unit: timedelta) -> datetime:
    floor = _floor(t, unit)
    return floor if floor == t else floor + unit


# SQL is composed with psycopg.sql from these constant fragments; every value is a %(name)s parameter.
def _in_range(column: str) -> sql.Composed:
    """`column` inside [since, until), either end open when its parameter is NULL."""
    return sql.SQL("(%(since)s::timestamptz IS NULL OR {t} >= %(since)s)"
                   " AND (%(until)s::timestamptz IS NULL OR {t} < %(until)s)").format(
        t=sql.SQL(".").join(sql.Identifier(part) for part in column.split(".")))


_WHOLE = sql.SQL("service_id = %(service)s AND (%(whole_since)s::timestamptz IS NULL OR bucket >= %(whole_since)s)"
                 " AND (%(whole_until)s::timestamptz IS NULL OR bucket < %(whole_until)s)")
_DELETE_REPLAYS = sql.SQL("""
DELETE FROM request_replays r USING request_logs l
WHERE r.service_id = %(service)s AND l.service_id = %(service)s AND l.id = r.log_id AND {in_range}
""").format(in_range=_in_range("l.time"))
# The deleted rows in hours the range cuts are kept for the subtraction; only their count of the rest.
_DELETE_LOGS = sql.SQL("""
WITH gone AS (
    DELETE FROM request_logs WHERE service_id = %(service)s AND {in_range}
    RETURNING time, id, source_ip, status_code
), kept AS (
    INSERT INTO deleted_logs SELECT * FROM gone
    WHERE date_trunc('hour', time, 'UTC') = ANY(%(cut_hours)s::timestamptz[])
)
SELECT count(*) FROM gone
""").format(in_range=_in_range("time"))
_SUBTRACT = """
WITH counted AS (
    SELECT date_trunc('hour', time, 'UTC') AS bucket, {key} AS key, count(*) AS n FROM deleted_logs
    WHERE id <= %(watermark)s AND {key} IS NOT NULL GROUP BY 1, 2
)
UPDATE {table} r SET count = r.count - c.n FROM counted c
WHERE r.service_id = %(service)s AND r.bucket = c.bucket AND r.{key} = c.key
"""


def _delete_whole(table: str) -> sql.Composed:
    """Delete the service's buckets of `table` wholly inside the range."""
    return sql.SQL("DELETE FROM {table} WHERE {whole}").format(table=sql.Identifier(table), whole=_WHOLE)


async def _watermark(conn: AsyncConnection) -> int:
    await conn.execute("INSERT INTO rollup_watermarks (name) VALUES (%s) ON CONFLICT DO NOTHING", (rollup.WATERMARK,))
    cur = await conn.execute("SELECT last_id FROM rollup_watermarks WHERE name = %s FOR UPDATE", (rollup.WATERMARK,))
    return int((await cur.fetchone() or [0])[0])


async def _hourly(conn: AsyncConnection, p: dict[str, Any]) -> None:
    """Hourly counts: whole hours dropped, cut hours reduced by the counted deleted rows."""
    for table, key in rollup.HOURLY_COUNTS:
        name = sql.Identifier(table)
        await conn.execute(_delete_whole(table), p)
        await conn.execute(sql.SQL(_SUBTRACT).format(table=name, key=sql.Identifier(key)), p)
        await conn.execute(sql.SQL("DELETE FROM {} WHERE service_id = %(service)s"
                                   " AND bucket = ANY(%(cut_hours)s::timestamptz[]) AND count <= 0").format(name), p)


async def _rollups(conn: AsyncConnection, span: Span, p: dict[str, Any]) -> None:
    minutes = timedelta(minutes=1)
    await conn.execute(_delete_whole("request_rollup_1m"), {**p, **span.whole(minutes)})
    await rollup.recompute(conn, [(p["service"], m) for m in span.cut(minutes)])
    await _hourly(conn, p)
    await conn.execute(_delete_whole("request_rollup_1h"), p)
    if p["cut_hours"]:
        await conn.execute("UPDATE rollup_progress SET complete_until = least(complete_until, %s)"
                           " WHERE name = 'request_rollup_1h'", (p["cut_hours"][0],))


async def delete_logs(conn: AsyncConnection, caller: Caller, q: DeleteQuery) -> dict[str, int]:
    """Delete `caller`'s service's logs in q's range (or all) with their replays and rollup share,
    and record it in audit_events; the counts deleted."""
    span = Span(q.from_, q.to)
    hours = timedelta(hours=1)
    p: dict[str, Any] = {"service": caller.service_id, "since": span.since, "until": span.until,
                         "cut_hours": span.cut(hours), **span.whole(hours)}
    async with conn.transaction():
        p["watermark"] = await _watermark(conn)
        # refresh_hourly_rollups' own lock: a refresh running meanwhile could otherwise write hours from
        # minutes read before this commits, and then move rollup_progress past the hours cut here.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('refresh_hourly_rollups'))")
        await conn.execute("CREATE TEMPORARY TABLE deleted_logs (time timestamptz, id bigint, source_ip inet,"
                           " status_code integer) ON COMMIT DROP")
        replays = (await conn.execute(_DELETE_REPLAYS, p)).rowcount
        cur = await conn.execute(_DELETE_LOGS, p)
        logs = int((await cur.fetchone() or [0])[0])
        await _rollups(conn, span, p)
        counts = {"logs": logs, "replays": replays}
        details = {"from": span.since and span.since.isoformat(), "to": span.until and span.until.isoformat(),
                   "all": q.all, **counts}
        await conn.execute("INSERT INTO audit_events (action, actor, service_id, service, details)"
                           " VALUES ('logs.delete', %s, %s, %s, %s)",
                           (f"key:{caller.prefix}", caller.service_id, caller.service, Jsonb(details)))
    logger.info("logs deleted service=%s key=%s from=%s to=%s logs=%d replays=%d", caller.service, caller.prefix,
                details["from"] or "-", details["to"] or "-", logs, replays)
    return counts


async def delete_own_logs(call: Call[Caller, None, DeleteQuery]) -> web.Response:
    """DELETE /logs?from&to or ?all=true: the calling key's service's logs only (the admin token is
    refused with ADMIN_REFUSED by the route table)."""
    q = call.query
    if refused := refusal(q):
        return refused.response()
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        counts = await delete_logs(conn, call.caller, q)
    return reply({"service": call.caller.service, "from": q.from_, "to": q.to, "deleted": counts})
