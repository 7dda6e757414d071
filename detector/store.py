"""The detector's tables: detector_models (state + watermark), anomalies, incidents.

A series' verdicts, incident updates and new watermark are written in one transaction,
so a restart neither skips rows nor scores them twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from detector.artifacts import Artifact
from detector.early import THRESHOLD as EARLY_THRESHOLD
from detector.incidents import LastAlarm
from detector.scoring import Verdict
from detector.series import Series

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Saved:
    """What detector_models remembers about a series."""

    version: int
    watermark: datetime | None


async def saved(conn: AsyncConnection) -> dict[str, Saved]:
    """Every series' model version and watermark."""
    cur = await conn.execute("SELECT series, version, watermark FROM detector_models")
    return {key: Saved(version, watermark) for key, version, watermark in await cur.fetchall()}


async def claimed(conn: AsyncConnection, series: str, since: datetime,
                  pad: timedelta) -> list[tuple[datetime, datetime]]:
    """Time ranges of this series' incidents since `since`, padded by `pad`: left out of training."""
    cur = await conn.execute(
        "SELECT started_at - %s, ended_at + %s FROM incidents WHERE series = %s AND ended_at >= %s ORDER BY started_at",
        (pad, pad, series, since))
    return [(a, b) for a, b in await cur.fetchall()]


async def last_alarm(conn: AsyncConnection, series: str, since: datetime) -> LastAlarm | None:
    """The series' latest anomaly by a model (not the early rule) at or after `since` and the peak score of
    its incident, read from the anomalies rows (so the event hold survives a restart); None if none."""
    cur = await conn.execute(
        "SELECT a.time, coalesce(i.peak_score, a.score) FROM anomalies a LEFT JOIN incidents i ON i.id = a.incident_id"
        " WHERE a.series = %s AND a.time >= %s AND a.model_version > 0 ORDER BY a.time DESC LIMIT 1",
        (series, since))
    row = await cur.fetchone()
    if row is None:
        return None
    at, peak = row
    return LastAlarm(pd.Timestamp(at), float(peak))


async def save_model(conn: AsyncConnection, series: Series, artifact: Artifact | None, status: str) -> None:
    """Record a (re)trained model, or why there is none."""
    await conn.execute(
        "INSERT INTO detector_models (series, endpoint_id, service_id, route, metric, version, trained_at, rows,"
        " threshold, features, status, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
        # A series whose model was dropped keeps its last version: the next model's is one more.
        " ON CONFLICT (series) DO UPDATE SET version = greatest(detector_models.version, excluded.version),"
        " trained_at = excluded.trained_at,"
        " rows = excluded.rows, threshold = excluded.threshold, features = excluded.features,"
        " status = excluded.status, updated_at = now()",
        (series.key, series.endpoint_id, series.service_id, series.route, series.metric,
         artifact.version if artifact else 0, artifact.trained_at if artifact else None,
         artifact.rows if artifact else 0, artifact.threshold if artifact else None,
         Jsonb(list(artifact.features)) if artifact else None, status))


async def advance(conn: AsyncConnection, series: Series, watermark: datetime, last_score: float | None) -> None:
    """Move the watermark (creating the row for a new series)."""
    await conn.execute(
        "INSERT INTO detector_models"
        " (series, endpoint_id, service_id, route, metric, watermark, last_score, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, now()) ON CONFLICT (series) DO UPDATE SET"
        " watermark = excluded.watermark, last_score = coalesce(excluded.last_score, detector_models.last_score),"
        " updated_at = now()",
        (series.key, series.endpoint_id, series.service_id, series.route, series.metric, watermark, last_score))


async def record(conn: AsyncConnection, series: Series, verdicts: list[Verdict], artifact: Artifact | None,
                 gap: timedelta) -> int:
    """Insert anomalies for anomalous verdicts and open or extend incidents; returns anomalies written.

    Without an artifact the verdicts are the early rule's: model_version 0 and its threshold.
    """
    threshold, version = (artifact.threshold, artifact.version) if artifact is not None else (EARLY_THRESHOLD, 0)
    written = 0
    for v in verdicts:
        if not v.anomalous:
            continue
        incident_id = await _incident(conn, series, v, gap)
        await conn.execute(
            "INSERT INTO anomalies (time, series, endpoint_id, service_id, value, score, threshold, severity,"
            " model_version, features, reason, incident_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (v.time, series.key, series.endpoint_id, series.service_id, v.value, v.score, threshold,
             v.severity, version, Jsonb(v.features), v.reason, incident_id))
        written += 1
    return written


async def _incident(conn: AsyncConnection, series: Series, v: Verdict, gap: timedelta) -> int:
    cur = await conn.execute(
        "SELECT id, peak_score FROM incidents WHERE series = %s AND ended_at >= %s ORDER BY ended_at DESC LIMIT 1",
        (series.key, v.time - gap))
    open_ = await cur.fetchone()
    if open_ is None:
        cur = await conn.execute(
            "INSERT INTO incidents (series, endpoint_id, service_id, started_at, ended_at, peak_score, severity,"
            " reason, points) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1) RETURNING id",
            (series.key, series.endpoint_id, series.service_id, v.time, v.time, v.score, v.severity, v.reason))
        row = await cur.fetchone()
        if row is None:  # INSERT ... RETURNING always gives its row; a bug, not a data problem
            raise RuntimeError("incident insert returned no row")
        return int(row[0])
    incident_id, peak = open_
    if v.score > peak:
        await conn.execute(
            "UPDATE incidents SET ended_at = greatest(ended_at, %s), peak_score = %s, severity = %s, reason = %s,"
            " points = points + 1, updated_at = now() WHERE id = %s",
            (v.time, v.score, v.severity, v.reason, incident_id))
    else:
        await conn.execute(
            "UPDATE incidents SET ended_at = greatest(ended_at, %s), points = points + 1, updated_at = now()"
            " WHERE id = %s", (v.time, incident_id))
    return int(incident_id)
