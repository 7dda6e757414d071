"""The endpoints table mirrors the config: upserted by name, removed ones disabled (history stays)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from upwatch.config.endpoints import Endpoint

logger = logging.getLogger(__name__)

SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"})
MASK = "***"


@dataclass
class SyncReport:
    ids: dict[str, int] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)


def stored_config(endpoint: Endpoint) -> dict[str, Any]:
    """The endpoint's settings as stored in the database: secrets masked, since Grafana can read it."""
    data = endpoint.model_dump(mode="json", by_alias=True, exclude={"name", "kind", "tags", "enabled"})
    data["headers"] = {k: (MASK if k.lower() in SENSITIVE_HEADERS else v) for k, v in endpoint.headers.items()}
    if endpoint.auth is not None:
        data["auth"] = MASK
    return data


async def sync_endpoints(conn: AsyncConnection, endpoints: list[Endpoint]) -> SyncReport:
    """Upsert every configured endpoint by name and disable the ones no longer configured."""
    report = SyncReport()
    async with conn.transaction():
        for endpoint in endpoints:
            cur = await conn.execute(
                """
                INSERT INTO endpoints AS e (name, kind, target, config, tags, enabled)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (name) DO UPDATE
                    SET kind = excluded.kind, target = excluded.target, config = excluded.config,
                        tags = excluded.tags, enabled = excluded.enabled, updated_at = now()
                    WHERE (e.kind, e.target, e.config, e.tags, e.enabled)
                          IS DISTINCT FROM (excluded.kind, excluded.target, excluded.config, excluded.tags, excluded.enabled)
                RETURNING id, (xmax = 0) AS inserted
                """,
                (endpoint.name, endpoint.kind, endpoint.target, Jsonb(stored_config(endpoint)),
                 list(endpoint.tags), endpoint.enabled),
            )
            row = await cur.fetchone()
            if row is None:  # unchanged: the conditional update touched nothing
                cur = await conn.execute("SELECT id FROM endpoints WHERE name = %s", (endpoint.name,))
                found = await cur.fetchone()
                assert found is not None
                report.ids[endpoint.name] = found[0]
                continue
            report.ids[endpoint.name] = row[0]
            (report.added if row[1] else report.changed).append(endpoint.name)
        cur = await conn.execute(
            "UPDATE endpoints SET enabled = false, updated_at = now()"
            " WHERE enabled AND NOT (name = ANY(%s)) RETURNING name",
            ([e.name for e in endpoints],),
        )
        report.disabled = [r[0] for r in await cur.fetchall()]
    logger.info("endpoints synced added=%d changed=%d disabled=%d total=%d",
                len(report.added), len(report.changed), len(report.disabled), len(endpoints))
    return report
