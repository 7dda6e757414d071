"""Rows on their way to the database, shared by every producer (the prober's checks, the push API) and
the writer: the tables the writer fills (their columns, which hold JSON, and the key that makes a
replay idempotent), a batch of rows, and the room a producer holds in the writer's queue."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any, Protocol


class JsonText(str):
    """A JSON value already serialised: COPY sends it as text (jsonb parses it), the spool stores the value."""

    __slots__ = ()


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def json_text(value: Any) -> JsonText | None:
    """`value` as JSON text for a jsonb column (None stays NULL)."""
    return None if value is None else JsonText(_dumps(value))


def new_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as 32 hex digits, which PostgreSQL's uuid type reads as they are.

    One urandom call for the lot: uuid.uuid4() costs a system call and a UUID object per row."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])
    text = raw.hex()
    return [text[i:i + 32] for i in range(0, 32 * count, 32)]


_IDS_AT_ONCE = 256
_ids: list[str] = []
os.register_at_fork(after_in_child=_ids.clear)  # a forked child must not hand out its parent's ids


def take_ids(count: int) -> list[str]:
    """`count` ids as new_ids draws them, taken from a block drawn 256 at a time when `count` is small:
    new_ids costs ~2-6 us a call whatever the count (one urandom, two byte passes), which a probe
    result or a single-record request would otherwise pay alone. Each is random and used once."""
    if count > _IDS_AT_ONCE // 4:
        return new_ids(count)
    if len(_ids) < count:
        _ids.extend(new_ids(_IDS_AT_ONCE))
    taken = _ids[-count:]
    del _ids[-count:]
    return taken


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    json_columns: frozenset[str]
    # Client-generated uuid column: set when a row is offered, so a batch
    # replayed after an unacknowledged commit is recognised by ON CONFLICT.
    idempotency_key: str

    def prepare(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row with its idempotency key filled in; raises ValueError on unknown columns."""
        unknown = row.keys() - self._allowed
        if unknown:
            raise ValueError(f"{self.name} has no column(s) {', '.join(sorted(unknown))}")
        if row.get(self.idempotency_key) is None:
            return {**row, self.idempotency_key: uuid.uuid4()}
        return row

    def values(self, columns: tuple[str, ...], row: dict[str, Any]) -> tuple[Any, ...]:
        """Values in `columns` order, JSON columns as JsonText."""
        return tuple(json_text(row[c]) if c in self.json_columns else row[c] for c in columns)

    def order(self, keys: Any) -> tuple[str, ...]:
        """The given column names in table order (a stable COPY column list)."""
        return tuple(c for c in self.columns if c in keys)

    @property
    def _allowed(self) -> frozenset[str]:
        return frozenset(self.columns)


PROBE_RESULTS = Table(
    name="probe_results",
    columns=("time", "endpoint_id", "id", "location", "prober", "source", "ok", "status_code", "latency_ms",
             "dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "transfer_ms", "response_bytes", "final_url",
             "cert_not_after", "error_kind", "error", "assertions", "details"),
    json_columns=frozenset({"assertions", "details"}),
    idempotency_key="id",
)

# "id" is an identity column filled by the server, so it is not writable here.
REQUEST_LOGS = Table(
    name="request_logs",
    columns=("time", "service_id", "ingest_id", "method", "url", "path", "route", "status_code", "latency_ms",
             "query_params", "request_headers", "request_body", "response_headers", "response_body", "error",
             "source_ip", "user_id", "user_agent", "tags", "ua_browser", "ua_os", "ua_device"),
    json_columns=frozenset({"query_params", "request_headers", "response_headers", "tags"}),
    idempotency_key="ingest_id",
)

# The Idempotency-Key of an accepted push batch, written as a companion of the batch's request_logs rows.
PUSH_IDEMPOTENCY_KEYS = Table(
    name="push_idempotency_keys",
    columns=("service_id", "key_hash", "accepted", "body_hash", "created_at"),
    json_columns=frozenset(),
    idempotency_key="key_hash",
)

TABLES = {t.name: t for t in (PROBE_RESULTS, REQUEST_LOGS, PUSH_IDEMPOTENCY_KEYS)}


@dataclass
class Batch:
    table: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    # Written in the same transaction right after these rows (and spooled in the same append), e.g.
    # the idempotency key of a pushed batch, which must not be stored without the batch or after it.
    companions: tuple[Batch, ...] = ()

    @property
    def size(self) -> int:
        """Rows, companions' included."""
        return len(self.rows) + sum(len(c.rows) for c in self.companions)

    @property
    def parts(self) -> tuple[Batch, ...]:
        return (self, *self.companions)


class Reservation(Protocol):
    """Room held in the writer's queue for a producer's rows (prober.writer.BatchWriter.reserve)."""

    count: int
    released: bool

    def release(self) -> None:
        """Give the room back (again: nothing)."""
