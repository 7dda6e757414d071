"""One evaluation round: read the sources, run the policy, and write state, cursors and
outbox rows in one transaction, so a crash at any point either keeps all of it or none.

Only one alerter evaluates at a time (a transaction-scoped advisory lock); a second
copy skips the round, so the same result is never judged twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from alerter import outbox, rules, sources, store
from alerter.decide import Cycle, dependency_order
from upwatch import maintenance
from upwatch.config.alerting import Alerting, Rule

logger = logging.getLogger(__name__)

EVAL_LOCK = 0x7570_616C_6572_74  # "upalert"


@dataclass(frozen=True)
class Report:
    skipped: bool = False
    results: int = 0
    incidents: int = 0
    alerts: int = 0


async def run_once(pool: AsyncConnectionPool, alerting: Alerting, rules_due: bool = True,
                   watch: rules.Watch | None = None) -> Report:
    """Evaluate everything new once (every rule when `rules_due`, else those `watch` says changed or have
    fresh logs); database errors propagate to the caller, which retries."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s), now()", (EVAL_LOCK,))
        row = await cur.fetchone()
        if row is None or not row[0]:
            return Report(skipped=True)
        report = await _evaluate(conn, alerting, rules_due, row[1], watch)
    if watch is not None:
        watch.commit()
    return report


async def _evaluate(conn: AsyncConnection, alerting: Alerting, rules_due: bool, now: datetime,
                    watch: rules.Watch | None) -> Report:
    endpoints = await sources.endpoints(conn)
    results = await sources.new_results(conn)
    incidents = await sources.incidents(conn)
    windows = [maintenance.from_config(m) for m in alerting.maintenance] + await maintenance.load(conn)
    wanted = [f"{k}:{endpoints[i].name}" for i in results for k in ("down", "cert")]
    every_rule = await rules.load(conn, alerting)
    due = (every_rule if rules_due else []) if watch is None else await watch.due(conn, every_rule, rules_due)
    wanted += [f"anomaly:{i.series}" for i in incidents] + [f"rule:{r.name}" for r in due]
    tracked = await store.load(conn, wanted)
    cycle = Cycle(alerting, now, endpoints, windows, tracked, {r.name for r in every_rule})
    for endpoint_id in dependency_order(endpoints, list(results)):
        cycle.results(endpoints[endpoint_id], results[endpoint_id])
    for incident in incidents:
        cycle.incident(incident)
    await _anomalies_over(conn, cycle)
    for rule in due:
        cycle.rule(rule, await sources.rule_value(conn, rule))
    cycle.ticks()
    await store.save(conn, cycle.tracked.values())
    await outbox.enqueue(conn, cycle.rows)
    await _fold(conn, cycle.folds)
    await _rule_history(conn, cycle.firings)
    await sources.save_cursors(conn, results)
    await sources.save_incident_watermark(conn, incidents)
    report = Report(False, sum(len(r) for r in results.values()), len(incidents), len(cycle.rows))
    if cycle.rows:
        logger.info("alerts decided results=%d incidents=%d alerts=%d", report.results, report.incidents,
                    report.alerts)
    return report


async def _anomalies_over(conn: AsyncConnection, cycle: Cycle) -> None:
    firing = {t.fingerprint.removeprefix("anomaly:"): t for t in cycle.tracked.values()
              if t.kind == "anomaly" and t.state.firing}
    for series, progress in (await sources.progress(conn, list(firing))).items():
        cycle.anomaly_over(firing[series], progress)


async def _fold(conn: AsyncConnection, folds: list[tuple[str, str]]) -> None:
    """Name each folded child in its parent's DOWN message while that is still waiting to go out
    (not once tried: a retry must be the same message, or dropping duplicates would drop news)."""
    for parent, child in folds:
        await conn.execute(
            "UPDATE alerts SET payload = jsonb_set(payload, '{folded}',"
            " coalesce(payload->'folded', '[]'::jsonb) || to_jsonb(%s::text))"
            " WHERE fingerprint = %s AND event = 'firing' AND state = 'pending' AND message_id IS NULL"
            " AND NOT coalesce(payload->'folded', '[]'::jsonb) ? %s", (child, f"down:{parent}", child))


async def _rule_history(conn: AsyncConnection, firings: list[tuple[str, Rule, float | None]]) -> None:
    for action, rule, value in firings:
        name, condition = rule.name, rule.rule
        if action == "fire":
            await conn.execute(
                "INSERT INTO alert_rule_firings (rule, condition, fired_at, first_value, peak_value, last_value)"
                " VALUES (%s, %s, now(), %s, %s, %s) ON CONFLICT DO NOTHING", (name, condition, value, value, value))
        elif action == "resolve":
            await conn.execute("UPDATE alert_rule_firings SET resolved_at = now(), last_value = %s"
                               " WHERE rule = %s AND resolved_at IS NULL", (value, name))
        else:
            await conn.execute("UPDATE alert_rule_firings SET last_value = %s, peak_value = greatest(peak_value, %s)"
                               " WHERE rule = %s AND resolved_at IS NULL", (value, value, name))
