"""The fast way in for a JSON body of records: msgspec decodes and checks the whole body in one call.

json.loads and then pydantic-core's validation of the Python objects cost ~9 us per record; msgspec
decoding straight into typed structs with the same constraints ~1.6 us (docs/push.md, "Benchmark").
This path only ever accepts: whatever it cannot decide (a constraint failed, a NaN, an escape that
may need cleaning, a timestamp or address to refuse) returns None, and the body then goes the way of
bodies.read_records and records.validate, which name every problem as before. Where msgspec's rules
differ from LogRecord's, it is the stricter (a float for an int field, a surrogate escape, a number
out of range), and the two fields checked in Python there are checked by the same code here:
timestamps by pydantic-core in one call for the batch, addresses by records.stored_address.
tests/push/test_decoding.py holds both paths to the same records and rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from push.bodies import SUSPECT_ESCAPE
from push.records import plain, stored_address

Short = Annotated[str, Meta(max_length=1024)]
Long = Annotated[str, Meta(max_length=16384)]
Headers = dict[str, str | list[str]]
Body = str | dict[str, Any] | list[Any]


class FastRecord(Struct, forbid_unknown_fields=True):
    """A LogRecord as msgspec decodes it (see records.LogRecord for what each field means)."""

    timestamp: Any = None  # str or number, checked with LogRecord's own datetime rules, then a datetime
    # \Z, not $: Python's $ also matches before a final newline, pydantic-core's does not.
    method: Annotated[str, Meta(min_length=1, max_length=16, pattern=r"^[A-Za-z]+\Z")] | None = None
    url: Long | None = None
    path: Long | None = None
    route: Short | None = None
    status_code: Annotated[int, Meta(ge=100, le=599)] | None = None
    latency_ms: Annotated[float, Meta(ge=0, le=86_400_000)] | None = None
    query_params: dict[str, Any] | None = None
    request_headers: Headers | None = None
    request_body: Body | None = None
    response_headers: Headers | None = None
    response_body: Body | None = None
    error: Long | None = None
    source_ip: str | None = None
    user_id: Short | int | None = None
    user_agent: Short | None = None
    tags: dict[str, str | int | float | bool] | list[Short] | None = None


_MANY = msgspec.json.Decoder(list[FastRecord])
_ONE = msgspec.json.Decoder(FastRecord)
_TIMESTAMPS = TypeAdapter(list[datetime | None])
# NaN and Infinity: msgspec refuses them anyway; a byte search is cheaper than its error.
_ESCAPE = b"\\u"


def decode(raw: bytes, *, privacy_level: int, oldest: datetime, max_records: int) -> list[FastRecord] | None:
    """The records of a JSON body (one object or an array of 1..max_records), every one valid, or None
    when this path cannot decide (then the caller goes the slow way, which names each problem)."""
    if _ESCAPE in raw and SUSPECT_ESCAPE.search(raw):
        return None
    try:
        head = raw.lstrip()[:1]
        valid = _MANY.decode(raw) if head == b"[" else [_ONE.decode(raw)] if head == b"{" else None
        if valid is None or not 1 <= len(valid) <= max_records:
            return None
        times = _TIMESTAMPS.validate_python([r.timestamp for r in valid])
    except (msgspec.ValidationError, msgspec.DecodeError, ValidationError):
        return None
    for record, timestamp in zip(valid, times, strict=True):
        record.timestamp = timestamp
        if record.source_ip is not None:
            if privacy_level >= 2:  # not even read at this level, as on the slow path
                record.source_ip = None
                continue
            try:
                record.source_ip = stored_address(record.source_ip)
            except PydanticCustomError:
                return None
    return valid if plain(valid, oldest) else None
