"""Keyset pages of GET /logs in each `order`: the sort key, its cursor and the condition after it.

Every order breaks ties by id in the same direction, so (key, id) is unique and a cursor (the last
row's key and id) starts the next page exactly after it, however many rows share a key. A cursor
names its order, so one issued for `order=latency` is refused (422) for `order=-time`.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg import sql

Order = Literal["-time", "time", "-latency", "latency"]
DEFAULT_ORDER: Order = "-time"
# latency_ms is >= 0 (ingest refuses less), so rows without one sort below every measured row.
NO_LATENCY = -1.0


@dataclass(frozen=True)
class Keyset:
    """How one order sorts: its SQL key (table alias l) and direction."""

    key: str
    descending: bool

    def order_by(self) -> sql.Composable:
        """ORDER BY clause of this order (without the words ORDER BY)."""
        way = "DESC" if self.descending else "ASC"
        return sql.SQL(f"{self.key} {way}, l.id {way}")

    def after(self) -> sql.Composable:
        """WHERE part for the rows after a cursor; takes (key value, id) as parameters."""
        return sql.SQL(f"({self.key}, l.id) {'<' if self.descending else '>'} (%s, %s)")


KEYSETS: dict[str, Keyset] = {
    "-time": Keyset("l.time", True),
    "time": Keyset("l.time", False),
    "-latency": Keyset(f"coalesce(l.latency_ms, {NO_LATENCY})", True),
    "latency": Keyset(f"coalesce(l.latency_ms, {NO_LATENCY})", False),
}


def sort_value(order: str, row: dict[str, Any]) -> datetime | float:
    """The value of `row`'s sort key in `order`."""
    if order.endswith("time"):
        return row["time"]  # type: ignore[no-any-return]
    latency = row["latency_ms"]
    return NO_LATENCY if latency is None else float(latency)


def encode_cursor(value: datetime | float, row_id: int, order: str = DEFAULT_ORDER) -> str:
    """An opaque cursor for the row after which the next page starts (newest-first cursors keep
    their old form, so cursors issued before `order` existed stay valid)."""
    text = value.isoformat() if isinstance(value, datetime) else repr(float(value))
    plain = f"{text}|{row_id}" if order == DEFAULT_ORDER else f"{order}|{text}|{row_id}"
    return base64.urlsafe_b64encode(plain.encode()).decode().rstrip("=")


def _value(order: str, text: str) -> datetime | float:
    if order.endswith("time"):
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("not a finite latency")
    return number


def decode_cursor(cursor: str, order: str = DEFAULT_ORDER) -> tuple[datetime | float, int] | None:
    """(sort value, id) of a cursor issued for `order`, or None if it is not one."""
    try:
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
        issued_for = DEFAULT_ORDER if len(parts) == 2 else parts[0]
        if issued_for != order or len(parts) != (2 if order == DEFAULT_ORDER else 3):
            return None
        value, number = _value(order, parts[-2]), int(parts[-1])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not 0 <= number < 2**63:
        return None
    return value, number
