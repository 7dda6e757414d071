"""Reading requests: body size limit, content type, JSON / NDJSON with error positions, and
validation errors as 422 answers naming each field.

Each function returns the parsed value or a `Refusal` (status + message), never raises for client input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BeforeValidator, ValidationError

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines"})


@dataclass(frozen=True)
class Refusal:
    """Why a request is not accepted, as the HTTP answer to give."""

    status: int
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        """This refusal as a JSON error response."""
        body: dict[str, Any] = {"error": self.message}
        if self.details:
            body["details"] = self.details
        return web.json_response(body, status=self.status, headers=self.headers)


def body_problems(e: ValidationError, message: str = "invalid request body", index: int | None = None) -> Refusal:
    """A body's validation errors as a 422 naming each field (and the record's `index`, if given)."""
    at = {} if index is None else {"index": index}
    details = [{**at, "field": ".".join(str(p) for p in err["loc"]) or "(body)", "reason": err["msg"]}
               for err in e.errors(include_url=False)]
    return Refusal(422, message, details)


def query_problems(e: ValidationError) -> Refusal:
    """Query-string validation errors as a 422 naming each parameter."""
    details = [{"field": str(err["loc"][0]).rstrip("_") if err["loc"] else "(query)", "reason": err["msg"]}
               for err in e.errors(include_url=False)]
    return Refusal(422, "invalid query parameters", details)


def _integral(value: Any) -> Any:
    return int(value) if type(value) is float and value.is_integer() else value


# JSON Schema's "integer" includes 100.0 (a number with no fractional part); bools and strings stay refused.
# Last in Annotated[StrictInt, Field(...), INTEGRAL]: placed before Field, it hides minimum/maximum from the schema.
INTEGRAL = BeforeValidator(_integral)


_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _date_time_text(value: Any) -> Any:
    if isinstance(value, str) and not _DATE_TIME.match(value):
        raise ValueError("must be a date-time like 2026-01-31T12:00:00Z")
    return value


# For query parameters documented as format: date-time; pydantic alone also reads "0.5" as a Unix time.
DATE_TIME_TEXT = BeforeValidator(_date_time_text)


# JSON can only smuggle a NUL or a lone surrogate into a string through a \u escape.
SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


@dataclass(frozen=True)
class Parsed:
    """The records of a body, and whether any string may need cleaning (NUL, lone surrogates)."""

    records: list[Any]
    suspect: bool


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range for a number")
    return value


def loads(text: str) -> Any:
    """json.loads without NaN/Infinity or numbers that overflow to it (jsonb rejects them);
    RecursionError (absurd nesting) becomes ValueError."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None


async def read_limited(request: web.Request, max_bytes: int) -> bytes | Refusal:
    """The whole body, or 413 as soon as it passes `max_bytes` (Content-Length or streamed)."""
    if request.content_length is not None and request.content_length > max_bytes:
        return _too_big(max_bytes)
    content = request.content
    if content.is_eof():  # all of it arrived with the headers (a small body): taken without a read loop
        whole = content.read_nowait()
        return _too_big(max_bytes) if len(whole) > max_bytes else whole
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            return _too_big(max_bytes)
        chunks.append(chunk)


def _too_big(max_bytes: int) -> Refusal:
    return Refusal(413, f"request body exceeds {max_bytes} bytes")


def _position(text: str, e: json.JSONDecodeError | ValueError, line_offset: int = 0) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"invalid JSON at line {e.lineno + line_offset} column {e.colno} (char {e.pos}): {e.msg}"
    return f"invalid JSON at line {1 + line_offset}: {e}"


def parse_json(raw: bytes) -> Any | Refusal:
    """One JSON document, or 400 naming line, column and character of the error."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Refusal(400, f"body is not UTF-8: byte {e.start}: {e.reason}")
    try:
        return loads(text)
    except (json.JSONDecodeError, ValueError) as e:
        return Refusal(400, _position(text, e))


def parse_ndjson(raw: bytes) -> list[Any] | Refusal:
    """One JSON value per non-blank line, or 400 naming the line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Refusal(400, f"body is not UTF-8: byte {e.start}: {e.reason}")
    values = []
    for number, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        try:
            values.append(loads(line))
        except (json.JSONDecodeError, ValueError) as e:
            return Refusal(400, _position(line, e, line_offset=number))
    return values


async def read_records(request: web.Request, max_bytes: int, max_records: int,
                       raw: bytes | Refusal | None = None) -> Parsed | Refusal:
    """The records of an ingest body (read here, or `raw` when the caller has read it): one object,
    an array, or NDJSON lines."""
    ctype = request.content_type.lower()
    if ctype not in JSON_TYPES and ctype not in NDJSON_TYPES:
        return Refusal(415, "Content-Type must be application/json or application/x-ndjson")
    if raw is None:
        raw = await read_limited(request, max_bytes)
    if isinstance(raw, Refusal):
        return raw
    if ctype in NDJSON_TYPES:
        records = parse_ndjson(raw)
    else:
        parsed = parse_json(raw)
        records = parsed if isinstance(parsed, list | Refusal) else [parsed]
    if isinstance(records, Refusal):
        return records
    if not records:
        return Refusal(422, "no records in the request")
    if len(records) > max_records:
        return Refusal(413, f"{len(records)} records in one request; the limit is {max_records}")
    return Parsed(records, SUSPECT_ESCAPE.search(raw) is not None)


@dataclass(frozen=True)
class Unread:
    """An ingest body not read yet: POST /logs refuses (429, 503) before reading, because under
    overload parsing bodies only to refuse them takes the CPU the writer needs."""

    request: web.Request
    max_bytes: int
    max_records: int

    async def raw(self) -> bytes | Refusal:
        """The whole body, or 413 (see read_limited)."""
        return await read_limited(self.request, self.max_bytes)

    async def records(self, raw: bytes | None = None) -> Parsed | Refusal:
        """The records of the body (read now, or `raw` when it was read already)."""
        return await read_records(self.request, self.max_bytes, self.max_records, raw)
