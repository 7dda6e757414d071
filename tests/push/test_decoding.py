"""The msgspec fast path (push.decoding) never accepts what the pydantic path refuses, and stores the
same rows for what both accept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from push import bodies, decoding, records
from tests.push.test_records import NOW, OLDEST, SENSITIVE, VALID, nested


def slow(raw: bytes, privacy_level: int) -> list[tuple[Any, ...]] | None:
    """The rows the pydantic path stores for a body, or None when it refuses it."""
    parsed = bodies.parse_json(raw)
    if isinstance(parsed, bodies.Refusal):
        return None
    data = parsed if isinstance(parsed, list) else [parsed]
    if not data:
        return None
    valid, problems = records.validate(data, privacy_level=privacy_level, oldest=OLDEST,
                                       suspect=bodies.SUSPECT_ESCAPE.search(raw) is not None)
    return None if problems else rows(valid, privacy_level)


def rows(valid: Any, privacy_level: int) -> list[tuple[Any, ...]]:
    """The stored rows, with the same ingest id on both paths."""
    return [records.to_row(r, "0" * 32, service_id=1, privacy_level=privacy_level, sensitive=SENSITIVE,
                           max_body_bytes=64, now=NOW) for r in valid]


FUTURE = (NOW + timedelta(hours=1)).isoformat()
DECIDED = [json.dumps(VALID).encode(), *(json.dumps(r).encode() for r in VALID),
           b'{"timestamp": "2026-11-22 10:00:00", "latency_ms": 5, "path": "/a", "path": "/b"}',
           b'{"tags": {"a": true, "b": 1, "c": 1.5, "d": "x"}, "user_id": 12345678901234567890123}',
           b'{"query_params": {"a": 1e308, "b": [1, 2.5, null, {"c": "d"}]}, "request_body": "caf\\u00e9"}',
           b'  [{"method": "PATCH", "url": "https://u:p@x.test/?token=1", "status_code": 599}]\n']
REFUSED_OR_SLOW = [
    b'{"method": "GET\\n"}', b'{"method": ""}', b'{"status_code": 200.0}', b'{"status_code": true}',
    b'{"latency_ms": NaN}', b'{"query_params": {"a": 1e400}}', b'{"query_params": {"a": Infinity}}',
    b'{"source_ip": "010.0.0.1"}', b'{"source_ip": 5}', b'{"extra": 1}', b'{"path": "a\\u0000b"}',
    b'{"path": "\\ud800"}', b'[]', b'{"request_body": 5}', b'{"timestamp": true}', b'"text"',
    b'{"timestamp": "2000-01-01T00:00:00"}', f'{{"timestamp": "{FUTURE}"}}'.encode(),
    json.dumps({"response_body": nested(40)}).encode(), b'{"tags": {"a": {"b": 1}}}', b'{"user_id": 7.0}',
    b'[{"path": "/ok"}, 1]', b'{"path": "/a"', b'\xff', b'{"url": "' + b"x" * 16385 + b'"}',
    b'{"timestamp": "2026-13-01T00:00:00Z"}', b'{"tags": ["' + b"t" * 1025 + b'"]}',
    b'{"path": "a\nb"}', b'{"path": "a\x01b"}', b'{"path": "/a"} x', b'\xef\xbb\xbf{"path": "/a"}',
    b'{"status_code": 1e2}', b'{"status_code": 0200}', b'{"latency_ms": .5}', b'{"latency_ms": 01}',
]


@pytest.mark.parametrize("privacy_level", [0, 1, 2])
# Ids by position: some bodies hold a time relative to now, and ids must be the same in every pytest-xdist worker.
@pytest.mark.parametrize("raw", DECIDED + REFUSED_OR_SLOW,
                         ids=[f"decided-{i}" for i in range(len(DECIDED))]
                         + [f"refused-or-slow-{i}" for i in range(len(REFUSED_OR_SLOW))])
def test_the_fast_path_accepts_only_what_the_slow_path_accepts_with_the_same_rows(raw: bytes,
                                                                                 privacy_level: int) -> None:
    fast = decoding.decode(raw, privacy_level=privacy_level, oldest=OLDEST, max_records=100)
    expected = slow(raw, privacy_level)
    if raw in DECIDED:
        assert fast is not None and expected is not None
    if fast is not None:
        assert rows(fast, privacy_level) == expected


def test_too_many_records_are_left_to_the_slow_path_which_names_the_limit() -> None:
    raw = json.dumps([{"path": "/a"}] * 3).encode()
    assert decoding.decode(raw, privacy_level=0, oldest=OLDEST, max_records=2) is None
    assert decoding.decode(raw, privacy_level=0, oldest=OLDEST, max_records=3) is not None


def test_naive_and_aware_timestamps_come_out_as_on_the_slow_path() -> None:
    raw = b'[{"timestamp": "2026-11-22T10:00:00"}, {"timestamp": "2026-11-22T12:00:00+02:00"}]'
    fast = decoding.decode(raw, privacy_level=0, oldest=OLDEST, max_records=10)
    assert fast is not None
    stored = [row[0] for row in rows(fast, 0)]
    assert stored == [datetime(2026, 11, 22, 10, tzinfo=UTC)] * 2
