"""What the alerter reads: endpoints, new probe results per location since a cursor,
detector incidents since a watermark, and threshold-rule values.

Other services write these tables; the columns in sql/0001 are the contract.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, sql

from alerter.records import ResultSummary
from upwatch.config.alerting import Condition, Rule

logger = logging.getLogger(__name__)

LOOKBACK = timedelta(minutes=10)  # older unseen results are stale news, not alerts
MAX_ROWS = 50_000
INCIDENT_OVERLAP = timedelta(seconds=30)  # updated_at is a transaction start time; commits land out of order


@dataclass(frozen=True)
class EndpointInfo:
    id: int
    name: str
    kind: str
    target: str
    tags: tuple[str, ...]
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    time: datetime
    location: str
    ok: bool
    status_code: int | None
    latency_ms: float | None
    error_kind: str | None
    error: str | None
    cert_not_after: datetime | None
    assertions: Any

    @property
    def missed_heartbeat(self) -> bool:
        return self.error_kind == "missing_heartbeat"

    @property
    def skipped(self) -> bool:
        """A run the prober skipped because the previous one was still going: no verdict on the endpoint."""
        return self.error_kind == "skipped"

    def reason(self) -> str:
        """Why this check failed, in the words an operator needs first (the prober's error wins)."""
        if self.error and self.error_kind == "assertion":
            return f"assertion failed: {self.error}"
        if self.error:
            return self.error
        failed = [a for a in self.assertions if isinstance(a, dict) and a.get("ok") is False] \
            if isinstance(self.assertions, list) else []
        if failed:
            a = failed[0]
            return f"assertion failed: {a.get('assertion', '?')}: {a.get('reason', 'did not hold')}"
        if self.missed_heartbeat:
            return "no heartbeat received in time"
        if self.error_kind:
            return self.error_kind
        return f"HTTP status {self.status_code}" if self.status_code else "check failed"

    def summary(self) -> ResultSummary:
        return ResultSummary(self.time, self.ok, self.status_code, self.latency_ms, self.location,
                             None if self.ok else self.reason())


async def endpoints(conn: AsyncConnection) -> dict[int, EndpointInfo]:
    """Enabled endpoints with their tags and dependencies (from the synced config)."""
    cur = await conn.execute(
        "SELECT id, name, kind, target, tags, coalesce(config->'depends_on', '[]'::jsonb),"
        " config->>'period', config->>'grace' FROM endpoints WHERE enabled")
    return {r[0]: EndpointInfo(r[0], r[1], r[2], shown_target(r[1], r[2], r[3], r[6], r[7]), tuple(r[4]),
                               tuple(r[5])) for r in await cur.fetchall()}


def shown_target(name: str, kind: str, target: str, period: str | None, grace: str | None) -> str:
    """What an alert says the check points at. A push endpoint points nowhere (its stored target
    is just "push"): say what it waits for instead."""
    if kind != "push":
        return target
    return (f"check-ins to /api/v1/checks/{name}" + (f" every {period}" if period else "")
            + (f" (grace {grace})" if grace else ""))


async def new_results(conn: AsyncConnection) -> dict[int, list[Result]]:
    """Unseen results per endpoint in time order, each location past its own cursor."""
    cur = await conn.execute(
        "SELECT r.endpoint_id, r.time, r.location, r.ok, r.status_code, r.latency_ms, r.error_kind, r.error,"
        " r.cert_not_after, r.assertions FROM probe_results r"
        " JOIN endpoints e ON e.id = r.endpoint_id AND e.enabled"
        " LEFT JOIN alert_cursors c ON c.endpoint_id = r.endpoint_id AND c.location = r.location"
        " WHERE r.time > now() - %s AND r.time > coalesce(c.last_time, '-infinity')"
        " ORDER BY r.endpoint_id, r.time, r.id LIMIT %s", (LOOKBACK, MAX_ROWS))
    out: dict[int, list[Result]] = defaultdict(list)
    for row in await cur.fetchall():
        out[row[0]].append(Result(*row[1:]))
    return out


async def save_cursors(conn: AsyncConnection, results: dict[int, list[Result]]) -> None:
    """Remember the newest result seen per endpoint and location."""
    newest: dict[tuple[int, str], datetime] = {}
    for endpoint_id, rows in results.items():
        for r in rows:
            key = (endpoint_id, r.location)
            newest[key] = max(newest.get(key, r.time), r.time)
    if newest:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO alert_cursors (endpoint_id, location, last_time) VALUES (%s, %s, %s)"
                " ON CONFLICT (endpoint_id, location) DO UPDATE"
                " SET last_time = greatest(alert_cursors.last_time, excluded.last_time)",
                [(k[0], k[1], v) for k, v in newest.items()])


@dataclass(frozen=True)
class Incident:
    id: int
    series: str
    endpoint_id: int | None
    name: str  # endpoint name, service name or series
    started_at: datetime
    peak_score: float
    severity: str
    reason: str
    updated_at: datetime
    ended_at: datetime  # its last anomalous point


async def incidents(conn: AsyncConnection) -> list[Incident]:
    """Incidents the detector opened or updated since the watermark (with overlap; callers de-duplicate)."""
    cur = await conn.execute("SELECT value FROM alert_watermarks WHERE name = 'incidents'")
    row = await cur.fetchone()
    cur = await conn.execute(
        "SELECT i.id, i.series, i.endpoint_id, coalesce(e.name, s.name, i.series), i.started_at, i.peak_score,"
        " i.severity, i.reason, i.updated_at, i.ended_at FROM incidents i"
        " LEFT JOIN endpoints e ON e.id = i.endpoint_id LEFT JOIN services s ON s.id = i.service_id"
        " WHERE i.updated_at > coalesce(%s, now() - %s) ORDER BY i.updated_at, i.id",
        (row[0] - INCIDENT_OVERLAP if row else None, LOOKBACK))
    return [Incident(*r) for r in await cur.fetchall()]


@dataclass(frozen=True)
class Progress:
    """How far the detector has judged a series, and its newest anomalous point."""

    watermark: datetime | None  # the newest row it scored
    last_anomaly_at: datetime | None


async def progress(conn: AsyncConnection, series: list[str]) -> dict[str, Progress]:
    """Per series the detector knows: rows scored since its last anomalous point tell an anomaly is over.

    detector/store.py writes incidents and the watermark in one transaction, so a watermark past
    the last incident's end means every row in between was judged normal."""
    if not series:
        return {}
    cur = await conn.execute(
        "SELECT m.series, m.watermark, (SELECT max(i.ended_at) FROM incidents i WHERE i.series = m.series)"
        " FROM detector_models m WHERE m.series = ANY(%s)", (series,))
    return {r[0]: Progress(r[1], r[2]) for r in await cur.fetchall()}


async def save_incident_watermark(conn: AsyncConnection, seen: list[Incident]) -> None:
    if seen:
        await conn.execute(
            "INSERT INTO alert_watermarks (name, value) VALUES ('incidents', %s) ON CONFLICT (name) DO UPDATE"
            " SET value = greatest(alert_watermarks.value, excluded.value)", (max(i.updated_at for i in seen),))


_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "<>"}


def _expression(c: Condition, service: bool) -> sql.Composable:
    if c.metric == "error_rate":
        failed = "status_code >= 500 OR error IS NOT NULL" if service else "NOT ok"
        return sql.SQL(f"avg(CASE WHEN {failed} THEN 1.0 ELSE 0.0 END)")
    if c.metric == "count":
        return sql.SQL("count(*)::float8")
    field = sql.Identifier(c.field or "latency_ms")
    if c.metric == "matching":
        return sql.SQL("(count(*) FILTER (WHERE {} {} {}))::float8").format(
            field, sql.SQL(_OPS[c.filter_op or ">"]), sql.Literal(c.filter_value))
    if c.aggregate and c.aggregate.startswith("p"):
        fraction = int(c.aggregate[1:]) / 100
        return sql.SQL("percentile_cont({}) WITHIN GROUP (ORDER BY {})").format(sql.Literal(fraction), field)
    return sql.SQL("{}({})::float8").format(sql.SQL(c.aggregate or "avg"), field)


async def rule_value(conn: AsyncConnection, rule: Rule) -> float | None:
    """The rule's metric over its window; None when there is no data in the window."""
    c = rule.condition
    if rule.service is not None:
        query = sql.SQL("SELECT {} FROM request_logs l JOIN services s ON s.id = l.service_id"
                        " WHERE s.name = %s AND l.time > now() - %s").format(_expression(c, True))
    else:
        query = sql.SQL("SELECT {} FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id"
                        " WHERE e.name = %s AND r.time > now() - %s").format(_expression(c, False))
    cur = await conn.execute(query, (rule.service or rule.endpoint, c.window))
    row = await cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


def breached(value: float | None, c: Condition) -> bool:
    """Whether `value` crosses the rule's threshold."""
    if value is None:
        return False
    return {"<": value < c.value, "<=": value <= c.value, ">": value > c.value, ">=": value >= c.value,
            "==": value == c.value, "!=": value != c.value}[c.op]
