"""`upwatch detector status`: per series rows, model age, threshold, last score, anomalies in 24 h."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import AsyncConnection

from upwatch import durations


@dataclass(frozen=True)
class SeriesStatus:
    series: str
    status: str  # new | learning (too few rows: no claims yet) | ready
    rows: int
    model_age: timedelta | None
    threshold: float | None
    last_score: float | None
    anomalies_24h: int
    watermark: datetime | None


async def status(conn: AsyncConnection, now: datetime) -> list[SeriesStatus]:
    """One entry per series the detector knows, ordered by name."""
    cur = await conn.execute(
        "SELECT m.series, m.status, m.rows, %s - m.trained_at, m.threshold, m.last_score,"
        " (SELECT count(*) FROM anomalies a WHERE a.series = m.series AND a.time > %s - interval '24 hours'),"
        " m.watermark FROM detector_models m ORDER BY m.series", (now, now))
    return [SeriesStatus(*row) for row in await cur.fetchall()]


def render(rows: list[SeriesStatus]) -> str:
    """A plain table for the terminal."""
    table = [("SERIES", "STATUS", "ROWS", "MODEL AGE", "THRESHOLD", "LAST SCORE", "ANOMALIES 24H")]
    for r in rows:
        age = durations.format(timedelta(seconds=round(r.model_age.total_seconds()))) if r.model_age else "-"
        table.append((r.series, r.status, str(r.rows), age, _num(r.threshold), _num(r.last_score), str(r.anomalies_24h)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    if not rows:
        lines.append("(no series yet: the detector has not run against this database)")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
