"""GET /logs (filters + keyset pagination) and GET /logs/{id}.

Pages are ordered newest first by (time, id) unless `order` says otherwise
(pages.py); the cursor is the last row's (key, id), so rows inserted while a
client pages never shift what it sees next (in the default order new rows
land before its first page).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, field_validator

from push.bodies import DATE_TIME_TEXT, Refusal
from push.context import Context, reply
from push.keys import DB_TIMEOUT_S, Caller
from push.operations import Admin, Call
from push.pages import DEFAULT_ORDER, KEYSETS, Order, decode_cursor, encode_cursor, sort_value

__all__ = ["BadCursor", "LogQuery", "conditions", "decode_cursor", "encode_cursor", "get_log", "list_logs", "search"]

LOG_COLUMNS = ("id", "time", "method", "url", "path", "route", "status_code", "latency_ms", "query_params",
               "request_headers", "request_body", "response_headers", "response_body", "error", "source_ip",
               "user_id", "user_agent", "tags", "ua_browser", "ua_os", "ua_device")
_STATUS = re.compile(r"([1-5])[xX][xX]|([1-5][0-9][0-9])")  # fullmatch; [0-9]: \d takes any Unicode digit
ERROR_CONDITION = "(l.status_code >= 500 OR l.error IS NOT NULL)"
# An address or network as ipaddress reads it, in prefix notation only: "10.0.0.0/255.0.0.0" and scoped
# IPv6 ("fe80::1%eth0") are refused. The pattern lets through more than valid addresses (":::"), which the
# validator then refuses with 422; everything it refuses is outside the pattern.
CLIENT_IP = re.compile(r"[0-9A-Fa-f:.]{2,45}(?:/[0-9]{1,3})?")
# The host of `url`: after the scheme and any (masked) user info, up to a port, path, query or fragment.
URL_HOST = r"lower(substring(l.url from '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?(\[[^]/?#]*\]|[^/?#:]*)'))"
HOSTNAME = re.compile(r"[A-Za-z0-9._~%\[\]:-]{1,255}")



def as_utc(value: datetime | None) -> datetime | None:
    """A time without a zone read as UTC (the API's documented default); aware times as they are."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

class LogQuery(BaseModel):
    """Filters of GET /logs, from the query string."""

    model_config = ConfigDict(extra="forbid")

    service: str | None = None
    method: Annotated[str, Field(max_length=16)] | None = None
    path: Annotated[str, Field(max_length=1024)] | None = None
    route: Annotated[str, Field(max_length=1024)] | None = None
    status: Annotated[str, Field(json_schema_extra={"pattern": f"^(?:{_STATUS.pattern})?$"})] | None = None
    min_latency_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    max_latency_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    has_error: bool | None = None
    tag: Annotated[str, Field(max_length=512)] | None = None
    user_id: Annotated[str, Field(max_length=1024)] | None = None
    client_ip: Annotated[str, Field(json_schema_extra={"pattern": f"^(?:{CLIENT_IP.pattern})?$"})] | None = None
    hostname: Annotated[str, Field(json_schema_extra={"pattern": f"^(?:{HOSTNAME.pattern})?$"})] | None = None
    user_agent: Annotated[str, Field(max_length=1024)] | None = None
    browser: Annotated[str, Field(max_length=200)] | None = None
    os: Annotated[str, Field(max_length=200)] | None = None
    device: Annotated[str, Field(max_length=200)] | None = None
    order: Order = DEFAULT_ORDER
    from_: Annotated[datetime, DATE_TIME_TEXT] | None = Field(default=None, alias="from")
    to: Annotated[datetime, DATE_TIME_TEXT] | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    cursor: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if not value:
            return None  # status= filters nothing, like the other text filters
        if not _STATUS.fullmatch(value):
            raise ValueError("must be a status code like 404 or a class like 5xx")
        return value.lower()

    @field_validator("client_ip")
    @classmethod
    def _client_ip(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            if not CLIENT_IP.fullmatch(value):
                raise ValueError
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError("must be an IP address or a network in prefix notation like 10.0.0.0/8") from None

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not HOSTNAME.fullmatch(value):
            raise ValueError("must be a host name or address as it appears in a URL")
        return value.lower()

    @field_validator("from_", "to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return as_utc(value)


Reader = Caller | Admin  # who may read logs: a service key (its own service) or the admin (any)


async def named_scope(context: Context, caller: Reader, service: str | None) -> tuple[int, str] | Refusal | None:
    """The service (id, name) the caller may read: its key's service, or (admin) the named one or all (None)."""
    if isinstance(caller, Caller):
        if service is not None and service != caller.service:
            return Refusal(403, "this key may only read its own service")
        return caller.service_id, caller.service
    if service is None:
        return None
    async with context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = await conn.execute("SELECT id FROM services WHERE name = %s", (service,))
        row = await cur.fetchone()
    return (int(row[0]), service) if row else Refusal(404, f"no service named {service!r}")


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _status(status: str) -> tuple[str, tuple[int, ...]]:
    """The clause of a validated status filter: a class (5xx) or one code (404)."""
    code_class, code = _STATUS.fullmatch(status).groups()  # type: ignore[union-attr]  # validated by LogQuery
    if code_class:
        low = int(code_class) * 100
        return "l.status_code >= %s AND l.status_code < %s", (low, low + 100)
    return "l.status_code = %s", (int(code),)


def _tag(tag: str) -> tuple[str, tuple[Any, ...]]:
    """`name=value` matches that tag value, a bare `name` any log having the tag."""
    key, eq, value = tag.partition("=")
    return ("l.tags @> %s", (Jsonb({key: value}),)) if eq else ("l.tags ? %s", (key,))


def _filters(q: LogQuery) -> tuple[tuple[str, Any], ...]:
    """(clause, value) of each one-value filter; a filter applies when its value is neither None nor ""."""
    return (
        ("l.method = %s", q.method and q.method.upper()),
        ("l.path ILIKE %s", q.path and _like(q.path)),
        ("l.route = %s", q.route),
        ("l.latency_ms >= %s", q.min_latency_ms),
        ("l.latency_ms <= %s", q.max_latency_ms),
        ("l.user_id = %s", q.user_id),
        ("l.source_ip <<= %s::cidr", q.client_ip),
        (f"{URL_HOST} = %s", q.hostname),
        ("l.user_agent ILIKE %s", q.user_agent and _like(q.user_agent)),
        ("lower(l.ua_browser) = lower(%s)", q.browser),
        ("lower(l.ua_os) = lower(%s)", q.os),
        ("lower(l.ua_device) = lower(%s)", q.device),
        ("l.time >= %s", q.from_),
        ("l.time < %s", q.to),
    )


def conditions(q: LogQuery, service_id: int | None) -> tuple[list[sql.Composable], list[Any]]:
    """WHERE parts and their parameters for the filters in `q` (table alias l)."""
    clauses: list[tuple[str, tuple[Any, ...]]] = []
    if service_id is not None:
        clauses.append(("l.service_id = %s", (service_id,)))
    clauses.extend((clause, (value,)) for clause, value in _filters(q) if value is not None and value != "")
    if q.status:
        clauses.append(_status(q.status))
    if q.has_error is not None:
        clauses.append((ERROR_CONDITION if q.has_error else f"NOT coalesce({ERROR_CONDITION}, false)", ()))
    if q.tag:
        clauses.append(_tag(q.tag))
    return [sql.SQL(clause) for clause, _ in clauses], [v for _, values in clauses for v in values]


class BadCursor(ValueError):
    """The cursor is not one this API issued for the query's order."""


async def search(conn: AsyncConnection, q: LogQuery, service_id: int | None) -> dict[str, Any]:
    """One page {"items", "next_cursor"} of logs matching `q`; BadCursor for a foreign cursor."""
    where, params = conditions(q, service_id)
    keyset = KEYSETS[q.order]
    if q.cursor:
        after = decode_cursor(q.cursor, q.order)
        if after is None:
            raise BadCursor(f"not a cursor of order {q.order}")
        where.append(keyset.after())
        params.extend(after)
    query = sql.SQL("SELECT s.name AS service, {cols} FROM request_logs l JOIN services s ON s.id = l.service_id"
                    " {where} ORDER BY {order} LIMIT %s").format(
        cols=sql.SQL(", ").join(sql.SQL("l.{}").format(sql.Identifier(c)) for c in LOG_COLUMNS),
        where=sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        order=keyset.order_by())
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, [*params, q.limit + 1])
    rows = await cur.fetchall()
    items = rows[:q.limit]
    more = len(rows) > q.limit
    return {"items": items,
            "next_cursor": encode_cursor(sort_value(q.order, items[-1]), items[-1]["id"], q.order) if more else None}


async def list_logs(call: Call[Reader, None, LogQuery]) -> web.Response:
    """One page of logs matching the filters, in `order` (newest first by default)."""
    q = call.query
    scope = await named_scope(call.context, call.caller, q.service)
    if isinstance(scope, Refusal):
        return scope.response()
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        try:
            page = await search(conn, q, scope[0] if scope else None)
        except BadCursor as e:
            return Refusal(422, "invalid query parameters", [{"field": "cursor", "reason": str(e)}]).response()
    return reply(page)


async def fetch_log(context: Context, log_id: int) -> dict[str, Any] | None:
    """One stored log with its service's name, base_url and allowed_hosts."""
    query = sql.SQL("SELECT s.name AS service, {cols} FROM request_logs l JOIN services s ON s.id = l.service_id"
                    " WHERE l.id = %s").format(
        cols=sql.SQL(", ").join(sql.SQL("l.{}").format(sql.Identifier(c)) for c in (*LOG_COLUMNS, "service_id")))
    async with context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, (log_id,))
        return await cur.fetchone()


_LOG_ID = re.compile(r"[0-9]{1,18}")


def log_id(request: web.Request) -> int | Refusal:
    """The {id} of the URL, or 404 when it is not 1-18 ASCII digits (str.isdigit and int() also take
    "²" or Arabic-Indic digits, which are no id of ours)."""
    text = request.match_info["id"]
    if not _LOG_ID.fullmatch(text):
        return Refusal(404, "no such log")
    return int(text)


async def get_log(call: Call[Reader, None, None]) -> web.Response:
    """One log by id, if the caller may read its service."""
    found = log_id(call.request)
    if isinstance(found, Refusal):
        return found.response()
    row = await fetch_log(call.context, found)
    if row is None or (isinstance(call.caller, Caller) and row["service_id"] != call.caller.service_id):
        return Refusal(404, "no such log").response()
    row.pop("service_id")
    return reply(row)
