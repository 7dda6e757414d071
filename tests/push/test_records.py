"""The whole-batch validation path and the record-by-record one agree on every record and every row."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from push import records
from upwatch.rows import REQUEST_LOGS, new_ids

NOW = datetime.now(UTC)
OLDEST = NOW - timedelta(days=30)
SENSITIVE = records.sensitive_set(["X-Session"])

VALID: list[dict[str, Any]] = [
    {"path": "/plain"},
    {"timestamp": "2026-11-22T10:00:00", "method": "get", "source_ip": "10.0.0.1"},  # naive: UTC
    {"timestamp": (NOW - timedelta(days=1)).isoformat(), "source_ip": "fe80::1%eth0"},
    {"source_ip": "::ffff:10.0.0.1", "user_id": 7, "tags": ["a", "b"]},
    {"source_ip": "2001:DB8::1", "request_headers": {"User-Agent": "curl/8", "Cookie": "x", "x-session": "s",
                                                      "Accept": ["a", "b"]}},
    {"response_body": {"deep": {"er": [1, 2, {"x": None}]}}, "request_body": "é" * 40, "query_params": {"q": [1]}},
    {"response_headers": {"Set-Cookie": "s"}, "error": "boom", "latency_ms": 0.5, "status_code": 503},
    {"timestamp": 1795000000, "url": "http://x.test/a?b=1", "route": "/a", "user_agent": "ua"},
]


@pytest.mark.parametrize("privacy_level", [0, 1, 2])
def test_whole_batch_and_record_by_record_give_identical_rows(privacy_level: int) -> None:
    fast, fast_problems = records.validate(VALID, privacy_level=privacy_level, oldest=OLDEST, suspect=False)
    slow, slow_problems = records.validate(VALID, privacy_level=privacy_level, oldest=OLDEST, suspect=True)
    assert fast_problems == slow_problems == []
    ids = new_ids(len(VALID))
    rows = [[records.to_row(r, i, service_id=1, privacy_level=privacy_level, sensitive=SENSITIVE, max_body_bytes=64,
                            now=NOW) for r, i in zip(valid, ids, strict=True)] for valid in (fast, slow)]
    assert rows[0] == rows[1]
    stored = dict(zip(REQUEST_LOGS.columns, rows[0][1], strict=True))
    assert stored["time"] == datetime(2026, 11, 22, 10, tzinfo=UTC) and stored["method"] == "GET"
    assert stored["source_ip"] == ("10.0.0.1" if privacy_level == 0 else None)
    addresses = [dict(zip(REQUEST_LOGS.columns, row, strict=True))["source_ip"] for row in rows[0][2:5]]
    assert addresses == (["fe80::1", "::ffff:a00:1", "2001:db8::1"] if privacy_level == 0 else [None] * 3)
    headers = dict(zip(REQUEST_LOGS.columns, rows[0][4], strict=True))
    assert headers["request_headers"] == '{"User-Agent":"curl/8","Cookie":"***","x-session":"***","Accept":["a","b"]}'
    assert headers["user_agent"] == "curl/8"
    bodies = dict(zip(REQUEST_LOGS.columns, rows[0][5], strict=True))
    assert bodies["response_body"] == '{"deep":{"er":[1,2,{"x":null}]}}' and bodies["request_body"] == "é" * 32


def nested(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


BAD = [
    ({"source_ip": "010.0.0.1"}, "source_ip"),  # ipaddress refuses leading zeros
    ({"source_ip": "10.0.0.256"}, "source_ip"),
    ({"timestamp": (NOW + timedelta(hours=1)).isoformat()}, "timestamp"),
    ({"timestamp": "2000-01-01T00:00:00"}, "timestamp"),
    ({"query_params": {"a": nested(40)}}, "query_params"),
    ({"tags": {"a": {"b": 1}}}, "tags.dict[str,union[str,int,float,bool]].a.str"),
]


@pytest.mark.parametrize(("record", "field"), BAD, ids=[*[f for _, f in BAD][:2], "future", "old", "deep", "tags"])
def test_a_bad_record_is_named_by_index_and_field_on_either_path(record: dict[str, Any], field: str) -> None:
    batch = [{"path": "/ok"}, record, {"path": "/ok"}]
    for suspect in (False, True):
        _, problems = records.validate(batch, privacy_level=0, oldest=OLDEST, suspect=suspect)
        assert problems and {p["index"] for p in problems} == {1}
        assert field in {p["field"] for p in problems} and all(p["reason"] for p in problems)


def test_private_addresses_are_not_even_read_at_privacy_level_2() -> None:
    valid, problems = records.validate([{"source_ip": "not-an-ip"}], privacy_level=2, oldest=OLDEST, suspect=False)
    assert problems == [] and valid[0].source_ip is None


def test_new_ids_are_distinct_version_4_uuids() -> None:
    ids = new_ids(1000)
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert new_ids(0) == []


@pytest.mark.parametrize("sizes", [[1] * 600, [3, 40, 1, 64, 65, 500, 1]], ids=["singles", "mixed"])
def test_batches_draw_distinct_version_4_ingest_ids(sizes: list[int]) -> None:
    valid, _ = records.validate([{"path": "/p"}], privacy_level=0, oldest=OLDEST)
    at = REQUEST_LOGS.columns.index("ingest_id")
    ids = [row[at] for size in sizes for row in records.batch(
        valid * size, service_id=1, privacy_level=0, sensitive=SENSITIVE, max_body_bytes=64, now=NOW).rows]
    assert len(ids) == sum(sizes) == len(set(ids))
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)


def test_a_forked_child_does_not_take_ids_its_parent_drew() -> None:
    # In a process of its own: pytest's process has threads, and forking it would warn.
    script = """
import os
from upwatch.rows import take_ids
take_ids(1)  # the parent now holds a block of ids
read, write = os.pipe()
if os.fork() == 0:
    os.write(write, " ".join(take_ids(10)).encode())
    os._exit(0)
os.wait()
print(os.read(read, 65536).decode())
print(" ".join(take_ids(10)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    child, parent = (set(line.split()) for line in done.stdout.splitlines())
    assert len(child) == len(parent) == 10 and not child & parent
