"""A pushed request log record: strict validation, then the row stored in request_logs.

Before storage: secrets are masked (headers, URL credentials and query values,
query_params, body and tag fields with secret-looking names), bodies truncated, the client IP
kept or dropped by the service's privacy level, and every string made safe
for PostgreSQL (no NUL characters, no lone surrogates).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Annotated, Any, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError, to_json

from push import useragents
from push.bodies import INTEGRAL
from push.masking import Masking, masking
from upwatch.records import ProbeResult
from upwatch.rows import PROBE_RESULTS, REQUEST_LOGS, Batch, JsonText, take_ids

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
# A dotted quad exactly as ipaddress prints it (no leading zeros), so it is stored as sent.
_CANONICAL_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                             r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


def stored_address(value: str) -> str:
    """An IPv4 or IPv6 address as stored: ipaddress's form without an IPv6 zone ("%eth0"), which
    PostgreSQL's inet lacks and which means nothing off that host anyway. The common case, a canonical
    dotted quad, skips ipaddress (a few microseconds per record)."""
    if _CANONICAL_IPV4.fullmatch(value):
        return value
    try:
        return str(ip_address(value)).split("%")[0]
    except ValueError:
        raise PydanticCustomError("ip_any_address", "Input is not a valid IPv4 or IPv6 address") from None


Address = Annotated[StrictStr, AfterValidator(stored_address),
                    WithJsonSchema({"anyOf": [{"type": "string", "format": "ipv4"},
                                              {"type": "string", "format": "ipv6"}]})]


class LogRecord(BaseModel):
    """One request as the pushing service saw it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp: datetime | None = None
    method: Annotated[StrictStr, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z]+$")] | None = None
    url: Long | None = None
    path: Long | None = None
    route: Short | None = None
    status_code: Annotated[StrictInt, Field(ge=100, le=599), INTEGRAL] | None = None
    latency_ms: Annotated[StrictFloat, Field(ge=0, le=86_400_000)] | None = None
    query_params: dict[StrictStr, Any] | None = None
    request_headers: Headers | None = None
    request_body: Body | None = None
    response_headers: Headers | None = None
    response_body: Body | None = None
    error: Long | None = None
    source_ip: Address | None = None
    user_id: Short | Annotated[StrictInt, INTEGRAL] | None = None
    user_agent: Short | None = None
    tags: dict[StrictStr, StrictStr | StrictInt | StrictFloat | bool] | list[Short] | None = None


class Record(Protocol):
    """What to_row reads of a valid record: a LogRecord, or a push.decoding.FastRecord."""

    @property
    def timestamp(self) -> datetime | None: ...
    @property
    def method(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...
    @property
    def path(self) -> str | None: ...
    @property
    def route(self) -> str | None: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def latency_ms(self) -> float | None: ...
    @property
    def query_params(self) -> dict[str, Any] | None: ...
    @property
    def request_headers(self) -> dict[str, str | list[str]] | None: ...
    @property
    def request_body(self) -> str | dict[str, Any] | list[Any] | None: ...
    @property
    def response_headers(self) -> dict[str, str | list[str]] | None: ...
    @property
    def response_body(self) -> str | dict[str, Any] | list[Any] | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def source_ip(self) -> str | None: ...
    @property
    def user_id(self) -> str | int | None: ...
    @property
    def user_agent(self) -> str | None: ...
    @property
    def tags(self) -> dict[str, str | int | float | bool] | list[str] | None: ...


class _CheckedLogRecord(LogRecord):
    """LogRecord with its timestamp checked while validating (naive as UTC, not in the future): for
    going through a refused batch record by record. A whole valid batch is checked in one Python loop
    afterwards instead, which costs a fraction of a validator call per record."""

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return checked_timestamp(value)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(record)"


_RECORDS = TypeAdapter(list[LogRecord])


def validate(records: list[Any], *, privacy_level: int, oldest: datetime,
             suspect: bool = True) -> tuple[list[LogRecord], list[dict[str, Any]]]:
    """Validate every record; return (records, problems) with each problem's index, field and reason.

    `suspect`: strings may hold NUL or lone surrogates and must be cleaned first (see bodies.Parsed)."""
    if privacy_level >= 2:
        records = [{k: v for k, v in data.items() if k != "source_ip"} if isinstance(data, dict) else data
                   for data in records]
    if not suspect:
        # The whole batch in one pydantic-core call; only a batch with a problem is gone through
        # record by record, to name every problem.
        try:
            valid = _RECORDS.validate_python(records)
        except ValidationError:
            pass
        else:
            if plain(valid, oldest):
                return valid, []
    return _validate_each(records, oldest, suspect)


def plain(valid: Sequence[Record], oldest: datetime) -> bool:
    """Whether no record has a timestamp out of range or a free-form field nested too deeply (valid tags
    cannot nest). One loop with no call for a common record: per record, each call cost ~0.3 us."""
    newest = datetime.now(UTC) + FUTURE_TOLERANCE
    for r in valid:
        ts = r.timestamp
        if ts is not None:
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            if not oldest <= ts <= newest:
                return False
        for value in (r.query_params, r.request_body, r.response_body):
            if value is not None and value.__class__ is not str and too_deep(value):
                return False
    return True


def _too_old(record: LogRecord, oldest: datetime) -> bool:
    return record.timestamp is not None and record.timestamp < oldest


def _validate_each(records: list[Any], oldest: datetime,
                   suspect: bool) -> tuple[list[LogRecord], list[dict[str, Any]]]:
    valid: list[LogRecord] = []
    problems: list[dict[str, Any]] = []
    for index, data in enumerate(records):
        if not isinstance(data, dict):
            problems.append({"index": index, "field": "(record)", "reason": "a record must be a JSON object"})
            continue
        deep = [f for f in FREE_FORM if isinstance(data.get(f), dict | list) and too_deep(data[f])]
        if deep:
            problems.extend({"index": index, "field": f, "reason": f"nested deeper than {MAX_NESTING} levels"}
                            for f in deep)
            continue
        try:
            record = _CheckedLogRecord.model_validate(clean(data) if suspect else data)
        except ValidationError as e:
            problems.extend({"index": index, "field": _field(err["loc"]), "reason": err["msg"]}
                            for err in e.errors(include_url=False))
            continue
        if _too_old(record, oldest):
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


def truncate(body: Any, max_bytes: int) -> str | None:
    """A body as stored text, cut to at most `max_bytes` UTF-8 bytes."""
    if body is None:
        return None
    text = body if isinstance(body, str) else _json(body)
    if len(text) * 4 <= max_bytes:  # no character takes more than 4 bytes: short enough without encoding
        return text
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")


def sensitive_set(extra_headers: Iterable[str], secret_names: Iterable[str] = ()) -> Masking:
    """What to mask: the built-in sensitive headers and secret words plus the configured ones."""
    return masking(extra_headers, secret_names)


def _json(value: Any) -> str:
    # pydantic-core's serialiser: compact UTF-8 like json.dumps(ensure_ascii=False, separators=(",", ":")),
    # at a fifth of the cost for the small objects records hold.
    return to_json(value).decode()


def _json_text(value: Any) -> JsonText | None:
    return None if value is None else JsonText(_json(value))


def to_row(record: Record, ingest_id: str, *, service_id: int, privacy_level: int, sensitive: Masking,
           max_body_bytes: int, now: datetime) -> tuple[Any, ...]:
    """The request_logs row (REQUEST_LOGS.columns order) for a validated (and so already cleaned) record,
    with every secret masked (see push.masking) before bodies are cut, so a cut cannot expose one."""
    user_agent = record.user_agent
    if user_agent is None and record.request_headers:
        found = next((v for k, v in record.request_headers.items() if k.lower() == "user-agent"), None)
        user_agent = found if isinstance(found, str) else None
    timestamp = record.timestamp
    if timestamp is None:
        timestamp = now
    elif timestamp.tzinfo is None:  # naive means UTC
        timestamp = timestamp.replace(tzinfo=UTC)
    m = sensitive  # the `x and m.f(x)` guards skip a call for absent fields, most of them in most records
    return (
        timestamp, service_id, ingest_id, record.method.upper() if record.method else None,
        record.url and m.url(record.url), record.path and m.url(record.path), record.route, record.status_code,
        record.latency_ms, _json_text(record.query_params and m.json(record.query_params)),
        _json_text(m.headers_of(record.request_headers)),
        truncate(record.request_body and m.body(record.request_body), max_body_bytes),
        _json_text(m.headers_of(record.response_headers)),
        truncate(record.response_body and m.body(record.response_body), max_body_bytes), record.error,
        record.source_ip if privacy_level == 0 else None,
        str(record.user_id) if record.user_id is not None else None,
        user_agent and user_agent[:1024], _json_text(record.tags and m.json(record.tags)),
        *useragents.families(user_agent and user_agent[:1024]),
    )


def batch(valid: Sequence[Record], *, service_id: int, privacy_level: int, sensitive: Masking,
          max_body_bytes: int, now: datetime) -> Batch:
    """The request_logs rows of a validated batch, laid out for BatchWriter.offer_batch."""
    return Batch(REQUEST_LOGS.name, REQUEST_LOGS.columns, [
        to_row(r, ingest_id, service_id=service_id, privacy_level=privacy_level, sensitive=sensitive,
               max_body_bytes=max_body_bytes, now=now)
        for r, ingest_id in zip(valid, take_ids(len(valid)), strict=True)])


def probe_batch(result: ProbeResult, endpoint_id: int, *, location: str, prober: str) -> Batch:
    """A pushed check result as the one-row probe_results batch the writer takes (with its own
    idempotency key, so a replayed spool does not store it twice)."""
    row = PROBE_RESULTS.prepare(result.to_row(endpoint_id, location=location, prober=prober))
    return Batch(PROBE_RESULTS.name, PROBE_RESULTS.columns, [PROBE_RESULTS.values(PROBE_RESULTS.columns, row)])
