"""Threshold rules and alerts over the API (admin token): `/rules` CRUD, `/alerts` list and ack.

Rules created here live in alert_rules; the alerter reads them every round, so they need no restart.
Rules from the config (`alerting.rules` in upwatch.yaml) are shown with `source: config` and are
read-only here (409): the file stays their one source, and a rule here never takes their names.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Literal

from aiohttp import web
from psycopg import AsyncConnection, sql
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from push.bodies import Refusal
from push.context import reply
from push.keys import DB_TIMEOUT_S
from push.operations import ADMIN, NO_BODY, NO_QUERY, Admin, Call, Operation, json_body, operation, query_model
from upwatch.config.alerting import EXAMPLES, Rule, parse_condition

logger = logging.getLogger(__name__)

RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # fullmatch; a path segment, like a service name
_TEXT = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
Subject = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=_TEXT)]


class RuleFields(BaseModel):
    """What a rule says: `rule` over one endpoint's probe results or one service's pushed logs."""

    model_config = ConfigDict(extra="forbid")

    rule: Annotated[StrictStr, Field(min_length=1, max_length=500, pattern=_TEXT,
                                     description=f"<metric> <op> <value> over <window>, like {EXAMPLES}")]
    endpoint: Subject | None = None
    service: Subject | None = None
    severity: Literal["medium", "high", "critical"] = "high"

    @field_validator("rule")
    @classmethod
    def _rule(cls, value: str) -> str:
        parse_condition(value)  # ValueError naming the rule and the grammar: 422 naming `rule`
        return value


class RuleIn(RuleFields):
    """A rule to create."""

    name: Annotated[StrictStr, Field(json_schema_extra={"pattern": f"^{RULE_NAME.pattern}$"})]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RULE_NAME.fullmatch(value):
            raise ValueError("must be 1-100 letters, digits, '.', '_' or '-'")
        return value


class AlertQuery(BaseModel):
    """The query of GET /alerts; other parameters are ignored."""

    model_config = ConfigDict(extra="ignore")

    status: Annotated[Literal["firing", "ok", "all"], Field(description="firing (default), ok or all")] = "firing"
    kind: Literal["down", "anomaly", "cert", "rule"] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class AckIn(BaseModel):
    """Who acknowledges (shown in GET /alerts); optional."""

    model_config = ConfigDict(extra="forbid")

    by: Annotated[StrictStr, Field(max_length=200, pattern=_TEXT)] = ""


def _config_rule(rule: Rule) -> dict[str, Any]:
    return {"name": rule.name, "rule": rule.rule, "endpoint": rule.endpoint, "service": rule.service,
            "severity": rule.severity, "source": "config", "created_at": None, "updated_at": None}


def _api_rule(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"name": row[0], "rule": row[1], "endpoint": row[2], "service": row[3], "severity": row[4],
            "source": "api", "created_at": row[5], "updated_at": row[6]}


def _config_rules(call: Call[Any, Any, Any]) -> dict[str, Rule]:
    return {r.name: r for r in call.context.runtime.config.alerting.rules}


def _read_only(name: str) -> Refusal:
    return Refusal(409, f"rule {name!r} comes from the config file (alerting.rules) and is read-only over the"
                        " API; change it in the file", [{"field": "source", "reason": "config"}])


async def _subject_problem(conn: AsyncConnection, fields: RuleFields) -> Refusal | None:
    """Exactly one of endpoint and service, and one that exists (a rule over nothing never fires)."""
    if (fields.endpoint is None) == (fields.service is None):
        field = "endpoint" if fields.endpoint is None else "service"
        return Refusal(422, "invalid request body", [{"field": field, "reason": "set endpoint (probe results) or"
                                                      " service (pushed request logs), exactly one"}])
    table, field, name = (("endpoints", "endpoint", fields.endpoint) if fields.endpoint is not None
                          else ("services", "service", fields.service))
    cur = await conn.execute(sql.SQL("SELECT 1 FROM {} WHERE name = %s").format(sql.Identifier(table)), (name,))
    if await cur.fetchone() is None:
        return Refusal(422, "invalid request body", [{"field": field, "reason": f"no {field} named {name!r}"}])
    return None


async def list_rules(call: Call[Admin, None, None]) -> web.Response:
    """GET /rules: the config's rules (source config), then the API's (source api)."""
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = await conn.execute("SELECT name, rule, endpoint, service, severity, created_at, updated_at"
                                 " FROM alert_rules ORDER BY name")
        rows = await cur.fetchall()
    config = _config_rules(call)
    return reply({"items": [_config_rule(r) for r in config.values()]
                  + [_api_rule(r) for r in rows if r[0] not in config]})


async def create_rule(call: Call[Admin, RuleIn, None]) -> web.Response:
    """POST /rules: 201, or 409 when the name is taken (by the config or the API)."""
    body = call.body
    if body.name in _config_rules(call):
        return Refusal(409, f"rule {body.name!r} exists in the config file (alerting.rules)").response()
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        problem = await _subject_problem(conn, body)
        if problem is not None:
            return problem.response()
        cur = await conn.execute(
            "INSERT INTO alert_rules (name, rule, endpoint, service, severity) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (name) DO NOTHING RETURNING name, rule, endpoint, service, severity, created_at, updated_at",
            (body.name, body.rule, body.endpoint, body.service, body.severity))
        row = await cur.fetchone()
    if row is None:
        return Refusal(409, f"rule {body.name!r} exists").response()
    logger.info("alert rule created name=%s rule=%r", body.name, body.rule)
    return reply(_api_rule(row), status=201)


async def get_rule(call: Call[Admin, None, None]) -> web.Response:
    """GET /rules/{name}."""
    name = call.request.match_info["name"]
    config = _config_rules(call)
    if name in config:
        return reply(_config_rule(config[name]))
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = await conn.execute("SELECT name, rule, endpoint, service, severity, created_at, updated_at"
                                 " FROM alert_rules WHERE name = %s", (name,))
        row = await cur.fetchone()
    return reply(_api_rule(row)) if row else Refusal(404, "no such rule").response()


async def replace_rule(call: Call[Admin, RuleFields, None]) -> web.Response:
    """PUT /rules/{name}: the rule's new fields (all of them); 409 for a config rule."""
    name, body = call.request.match_info["name"], call.body
    if name in _config_rules(call):
        return _read_only(name).response()
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        problem = await _subject_problem(conn, body)
        if problem is not None:
            return problem.response()
        cur = await conn.execute(
            "UPDATE alert_rules SET rule = %s, endpoint = %s, service = %s, severity = %s, updated_at = now()"
            " WHERE name = %s RETURNING name, rule, endpoint, service, severity, created_at, updated_at",
            (body.rule, body.endpoint, body.service, body.severity, name))
        row = await cur.fetchone()
    if row is None:
        return Refusal(404, "no such rule").response()
    logger.info("alert rule changed name=%s rule=%r", name, body.rule)
    return reply(_api_rule(row))


async def delete_rule(call: Call[Admin, None, None]) -> web.Response:
    """DELETE /rules/{name}: 409 for a config rule. A firing alert of it stops reminding, with no RESOLVED."""
    name = call.request.match_info["name"]
    if name in _config_rules(call):
        return _read_only(name).response()
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = await conn.execute("DELETE FROM alert_rules WHERE name = %s RETURNING name", (name,))
        row = await cur.fetchone()
    if row is None:
        return Refusal(404, "no such rule").response()
    logger.info("alert rule deleted name=%s", name)
    return reply({"deleted": name})


_ALERT = ("SELECT id, fingerprint, kind, status, details->'payload'->>'endpoint', details->'payload'->>'severity',"
          " last_error, since, last_sent_at, acked_at, acked_by FROM alert_state")


def _alert(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "fingerprint", "kind", "status", "subject", "severity", "reason", "since", "last_sent_at",
            "acked_at", "acked_by")
    return dict(zip(keys, row, strict=True))


async def list_alerts(call: Call[Admin, None, AlertQuery]) -> web.Response:
    """GET /alerts: what the alerter tracks (one entry per fingerprint), firing ones by default, newest first."""
    q = call.query
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = await conn.execute(
            _ALERT + " WHERE (%(status)s = 'all' OR status = %(status)s)"
            " AND (%(kind)s::text IS NULL OR kind = %(kind)s)"
            " ORDER BY since DESC NULLS LAST, id DESC LIMIT %(limit)s",
            {"status": q.status, "kind": q.kind, "limit": q.limit})
        return reply({"items": [_alert(r) for r in await cur.fetchall()]})


async def ack_alert(call: Call[Admin, AckIn, None]) -> web.Response:
    """POST /alerts/{id}/ack: no reminders for this firing until it resolves; 409 when it is not firing."""
    raw = call.request.match_info["id"]
    alert_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else 0  # bigint ids, none is 0
    if alert_id <= 0:
        return Refusal(404, "no such alert").response()
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = await conn.execute(
            "UPDATE alert_state SET acked_at = coalesce(acked_at, now()), acked_by = coalesce(acked_by, %s)"
            " WHERE id = %s AND status = 'firing' RETURNING id", (call.body.by, alert_id))
        if await cur.fetchone() is None:
            cur = await conn.execute("SELECT status FROM alert_state WHERE id = %s", (alert_id,))
            found = await cur.fetchone()
            return (Refusal(404, "no such alert") if found is None
                    else Refusal(409, f"alert {alert_id} is {found[0]}, not firing: nothing to acknowledge")).response()
        cur = await conn.execute(_ALERT + " WHERE id = %s", (alert_id,))
        row = await cur.fetchone()
    logger.info("alert acked id=%d by=%r", alert_id, call.body.by)
    return reply(_alert(row) if row else {"id": alert_id})

_ADMIN = {401: "missing or invalid admin token"}
_BODY = {400: "invalid JSON", 413: "body too large", 415: "unsupported content type",
         422: "invalid fields (a rule that does not parse, no or both of endpoint and service, or one that does"
              " not exist)"}
OPERATIONS: tuple[Operation, ...] = (
    operation("GET", "/rules", list_rules, "List threshold rules (the config's, read-only, and the API's)",
              {200: "rules, each with its source: config or api", **_ADMIN}, auth=ADMIN, body=NO_BODY, query=NO_QUERY),
    operation("POST", "/rules", create_rule, "Create a threshold rule (evaluated without a restart)",
              {201: "created", **_ADMIN, **_BODY, 409: "a rule (in the config or the API) has this name"},
              auth=ADMIN, body=json_body(RuleIn), query=NO_QUERY),
    operation("GET", "/rules/{name}", get_rule, "One threshold rule",
              {200: "the rule", **_ADMIN, 404: "no such rule"}, auth=ADMIN, body=NO_BODY, query=NO_QUERY),
    operation("PUT", "/rules/{name}", replace_rule, "Replace a threshold rule created over the API",
              {200: "replaced", **_ADMIN, **_BODY, 404: "no such rule", 409: "a config rule: read-only over the API"},
              auth=ADMIN, body=json_body(RuleFields), query=NO_QUERY),
    operation("DELETE", "/rules/{name}", delete_rule, "Delete a threshold rule created over the API",
              {200: "deleted", **_ADMIN, 404: "no such rule", 409: "a config rule: read-only over the API"},
              auth=ADMIN, body=NO_BODY, query=NO_QUERY),
    operation("GET", "/alerts", list_alerts, "Alerts the alerter tracks (firing by default), newest first",
              {200: "alerts", **_ADMIN, 422: "invalid query parameters"},
              auth=ADMIN, body=NO_BODY, query=query_model(AlertQuery)),
    operation("POST", "/alerts/{id}/ack", ack_alert, "Acknowledge a firing alert: no reminders until it resolves",
              {200: "acknowledged", **_ADMIN, 400: "invalid JSON", 404: "no such alert", 409: "not firing",
               413: "body too large", 415: "unsupported content type", 422: "invalid fields"},
              auth=ADMIN, body=json_body(AckIn, optional=True), query=NO_QUERY),
)
