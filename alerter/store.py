"""alert_state rows <-> policy State: what is firing and what was told survives restarts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from alerter.policy import Location, State
from alerter.records import Payload, ResultSummary


@dataclass
class Tracked:
    """One fingerprint's persisted state plus the details the next message needs."""

    fingerprint: str
    kind: str
    endpoint_id: int | None = None
    state: State = field(default_factory=State)
    about: Payload = field(default_factory=Payload)  # what its messages are about (details.payload in alert_state)
    recent: tuple[ResultSummary, ...] = ()  # the last results, for the next message (details.recent)
    details: dict[str, Any] = field(default_factory=dict)  # the rest of alert_state.details
    reason: str = ""
    last_result_at: datetime | None = None
    changed: bool = False
    ticked: bool = False  # already had an event this cycle

    def locations(self) -> dict[str, Location]:
        return {name: Location(v.get("failures", 0), v.get("successes", 0), v.get("down", False))
                for name, v in self.details.get("locations", {}).items()}

    def set_location(self, name: str, loc: Location) -> None:
        self.details.setdefault("locations", {})[name] = {"failures": loc.failures, "successes": loc.successes,
                                                          "down": loc.down}
        self.changed = True


_SELECT = ("SELECT fingerprint, kind, endpoint_id, status, since, last_sent_at, suppressed_count, last_error,"
           " details, last_result_at, acked_at FROM alert_state")


def _tracked(row: tuple[Any, ...]) -> Tracked:
    details = dict(row[8] or {})
    state = State(firing=row[3] == "firing", since=row[4], announced=bool(details.get("announced")),
                  last_sent_at=row[5], suppressed=row[6], acked=row[3] == "firing" and row[10] is not None)
    about = details.pop("payload", None)
    recent = details.pop("recent", None)
    return Tracked(row[0], row[1], row[2], state,
                   Payload.from_json(about) if isinstance(about, dict) else Payload(),
                   tuple(ResultSummary.from_json(r) for r in recent if isinstance(r, dict))
                   if isinstance(recent, list) else (),
                   details, row[7] or "", row[9])


async def load(conn: AsyncConnection, fingerprints: Iterable[str]) -> dict[str, Tracked]:
    """The given fingerprints plus every firing one (those need reminder ticks)."""
    cur = await conn.execute(_SELECT + " WHERE status = 'firing' OR fingerprint = ANY(%s)", (list(fingerprints),))
    return {row[0]: _tracked(row) for row in await cur.fetchall()}


async def save(conn: AsyncConnection, tracked: Iterable[Tracked]) -> int:
    """Upsert the changed ones; returns how many were written."""
    rows = []
    for t in tracked:
        if not t.changed:
            continue
        locs = t.locations().values()
        details = dict(t.details, announced=t.state.announced, payload=t.about.to_json(),
                       recent=[r.to_json() for r in t.recent])
        rows.append((t.fingerprint, t.kind, t.endpoint_id, "firing" if t.state.firing else "ok",
                     max((loc.failures for loc in locs), default=0), max((loc.successes for loc in locs), default=0),
                     t.last_result_at, t.state.since, t.state.last_sent_at, t.state.suppressed, t.reason or None,
                     Jsonb(details)))
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO alert_state AS s (fingerprint, kind, endpoint_id, status, consecutive_failures,"
                " consecutive_successes, last_result_at, since, last_sent_at, suppressed_count, last_error, details)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status,"
                " consecutive_failures = excluded.consecutive_failures,"
                " consecutive_successes = excluded.consecutive_successes, last_result_at = excluded.last_result_at,"
                " since = excluded.since, last_sent_at = excluded.last_sent_at,"
                " suppressed_count = excluded.suppressed_count, last_error = excluded.last_error,"
                " details = excluded.details, updated_at = now(),"
                # An ack (written by the API at any time, so never from `t.state`) holds while the same firing goes on.
                " acked_at = CASE WHEN s.status = 'firing' AND excluded.status = 'firing'"
                "                 AND s.since IS NOT DISTINCT FROM excluded.since THEN s.acked_at END,"
                " acked_by = CASE WHEN s.status = 'firing' AND excluded.status = 'firing'"
                "                 AND s.since IS NOT DISTINCT FROM excluded.since THEN s.acked_by END", rows)
    return len(rows)
