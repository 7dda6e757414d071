"""Which threshold rules there are and which are due: the config's (read-only) plus those created
over the API (table alert_rules), read every round so a new or changed rule needs no restart.

A rule is also due, between rule_interval rounds, as soon as it is new or changed, and a rule over
pushed logs as soon as its service's logs are committed: `Watch` follows request_logs.id, so a
push batch is judged in the alerter's next round (evaluate_interval, 1 s).
"""

from __future__ import annotations

import logging

from psycopg import AsyncConnection
from pydantic import ValidationError

from upwatch.config.alerting import Alerting, Rule

logger = logging.getLogger(__name__)


async def load(conn: AsyncConnection, alerting: Alerting) -> list[Rule]:
    """The config's rules, then the API's; an API rule never shadows a config rule of the same name."""
    cur = await conn.execute("SELECT name, rule, endpoint, service, severity FROM alert_rules ORDER BY name")
    taken = {r.name for r in alerting.rules}
    out = list(alerting.rules)
    for name, rule, endpoint, service, severity in await cur.fetchall():
        if name in taken:
            logger.warning("alert rule skipped name=%s reason=%r", name, "a rule in the config has this name")
            continue
        try:
            out.append(Rule.model_validate({"name": name, "rule": rule, "endpoint": endpoint, "service": service,
                                            "severity": severity}))
        except ValidationError as e:  # written by an older version with other rules: skip it, say why
            logger.warning("alert rule skipped name=%s error=%r", name, str(e).splitlines()[-1])
    return out


Identity = tuple[str, str, str | None, str | None, str]


class Watch:
    """What changed since the last committed round: rules new or changed, and services with newly
    committed logs. `due` looks, `commit` moves on once the round's transaction has committed, so a
    round that fails is looked at again."""

    def __init__(self) -> None:
        self.last_id: int | None = None
        self.known: set[Identity] = set()
        self._next: tuple[int | None, set[Identity]] | None = None

    async def _fresh(self, conn: AsyncConnection) -> tuple[int, set[str]]:
        """The newest log id and the services with logs past `last_id` (none before a first look)."""
        if self.last_id is None:
            cur = await conn.execute("SELECT coalesce(max(id), 0) FROM request_logs")
            row = await cur.fetchone()
            return (int(row[0]) if row else 0), set()
        cur = await conn.execute(
            "SELECT s.name, max(l.id) FROM request_logs l JOIN services s ON s.id = l.service_id"
            " WHERE l.id > %s GROUP BY s.name", (self.last_id,))
        seen = await cur.fetchall()
        return max([self.last_id, *(int(r[1]) for r in seen)]), {str(r[0]) for r in seen}

    async def due(self, conn: AsyncConnection, rules: list[Rule], every: bool) -> list[Rule]:
        """All rules on a rule_interval round; otherwise the new or changed ones and those over services
        with fresh logs."""
        now = {r.name: (r.name, r.rule, r.endpoint, r.service, r.severity) for r in rules}
        last_id, fresh = await self._fresh(conn) if any(r.service for r in rules) else (self.last_id, set())
        self._next = (last_id, set(now.values()))
        if every:
            return rules
        return [r for r in rules if now[r.name] not in self.known or (r.service is not None and r.service in fresh)]

    def commit(self) -> None:
        """The round that called `due` has committed."""
        if self._next is not None:
            self.last_id, self.known = self._next
            self._next = None
