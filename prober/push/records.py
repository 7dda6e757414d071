"""A pushed request log record: strict validation, then the row stored in request_logs.

Before storage: sensitive headers are masked, bodies truncated, the client IP
kept or dropped by the service's privacy level, and every string made safe
for PostgreSQL (no NUL characters, no lone surrogates).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError, field_validator

from upwatch.catalog import MASK, SENSITIVE_HEADERS

FUTURE_TOLERANCE = timedelta(minutes=5)


def checked_timestamp(value: datetime | None) -> datetime | None:
    """A pushed timestamp as UTC-aware (naive means UTC); refuse one far in the future."""
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if value > datetime.now(UTC) + FUTURE_TOLERANCE:
        raise ValueError("timestamp is in the future")
    return value
MAX_NESTING = 32
FREE_FORM = ("query_params", "request_body", "response_body", "tags")
Short = Annotated[StrictStr, Field(max_length=1024)]
Long = Annotated[StrictStr, Field(max_length=16384)]
Headers = dict[StrictStr, StrictStr | list[StrictStr]]
Body = StrictStr | dict[str, Any] | list[Any]


class LogRecord(BaseModel):
    """One request as the pushing service saw it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp: datetime | None = None
    method: Annotated[StrictStr, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z]+$")] | None = None
    url: Long | None = None
    path: Long | None = None
    route: Short | None = None
    status_code: Annotated[StrictInt, Field(ge=100, le=599)] | None = None
    latency_ms: Annotated[StrictFloat, Field(ge=0, le=86_400_000)] | None = None
    query_params: dict[StrictStr, Any] | None = None
    request_headers: Headers | None = None
    request_body: Body | None = None
    response_headers: Headers | None = None
    response_body: Body | None = None
    error: Long | None = None
    source_ip: IPv4Address | IPv6Address | None = None
    user_id: Short | StrictInt | None = None
    user_agent: Short | None = None
    tags: dict[StrictStr, StrictStr | StrictInt | StrictFloat | bool] | list[Short] | None = None

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return checked_timestamp(value)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(record)"


def validate(records: list[Any], *, privacy_level: int, oldest: datetime,
             suspect: bool = True) -> tuple[list[LogRecord], list[dict[str, Any]]]:
    """Validate every record; return (records, problems) with each problem's index, field and reason.

    `suspect`: strings may hold NUL or lone surrogates and must be cleaned first (see bodies.Parsed)."""
    valid: list[LogRecord] = []
    problems: list[dict[str, Any]] = []
    for index, data in enumerate(records):
        if not isinstance(data, dict):
            problems.append({"index": index, "field": "(record)", "reason": "a record must be a JSON object"})
            continue
        if privacy_level >= 2:
            data = {k: v for k, v in data.items() if k != "source_ip"}
        deep = [f for f in FREE_FORM if isinstance(data.get(f), dict | list) and too_deep(data[f])]
        if deep:
            problems.extend({"index": index, "field": f, "reason": f"nested deeper than {MAX_NESTING} levels"}
                            for f in deep)
            continue
        try:
            record = LogRecord.model_validate(clean(data) if suspect else data)
        except ValidationError as e:
            problems.extend({"index": index, "field": _field(err["loc"]), "reason": err["msg"]}
                            for err in e.errors(include_url=False))
            continue
        if record.timestamp is not None and record.timestamp < oldest:
            problems.append({"index": index, "field": "timestamp",
                             "reason": f"timestamp is older than the retention period (before {oldest:%Y-%m-%d})"})
            continue
        valid.append(record)
    return valid, problems


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether a JSON value nests containers deeper than `limit` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def clean(value: Any) -> Any:
    """`value` with every string safe for PostgreSQL text and jsonb."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {clean(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def mask(headers: dict[str, Any] | None, sensitive: frozenset[str]) -> dict[str, Any] | None:
    """Headers with the values of sensitive ones replaced by ***."""
    if headers is None:
        return None
    return {k: (MASK if k.lower() in sensitive else v) for k, v in headers.items()}


def truncate(body: Any, max_bytes: int) -> str | None:
    """A body as stored text, cut to at most `max_bytes` UTF-8 bytes."""
    if body is None:
        return None
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")


def sensitive_set(extra: Iterable[str]) -> frozenset[str]:
    """The built-in sensitive header names plus the configured ones, lower-cased."""
    return SENSITIVE_HEADERS | {h.lower() for h in extra}


def to_row(record: LogRecord, *, service_id: int, privacy_level: int, sensitive: frozenset[str],
           max_body_bytes: int, now: datetime) -> dict[str, Any]:
    """The request_logs row for a validated (and so already cleaned) record."""
    user_agent = record.user_agent
    if user_agent is None and record.request_headers:
        found = next((v for k, v in record.request_headers.items() if k.lower() == "user-agent"), None)
        user_agent = found if isinstance(found, str) else None
    row = {
        "time": record.timestamp or now,
        "service_id": service_id,
        "method": record.method.upper() if record.method else None,
        "url": record.url, "path": record.path, "route": record.route,
        "status_code": record.status_code, "latency_ms": record.latency_ms,
        "query_params": record.query_params,
        "request_headers": mask(record.request_headers, sensitive),
        "request_body": truncate(record.request_body, max_body_bytes),
        "response_headers": mask(record.response_headers, sensitive),
        "response_body": truncate(record.response_body, max_body_bytes),
        "error": record.error,
        # PostgreSQL's inet has no IPv6 zone ("%eth0"); the zone means nothing off that host anyway.
        "source_ip": str(record.source_ip).split("%")[0] if record.source_ip is not None and privacy_level == 0
        else None,
        "user_id": str(record.user_id) if record.user_id is not None else None,
        "user_agent": user_agent and user_agent[:1024],
        "tags": record.tags,
    }
    return row


JSON_COLUMNS = ("query_params", "request_headers", "response_headers", "tags")
