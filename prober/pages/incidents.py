"""Incidents on the status pages: posted by operators (status_incidents, sql/0140) and, where a page
asks for them, the alerter's DOWN alerts that are firing now (alert_state), so an outage shows up
before anyone writes about it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from psycopg import AsyncConnection
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

State = Literal["investigating", "identified", "monitoring", "resolved"]
STATES: tuple[State, ...] = ("investigating", "identified", "monitoring", "resolved")
RECENT = dt.timedelta(days=7)  # resolved incidents stay on the page this long


def _no_nul(text: str) -> str:
    # PostgreSQL text cannot hold U+0000: refused here as a 400 naming the field, not a database error.
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (U+0000)")
    return text


# The pattern says the same in the OpenAPI document (prober/pages/openapi.py); the validator gives the message.
Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": "^[^\\x00]*$"})]


class NewIncident(BaseModel):
    """The body of POST /api/status/v1/incidents."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    title: Text = Field(min_length=1, max_length=200)
    message: Text = Field(min_length=1, max_length=5000)
    endpoints: list[str] = Field(default_factory=list, max_length=1000)  # none: every page
    state: State = "investigating"


class NewUpdate(BaseModel):
    """The body of POST /api/status/v1/incidents/{id}/updates; without `state` the incident keeps its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    message: Text = Field(min_length=1, max_length=5000)
    state: State | None = None


@dataclass(frozen=True)
class Update:
    at: dt.datetime
    state: str
    message: str


@dataclass
class Notice:
    """An incident as a page shows it. `id` is None for one that comes from the alerter."""

    id: int | None
    title: str
    state: str
    source: Literal["operator", "alerter"]
    started_at: dt.datetime
    resolved_at: dt.datetime | None
    endpoints: tuple[str, ...]  # none: it concerns every page
    updates: list[Update] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.resolved_at is None

    def concerns(self, names: Sequence[str]) -> bool:
        return not self.endpoints or bool(set(self.endpoints) & set(names))


async def create(conn: AsyncConnection, title: str, message: str, endpoints: Sequence[str],
                 state: State = "investigating") -> int:
    """Post an incident with its first update; returns its id."""
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO status_incidents (title, endpoints, state, resolved_at)"
            " VALUES (%s, %s, %s, CASE WHEN %s = 'resolved' THEN now() END) RETURNING id",
            (title, list(endpoints), state, state))
        row = await cur.fetchone()
        if row is None:  # INSERT ... RETURNING always returns its row
            raise RuntimeError("INSERT into status_incidents returned no id")
        await conn.execute("INSERT INTO status_incident_updates (incident_id, state, message) VALUES (%s, %s, %s)",
                           (row[0], state, message))
    return int(row[0])


async def update(conn: AsyncConnection, incident_id: int, message: str, state: State | None = None) -> bool:
    """Add an update (moving the incident to `state`, or keeping its state); False if there is no such incident."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE status_incidents SET state = coalesce(%s, state),"
            " resolved_at = CASE WHEN coalesce(%s, state) = 'resolved' THEN coalesce(resolved_at, now()) END"
            " WHERE id = %s RETURNING state", (state, state, incident_id))
        row = await cur.fetchone()
        if row is None:
            return False
        await conn.execute("INSERT INTO status_incident_updates (incident_id, state, message) VALUES (%s, %s, %s)",
                           (incident_id, row[0], message))
    return True


async def recent(conn: AsyncConnection, now: dt.datetime, *, alerts: bool) -> list[Notice]:
    """Open incidents and those resolved in the last RECENT, newest first; with `alerts`, firing DOWN alerts too."""
    cur = await conn.execute(
        "SELECT i.id, i.title, i.state, i.created_at, i.resolved_at, i.endpoints,"
        "       coalesce(array_agg(u.at ORDER BY u.at DESC) FILTER (WHERE u.id IS NOT NULL), '{}'),"
        "       coalesce(array_agg(u.state ORDER BY u.at DESC) FILTER (WHERE u.id IS NOT NULL), '{}'),"
        "       coalesce(array_agg(u.message ORDER BY u.at DESC) FILTER (WHERE u.id IS NOT NULL), '{}')"
        " FROM status_incidents i LEFT JOIN status_incident_updates u ON u.incident_id = i.id"
        " WHERE i.resolved_at IS NULL OR i.resolved_at >= %s GROUP BY i.id ORDER BY i.created_at DESC",
        (now - RECENT,))
    notices = [Notice(i, title, state, "operator", created, resolved, tuple(names),
                      [Update(*u) for u in zip(ats, states, messages, strict=True)])
               for i, title, state, created, resolved, names, ats, states, messages in await cur.fetchall()]
    if alerts:
        notices += await _firing(conn)
    return sorted(notices, key=lambda n: (not n.active, -n.started_at.timestamp()))


def _detected(error: str) -> str:
    return f"Detected by upwatch: {error}" if error else "Detected by upwatch"


async def _firing(conn: AsyncConnection) -> list[Notice]:
    """The alerter's DOWN alerts that are firing: one incident per endpoint, since its first failure."""
    cur = await conn.execute(
        "SELECT e.name, s.since, coalesce(s.last_error, '') FROM alert_state s JOIN endpoints e ON e.id = s.endpoint_id"
        " WHERE s.kind = 'down' AND s.status = 'firing' AND s.since IS NOT NULL ORDER BY s.since DESC")
    return [Notice(None, f"{name} is down", "investigating", "alerter", since, None, (name,),
                   [Update(since, "investigating", _detected(error))])
            for name, since, error in await cur.fetchall()]
