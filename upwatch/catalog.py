"""The endpoints table mirrors the config: upserted by name, removed ones disabled (history stays).

A sync writes only what differs, in one COPY and one upsert, so its cost follows
the number of changed endpoints rather than the size of the file: the first
sync compares the config with the table, later ones (given the previous
report) compare it with what that sync wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from upwatch.masking import MASK, SENSITIVE_HEADERS, Masking, masking

__all__ = ["MASK", "SENSITIVE_HEADERS", "SyncReport", "stored_config", "stored_target", "sync_endpoints"]

logger = logging.getLogger(__name__)

_BUILT_IN = masking()

_INCOMING = "endpoints_incoming"
_UPSERT = """
    INSERT INTO endpoints AS e (name, kind, target, config, tags, enabled)
    SELECT name, kind, target, config, tags, enabled FROM endpoints_incoming
    ON CONFLICT (name) DO UPDATE
        SET kind = excluded.kind, target = excluded.target, config = excluded.config,
            tags = excluded.tags, enabled = excluded.enabled, updated_at = now()
        WHERE (e.kind, e.target, e.config, e.tags, e.enabled)
              IS DISTINCT FROM (excluded.kind, excluded.target, excluded.config, excluded.tags, excluded.enabled)
    RETURNING name, id, (xmax = 0) AS inserted
"""


class Entry(Protocol):
    """What the catalog keeps of an endpoint; upwatch.config's Endpoint is one (this module, on the
    ground floor, does not import the config)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def target(self) -> str: ...

    @property
    def tags(self) -> Sequence[str]: ...

    @property
    def enabled(self) -> bool: ...

    def stored(self, masks: Masking) -> dict[str, Any]:
        """Its settings as the endpoints table keeps them: secrets masked, deterministic."""
        ...


@dataclass
class SyncReport:
    ids: dict[str, int] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    endpoints: dict[str, Entry] = field(default_factory=dict)  # as written by this sync


def stored_config(endpoint: Entry, masks: Masking = _BUILT_IN) -> dict[str, Any]:
    """The endpoint's settings as stored in the database: secrets masked by the push API's rules
    (upwatch.masking), since Grafana's read-only role can read them. Deterministic, so an unchanged
    endpoint compares equal to its row and is not rewritten."""
    return endpoint.stored(masks)


def stored_target(endpoint: Entry, masks: Masking = _BUILT_IN) -> str:
    """endpoints.target: what the check points at, with a URL's secrets masked."""
    return masks.url(endpoint.target) or ""


def _row(endpoint: Entry, masks: Masking) -> tuple[str, str, str, dict[str, Any], list[str], bool]:
    config = stored_config(endpoint, masks)
    return endpoint.name, endpoint.kind, stored_target(endpoint, masks), config, list(endpoint.tags), endpoint.enabled


async def sync_endpoints(conn: AsyncConnection, endpoints: Sequence[Entry],
                         since: SyncReport | None = None, masks: Masking = _BUILT_IN) -> SyncReport:
    """Upsert the configured endpoints that differ from the table and disable the ones no longer
    configured. `since`: the report of this process's previous sync, so unchanged endpoints are
    not even compared with the table. `masks`: what is masked in the stored rows (the built-in
    rules plus push.sensitive_headers / push.secret_names)."""
    report = SyncReport(endpoints={e.name: e for e in endpoints})
    async with conn.transaction():
        if since is None:
            todo, gone = await _differences(conn, endpoints, report, masks)
        else:
            todo = [_row(e, masks) for e in endpoints
                    if e.name not in since.ids or not _same(since.endpoints.get(e.name), e)]
            report.ids = {e.name: since.ids[e.name] for e in endpoints if e.name in since.ids}
            gone = [n for n, e in since.endpoints.items() if n not in report.endpoints and e.enabled]
        if todo:
            await _upsert(conn, todo, report)
        if gone:
            cur = await conn.execute("UPDATE endpoints SET enabled = false, updated_at = now()"
                                     " WHERE enabled AND name = ANY(%s) RETURNING name", (gone,))
            found = {r[0] for r in await cur.fetchall()}
            report.disabled = [n for n in gone if n in found]
    order = {e.name: i for i, e in enumerate(endpoints)}
    report.added.sort(key=order.__getitem__)
    report.changed.sort(key=order.__getitem__)
    logger.info("endpoints synced added=%d changed=%d disabled=%d total=%d",
                len(report.added), len(report.changed), len(report.disabled), len(endpoints))
    return report


def _same(old: Entry | None, new: Entry) -> bool:
    return old is new or old == new  # `is`: a reload reuses unchanged Endpoints (EndpointCache)


async def _differences(conn: AsyncConnection, endpoints: Sequence[Entry],
                       report: SyncReport, masks: Masking) -> tuple[list[tuple[Any, ...]], list[str]]:
    """(rows to upsert, enabled names to disable), from the whole table; fills report.ids."""
    cur = await conn.execute("SELECT name, id, kind, target, config, tags, enabled FROM endpoints")
    stored = {r[0]: r for r in await cur.fetchall()}
    todo = []
    for endpoint in endpoints:
        row, old = _row(endpoint, masks), stored.get(endpoint.name)
        if old is not None:
            report.ids[endpoint.name] = old[1]
        if old is None or (old[2], old[3], old[4], old[5], old[6]) != row[1:]:
            todo.append(row)
    gone = [name for name, r in stored.items() if r[6] and name not in report.endpoints]
    return todo, gone


async def _upsert(conn: AsyncConnection, rows: list[tuple[Any, ...]], report: SyncReport) -> None:
    await conn.execute(f"CREATE TEMP TABLE {_INCOMING} (name text, kind text, target text, config jsonb,"
                       " tags text[], enabled boolean) ON COMMIT DROP")
    async with conn.cursor().copy(f"COPY {_INCOMING} FROM STDIN") as copy:
        for name, kind, target, config, tags, enabled in rows:
            await copy.write_row((name, kind, target, Jsonb(config), tags, enabled))
    cur = await conn.execute(_UPSERT)
    for name, endpoint_id, inserted in await cur.fetchall():
        report.ids[name] = endpoint_id
        (report.added if inserted else report.changed).append(name)
    missing = [r[0] for r in rows if r[0] not in report.ids]  # unchanged after all, or added meanwhile
    if missing:
        cur = await conn.execute("SELECT name, id FROM endpoints WHERE name = ANY(%s)", (missing,))
        report.ids.update({name: endpoint_id for name, endpoint_id in await cur.fetchall()})
