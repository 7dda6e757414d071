"""Maintenance windows: from the config file and ad-hoc silences in the maintenance_windows table.

Ground layer, shared by the alerter (silencing alerts, `upwatch silence`) and the status pages (the
maintenance state): neither service imports the other's internals. It does not import upwatch.config
either (a layer above); a config entry is read through the `Spec` protocol, which
upwatch.config.alerting.Maintenance satisfies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

logger = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday(), as in the config


class WeeklySpec(Protocol):
    """A weekly recurrence as the config gives it: local `start` to `end` on `days`."""

    @property
    def days(self) -> Sequence[str]: ...
    @property
    def start(self) -> time: ...
    @property
    def end(self) -> time: ...


class Spec(Protocol):
    """A configured window (`alerting.maintenance[]`): a one-off start/end or a weekly recurrence."""

    @property
    def name(self) -> str: ...
    @property
    def start(self) -> datetime | None: ...
    @property
    def end(self) -> datetime | None: ...
    @property
    def weekly(self) -> WeeklySpec | None: ...
    @property
    def timezone(self) -> str: ...
    @property
    def endpoints(self) -> Sequence[str]: ...
    @property
    def tags(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Window:
    name: str
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    days: tuple[str, ...] = ()
    start: time | None = None  # weekly, local time in `timezone`
    end: time | None = None
    timezone: str = "UTC"
    endpoints: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    id: int | None = None
    source: str = "config"

    def applies(self, endpoint: str, tags: Iterable[str]) -> bool:
        """No endpoints and no tags means every endpoint."""
        if not self.endpoints and not self.tags:
            return True
        return endpoint in self.endpoints or bool(set(self.tags) & set(tags))

    def active(self, now: datetime) -> bool:
        if self.starts_at is not None and self.ends_at is not None:
            return self.starts_at <= now < self.ends_at
        if self.start is None or self.end is None:
            return False
        local = now.astimezone(ZoneInfo(self.timezone))
        day, clock = DAYS[local.weekday()], local.time().replace(tzinfo=None)
        if self.start < self.end:
            return day in self.days and self.start <= clock < self.end
        yesterday = DAYS[(local - timedelta(days=1)).weekday()]
        return (day in self.days and clock >= self.start) or (yesterday in self.days and clock < self.end)


def from_config(m: Spec) -> Window:
    """A config `alerting.maintenance[]` entry as a Window (a naive time is in the entry's timezone)."""
    def localize(moment: datetime | None) -> datetime | None:
        if moment is None or moment.tzinfo is not None:
            return moment
        return moment.replace(tzinfo=ZoneInfo(m.timezone))

    weekly = m.weekly
    return Window(
        name=m.name, starts_at=localize(m.start), ends_at=localize(m.end),
        days=tuple(weekly.days) if weekly else (), start=weekly.start if weekly else None,
        end=weekly.end if weekly else None, timezone=m.timezone, endpoints=tuple(m.endpoints), tags=tuple(m.tags),
    )


def silencing(windows: Sequence[Window], endpoint: str, tags: Iterable[str], now: datetime) -> Window | None:
    """The first window that silences this endpoint now, if any."""
    tags = tuple(tags)
    return next((w for w in windows if w.active(now) and w.applies(endpoint, tags)), None)


async def load(conn: AsyncConnection) -> list[Window]:
    """Silences stored in the database (added with `upwatch silence add` or the API)."""
    cur = await conn.execute(
        "SELECT id, name, source, starts_at, ends_at, weekly, timezone, endpoints, tags FROM maintenance_windows"
        " WHERE source <> 'config' AND (ends_at IS NULL OR ends_at > now()) ORDER BY id")
    windows = []
    for wid, name, source, starts_at, ends_at, stored, tz, endpoints, tags in await cur.fetchall():
        weekly = stored or {}
        windows.append(Window(
            name=name, starts_at=starts_at, ends_at=ends_at, days=tuple(weekly.get("days", ())),
            start=time.fromisoformat(weekly["start"]) if "start" in weekly else None,
            end=time.fromisoformat(weekly["end"]) if "end" in weekly else None,
            timezone=tz, endpoints=tuple(endpoints), tags=tuple(tags), id=wid, source=source))
    return windows


async def add(conn: AsyncConnection, window: Window) -> int:
    """Store a silence; returns its id."""
    weekly = ({"days": list(window.days), "start": window.start.isoformat(), "end": window.end.isoformat()}
              if window.start and window.end else None)
    cur = await conn.execute(
        "INSERT INTO maintenance_windows (name, source, starts_at, ends_at, weekly, timezone, endpoints, tags)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (window.name, window.source, window.starts_at, window.ends_at, Jsonb(weekly) if weekly else None,
         window.timezone, list(window.endpoints), list(window.tags)))
    row = await cur.fetchone()
    if row is None:  # INSERT ... RETURNING always returns its row
        raise RuntimeError("INSERT into maintenance_windows returned no id")
    logger.info("silence added id=%d name=%r", row[0], window.name)
    return int(row[0])


async def remove(conn: AsyncConnection, window_id: int) -> bool:
    """Delete a silence; False when there was none with this id."""
    cur = await conn.execute("DELETE FROM maintenance_windows WHERE id = %s AND source <> 'config'", (window_id,))
    return cur.rowcount > 0
