"""`upwatch detector status`: per series its state, rows in the training window, model age, threshold,
last score, anomalies in 24 h, and what a series without a model still needs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from psycopg import AsyncConnection, sql

from detector import series as series_sql
from detector.series import Series
from detector.service import RETRY_UNTRAINED
from detector.training import window_for
from upwatch import durations
from upwatch.config.detector import Detector

# One row per complete minute: the failure rate and the pushed services' series.
PER_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class SeriesStatus:
    series: str
    # new (no training tried yet) | learning (too few rows: no claims yet) | ready
    # | disabled (its endpoint is disabled: neither scored nor trained) | idle (no traffic in the window)
    status: str
    rows: int  # the series' rows in the training window now, as training would read them
    model_age: timedelta | None
    threshold: float | None
    last_score: float | None
    anomalies_24h: int
    watermark: datetime | None
    needs: str  # what stands between the series and a model; "" when there is nothing to say


@dataclass(frozen=True)
class _Known:
    series: Series
    status: str
    trained_at: datetime | None
    threshold: float | None
    last_score: float | None
    anomalies_24h: int
    watermark: datetime | None
    step: timedelta


async def status(conn: AsyncConnection, now: datetime, settings: Detector) -> list[SeriesStatus]:
    """One entry per series the detector models or has modelled, ordered by name."""
    known = await _known(conn, now, settings.training_window)
    for s in await series_sql.discover(conn, settings.training_window):
        if s.key not in known:
            known[s.key] = _Known(s, "new", None, None, None, 0, None, await _step(conn, s))
    out = []
    for key in sorted(known):
        k = known[key]
        # A sparse series trains on a longer window than training_window (training.window_for).
        rows = await count(conn, k.series, now - window_for(pd.Timedelta(k.step), settings).to_pytimedelta(), now)
        out.append(SeriesStatus(key, k.status, rows, now - k.trained_at if k.trained_at else None, k.threshold,
                                k.last_score, k.anomalies_24h, k.watermark, needs(k.status, rows, k.step, settings)))
    return out


async def _known(conn: AsyncConnection, now: datetime, window: timedelta) -> dict[str, _Known]:
    # A service route is modelled while it had traffic within the training window (series.discover).
    cur = await conn.execute(
        "SELECT m.series, m.metric, m.endpoint_id, m.service_id, m.route,"
        " CASE WHEN NOT e.enabled THEN 'disabled'"
        "      WHEN m.service_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM request_rollup_1m r"
        "          WHERE r.service_id = m.service_id AND r.route = m.route AND r.bucket > %s - %s) THEN 'idle'"
        "      ELSE m.status END,"
        " m.trained_at, m.threshold, m.last_score,"
        " (SELECT count(*) FROM anomalies a WHERE a.series = m.series AND a.time > %s - interval '24 hours'),"
        " m.watermark, e.config->>'interval'"
        " FROM detector_models m LEFT JOIN endpoints e ON e.id = m.endpoint_id ORDER BY m.series",
        (now, window, now))
    out = {}
    for key, metric, endpoint_id, service_id, route, state, trained_at, threshold, last_score, anomalies, \
            watermark, interval in await cur.fetchall():
        s = Series(key, metric, metric, "", endpoint_id=endpoint_id, service_id=service_id, route=route)
        out[key] = _Known(s, state, trained_at, threshold, last_score, anomalies, watermark,
                          _step_of(metric, interval))
    return out


async def _step(conn: AsyncConnection, s: Series) -> timedelta:
    if s.endpoint_id is None:
        return PER_MINUTE
    cur = await conn.execute("SELECT config->>'interval' FROM endpoints WHERE id = %s", (s.endpoint_id,))
    row = await cur.fetchone()
    return _step_of(s.metric, row[0] if row else None)


def _step_of(metric: str, interval: str | None) -> timedelta:
    """Time between a series' rows: a check interval for latency, a minute (or the check interval, if
    longer: minutes without checks have no row) for the failure rate, a minute for pushed services."""
    if metric not in ("latency", "failure_rate"):
        return PER_MINUTE
    try:
        check = durations.parse(interval) if interval else timedelta(seconds=15)
    except ValueError:
        check = timedelta(seconds=15)
    return check if metric == "latency" else max(check, PER_MINUTE)


async def count(conn: AsyncConnection, s: Series, since: datetime, until: datetime) -> int:
    """Rows of `s` with since < time <= until: the same query training reads, counted."""
    params = {"endpoint_id": s.endpoint_id, "service_id": s.service_id, "route": s.route,
              "since": since, "until": until, "settle": series_sql.SETTLE}
    statement = sql.SQL("SELECT count(*) FROM ({}) AS q").format(
        sql.SQL(series_sql._QUERIES[s.metric]))
    cur = await conn.execute(statement, params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def needs(state: str, rows: int, step: timedelta, settings: Detector) -> str:
    """What a series without a model still needs, in rows and (at its pace) time: min_training_rows
    usable rows spanning min_training_span (training.select), whichever takes more rows at `step`."""
    if state not in ("new", "learning"):
        return ""
    wanted = max(settings.min_training_rows, math.ceil(settings.min_training_span / step))
    if rows >= wanted:
        return f"has enough rows; training is retried every {durations.format(RETRY_UNTRAINED)}"
    missing = wanted - rows
    return f"needs {missing:,} more rows (about {_about(missing * step)} at {durations.format(step)})"


def _about(span: timedelta) -> str:
    """A rough duration: whole days, hours or minutes (at least 1 m)."""
    seconds = span.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds >= 2 * size:
            return f"{round(seconds / size)} {unit}"
    return f"{max(1, round(seconds / 60))} min"


def render(rows: list[SeriesStatus]) -> str:
    """A plain table for the terminal."""
    table = [("SERIES", "STATUS", "ROWS", "MODEL AGE", "THRESHOLD", "LAST SCORE", "ANOMALIES 24H", "NEEDS")]
    for r in rows:
        age = durations.format(timedelta(seconds=round(r.model_age.total_seconds()))) if r.model_age else "-"
        table.append((r.series, r.status, f"{r.rows:,}", age, _num(r.threshold), _num(r.last_score),
                      str(r.anomalies_24h), r.needs or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    if not rows:
        lines.append("(no series yet: the detector has not run against this database)")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
