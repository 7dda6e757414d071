"""What a status page shows, read from the database: one PageData per request, the same for HTML and JSON."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from psycopg import AsyncConnection

from prober.checks.assertions import Observed, check
from prober.pages import incidents, uptime
from prober.pages.uptime import DAY, HOUR, Figures, Query
from upwatch import maintenance
from upwatch.assertions import Assertion
from upwatch.config import Config
from upwatch.config.pages import StatusPage

# Uptime windows end now and start at an hour (24h) or a UTC midnight (the others), so each is a sum of
# the page's own hourly points or day bars: 24h = the 24 hourly points, 7d = the last 7 day bars, ...
WINDOWS = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30),
           "90d": dt.timedelta(days=90)}
HISTORY_DAYS = 90
SPARK_HOURS = 24
RECENT = dt.timedelta(days=7)
# A detector incident whose last anomalous point is this recent is still going on.
ACTIVE_FOR = dt.timedelta(minutes=5)
STATES = ("up", "degraded", "down", "maintenance", "unknown")
# A location that has probed an endpoint this recently counts in its per-location state.
LOCATIONS_RECENT = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Incident:
    started_at: dt.datetime
    ended_at: dt.datetime
    severity: str
    reason: str
    active: bool


@dataclass(frozen=True)
class Window:
    name: str
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    active: bool


@dataclass
class EndpointData:
    name: str
    id: int | None
    state: str = "unknown"
    last_at: dt.datetime | None = None
    last_error: str | None = None
    failing: bool = False  # the last failure_threshold checks all failed
    degraded_by: str | None = None  # the endpoint's `degraded` condition its newest (successful) check meets
    uptime: dict[str, Figures] = field(default_factory=dict)
    # Dates and hours are one list shared by every endpoint of a load; a 500-endpoint page would
    # otherwise make 45,000 pairs per request, and the garbage collector's time grows with them.
    dates: list[dt.date] = field(default_factory=list)
    day_cells: list[Figures] = field(default_factory=list)
    final_days: int = 0  # the first this many days are final (no refresh rewrites them)
    hour_starts: list[dt.datetime] = field(default_factory=list)
    hour_cells: list[Figures] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    maintenance: list[Window] = field(default_factory=list)
    # With more than one prober location: each location's own state (up / degraded / down), by name.
    locations: dict[str, str] = field(default_factory=dict)

    @property
    def days(self) -> list[tuple[dt.date, Figures]]:
        return list(zip(self.dates, self.day_cells, strict=True))

    @property
    def hours(self) -> list[tuple[dt.datetime, Figures]]:
        return list(zip(self.hour_starts, self.hour_cells, strict=True))

    @property
    def unusual(self) -> Incident | None:
        """The detector's active incident, if it says this endpoint behaves unusually for it right now."""
        return next((i for i in self.incidents if i.active), None)


@dataclass
class GroupData:
    name: str
    endpoints: list[EndpointData]


@dataclass
class PageData:
    page: StatusPage
    now: dt.datetime
    groups: list[GroupData]
    notices: list[incidents.Notice] = field(default_factory=list)  # operator (and alerter) incidents

    @property
    def endpoints(self) -> list[EndpointData]:
        return [e for g in self.groups for e in g.endpoints]

    @property
    def state(self) -> str:
        """The worst state on the page (unknown counts as neither good nor bad)."""
        states = {e.state for e in self.endpoints}
        return next((s for s in ("down", "degraded", "maintenance", "up") if s in states), "unknown")


def layout(page: StatusPage, config: Config) -> list[tuple[str, list[str]]]:
    """The page's groups as (heading, endpoint names): its own endpoints/tags first, then each group.
    A name not in the config still shows (as unknown), so a typo is visible rather than silent."""
    def pick(names: Sequence[str], tags: Sequence[str]) -> list[str]:
        chosen = list(dict.fromkeys(names))
        chosen += [e.name for e in config.endpoints if set(tags) & set(e.tags) and e.name not in chosen]
        return chosen

    groups = [(page.title, pick(page.endpoints, page.tags))] if page.endpoints or page.tags else []
    groups += [(g.name, pick(g.endpoints, g.tags)) for g in page.groups]
    return groups


async def load(conn: AsyncConnection, page: StatusPage, config: Config, now: dt.datetime,
               cache: uptime.DayCache | None = None) -> PageData:
    """Everything the page shows, as of `now`."""
    groups = layout(page, config)
    names = list(dict.fromkeys(n for _, members in groups for n in members))
    endpoints = await load_endpoints(conn, names, config, now, cache)
    notices = [n for n in await incidents.recent(conn, now, alerts=page.alert_incidents) if n.concerns(names)]
    return PageData(page, now, [GroupData(title, [endpoints[n] for n in members]) for title, members in groups],
                    notices)


async def load_endpoints(conn: AsyncConnection, names: Sequence[str], config: Config, now: dt.datetime,
                         cache: uptime.DayCache | None = None) -> dict[str, EndpointData]:
    """State, uptime windows, 90 days of history, 24 h of latency, incidents and maintenance per endpoint."""
    cur = await conn.execute("SELECT name, id FROM endpoints WHERE name = ANY(%s)", (list(names),))
    ids: dict[str, int] = dict(await cur.fetchall())
    out = {n: EndpointData(n, ids.get(n)) for n in names}
    by_id = {i: out[n] for n, i in ids.items()}
    await _figures(conn, by_id, now, cache or uptime.DayCache())
    degraded = {e.name: e.degraded for e in config.endpoints if e.degraded}
    seen = await _latest(conn, by_id, config.alerting.failure_threshold, degraded, now)
    await _per_location(conn, by_id, seen, config.alerting.failure_threshold, now)
    await _incidents(conn, by_id, now)
    await _maintenance(conn, out, config, now)
    for e in out.values():
        e.state = _state(e, config.alerting.min_locations)
    return out


async def _figures(conn: AsyncConnection, by_id: dict[int, EndpointData], now: dt.datetime,
                   cache: uptime.DayCache) -> None:
    """Uptime windows, day bars and hourly latency, reading each stretch of time once: final days and hours
    from the cache, the newer whole days before today and the newer hours from the rollups (today's bar is
    the sum of today's hours). The windows are sums of these (see WINDOWS), their final parts kept too."""
    today, hour = uptime.floor(now, DAY), uptime.floor(now, HOUR)
    first_day, first_hour = today - (HISTORY_DAYS - 1) * DAY, hour - (SPARK_HOURS - 1) * HOUR
    lim = await uptime.limits(conn, now)
    final_day = cache.days.final_until(lim.day, first_day, today)
    final_hour = cache.hours.final_until(lim.hour, first_hour, hour)
    ids = list(by_id)
    minutes = cache.minutes.span(lim, now)
    # The newest hours in two parts around the kept minutes; one label, so SQL sums them per hour.
    recent = [Query("hours", final_hour, now, "hour")] if minutes is None else [
        Query("hours", final_hour, max(final_hour, minutes[0]), "hour"), Query("hours", minutes[1], now, "hour")]
    result = await uptime.figures(conn, ids, [Query("days", final_day, today, "day"), *recent], now, lim)
    kept_days = await cache.days.load(conn, ids, first_day, final_day, now, lim)
    kept_hours = await cache.hours.load(conn, ids, first_hour, final_hour, now, lim)
    kept_minutes = await cache.minutes.load(conn, ids, *minutes, now, lim) if minutes else {}
    day_starts, hour_starts = _steps(today, HISTORY_DAYS, DAY), _steps(hour, SPARK_HOURS, HOUR)
    dates = [d.date() for d in day_starts]
    final_d, final_h = day_starts.index(final_day), hour_starts.index(final_hour)
    live_days = [uptime.epoch(d) for d in day_starts[final_d:-1]]
    live_hours = [uptime.epoch(h) for h in hour_starts[final_h:]]
    starts = {label: day_starts.index(window_start(label, now)) for label in WINDOWS if label != "24h"}
    today_from = hour_starts.index(today) if today >= first_hour else 0
    none = Figures()
    labels = list(starts)
    for i, e in by_id.items():
        hours = result.buckets.get(("hours", i), {})
        settled = kept_minutes.get(i, {})
        hour_cells = kept_hours[i] + [uptime.plus(hours.get(k, none), settled[k]) if k in settled
                                      else hours.get(k, none) for k in live_hours]
        days = result.buckets.get(("days", i), {})
        today_cell, last_24h = _sums(hour_cells, (today_from, 0), final_h, cache.hours.sums, i)
        cells = kept_days[i] + [days.get(k, none) for k in live_days] + [today_cell]
        e.dates, e.day_cells, e.final_days = dates, cells, final_d
        e.hour_starts, e.hour_cells = hour_starts, hour_cells
        e.uptime = {"24h": last_24h}
        e.uptime.update(zip(labels, _sums(cells, starts.values(), final_d, cache.days.sums, i), strict=True))


def _sums(cells: list[Figures], starts: Iterable[int], final: int, sums: dict[tuple[int, int], Figures],
          key: int) -> list[Figures]:
    """The sums of cells[start:] for each start. Cells before `final` are kept ones: their part of each sum is
    computed once per span and kept in `sums`; the newer cells are summed once for all starts."""
    live = uptime.total(cells[final:])
    out = []
    for start in starts:
        if start >= final:
            out.append(uptime.total(cells[start:]))
            continue
        kept = sums.get((key, start))
        if kept is None:
            kept = sums[key, start] = uptime.total(cells[start:final])
        out.append(uptime.plus(kept, live))
    return out


def _steps(last: dt.datetime, n: int, step: dt.timedelta) -> list[dt.datetime]:
    return [last - (n - 1 - k) * step for k in range(n)]


def window_start(label: str, now: dt.datetime) -> dt.datetime:
    """Where a window starts: the hour 23 hours before this one for 24h, else the midnight (UTC) N-1 days ago."""
    span = WINDOWS[label]
    if span < DAY * 2:
        return uptime.floor(now, HOUR) - span + HOUR
    return uptime.floor(now, DAY) - span + DAY


def _state(e: EndpointData, min_locations: int = 1) -> str:
    """Down takes as many failed checks in a row as the alerter's failure_threshold, so the page and
    the alerts agree; fewer (a blip, or a failure still being confirmed) is degraded, as is a successful
    check that meets one of the endpoint's `degraded` conditions, or behaviour the detector finds unusual
    for this endpoint. Probed from several locations, it is down when `min_locations` of them are
    (as the alerter decides), and degraded when some location is not up."""
    if any(w.active for w in e.maintenance):
        return "maintenance"
    if e.last_at is None:
        return "unknown"
    if e.locations:
        if sum(s == "down" for s in e.locations.values()) >= min_locations:
            return "down"
        if any(s != "up" for s in e.locations.values()):
            return "degraded"
    elif e.last_error is not None:
        return "down" if e.failing else "degraded"
    return "degraded" if e.degraded_by or e.unusual else "up"


async def _latest(conn: AsyncConnection, by_id: dict[int, EndpointData], threshold: int,
                  degraded: dict[str, list[Assertion]], now: dt.datetime) -> dict[int, list[str]]:
    """The newest `threshold` checks per endpoint (one index probe each, newest first on the primary key), and
    whether the newest one meets one of the endpoint's `degraded` conditions. Returns the locations those
    checks came from, per endpoint."""
    cur = await conn.execute(
        """SELECT e.id, max(r.time), (array_agg(r.ok ORDER BY r.time DESC))[1],
                  (array_agg(r.error ORDER BY r.time DESC))[1], count(*) FILTER (WHERE NOT r.ok),
                  (array_agg(r.status_code ORDER BY r.time DESC))[1], (array_agg(r.latency_ms ORDER BY r.time DESC))[1],
                  (array_agg(r.cert_not_after ORDER BY r.time DESC))[1], array_agg(DISTINCT r.location)
           FROM unnest(%s::integer[]) AS e(id)
           CROSS JOIN LATERAL (SELECT time, ok, coalesce(error, error_kind, 'failed') AS error, status_code,
                                      latency_ms, cert_not_after, location FROM probe_results p
                               WHERE p.endpoint_id = e.id AND p.error_kind IS DISTINCT FROM 'skipped'
                               ORDER BY p.time DESC LIMIT %s) r
           GROUP BY e.id""", (list(by_id), threshold))
    located: dict[int, list[str]] = {}
    for i, at, ok, error, failed, status, latency, cert, locations in await cur.fetchall():
        located[i] = locations
        e = by_id[i]
        e.last_at, e.last_error, e.failing = at, None if ok else error, failed >= threshold
        if ok and e.name in degraded:
            seen = Observed(now=now, status_code=status, latency_ms=latency, cert_not_after=cert)
            met = [r for r in (check(c, seen) for c in degraded[e.name]) if r.ok]
            e.degraded_by = f"{met[0].assertion} (was {met[0].actual})" if met else None
    return located


async def _per_location(conn: AsyncConnection, by_id: dict[int, EndpointData], seen: dict[int, list[str]],
                        threshold: int, now: dt.datetime) -> None:
    """Each location's state, for endpoints probed from more than one in the last LOCATIONS_RECENT (the
    per-minute rollups say which; the newest checks add a location the rollup has not reached yet).
    One location, the common case, costs the rollup lookup only."""
    cur = await conn.execute(
        "SELECT endpoint_id, array_agg(DISTINCT location) FROM probe_rollup_1m"
        " WHERE bucket >= %s AND endpoint_id = ANY(%s::integer[]) GROUP BY endpoint_id",
        (now - LOCATIONS_RECENT, list(by_id)))
    rolled: dict[int, list[str]] = dict(await cur.fetchall())
    pairs = []
    for i in by_id:
        locations = sorted(set(rolled.get(i, ())) | set(seen.get(i, ())))
        if len(locations) > 1:
            pairs += [(i, loc) for loc in locations]
    if not pairs:
        return
    cur = await conn.execute(
        """SELECT l.id, l.location, (array_agg(r.ok ORDER BY r.time DESC))[1], count(*) FILTER (WHERE NOT r.ok)
           FROM unnest(%s::integer[], %s::text[]) AS l(id, location)
           CROSS JOIN LATERAL (SELECT time, ok FROM probe_results p
                               WHERE p.endpoint_id = l.id AND p.location = l.location AND p.time >= %s
                                 AND p.error_kind IS DISTINCT FROM 'skipped'
                               ORDER BY p.time DESC LIMIT %s) r
           GROUP BY l.id, l.location""",
        ([i for i, _ in pairs], [loc for _, loc in pairs], now - LOCATIONS_RECENT, threshold))
    for i, location, ok, failed in await cur.fetchall():
        by_id[i].locations[location or "(none)"] = "up" if ok else "down" if failed >= threshold else "degraded"


async def _incidents(conn: AsyncConnection, by_id: dict[int, EndpointData], now: dt.datetime) -> None:
    cur = await conn.execute(
        "SELECT endpoint_id, started_at, ended_at, severity, reason FROM incidents"
        " WHERE endpoint_id = ANY(%s::integer[]) AND ended_at >= %s ORDER BY ended_at DESC",
        (list(by_id), now - RECENT))
    for i, started, ended, severity, reason in await cur.fetchall():
        by_id[i].incidents.append(Incident(started, ended, severity, reason, active=ended >= now - ACTIVE_FOR))


async def _maintenance(conn: AsyncConnection, out: dict[str, EndpointData], config: Config, now: dt.datetime) -> None:
    """Active and upcoming windows (next 7 days) from the config and from silences added at run time."""
    windows = [maintenance.from_config(m) for m in config.alerting.maintenance] + await maintenance.load(conn)
    tags = {e.name: e.tags for e in config.endpoints}
    for name, e in out.items():
        for w in windows:
            if not w.applies(name, tags.get(name, ())):
                continue
            upcoming = w.starts_at is not None and now < w.starts_at < now + RECENT
            if w.active(now) or upcoming:
                e.maintenance.append(Window(w.name, w.starts_at, w.ends_at, w.active(now)))
