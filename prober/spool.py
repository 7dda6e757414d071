"""An append-only, fsync'd file of batches the database could not take yet.

One JSON line per batch: {"table", "columns", "rows"}, and "companions" (the same
three, e.g. a pushed batch's Idempotency-Key row) when it has any, so a batch and its key are
replayed together, in one transaction. Lines are replayed in file order; the
file is truncated once every line has been replayed. A line cut short by a
crash mid-append is dropped with a warning when the spool is opened (that
batch never fully reached disk, so nothing more could be kept).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from upwatch.rows import Batch, JsonText

logger = logging.getLogger(__name__)

SPOOL_NAME = "spool.jsonl"
REJECTED_NAME = "rejected.jsonl"


class SpoolLocked(Exception):
    """Another process holds this spool; two writers must not share one."""


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | os.PathLike):
        return str(value)
    if hasattr(value, "obj"):  # psycopg Jsonb wrapper
        return value.obj
    raise TypeError(f"cannot spool a {type(value).__name__}")


def _plain(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(json.loads(v) if type(v) is JsonText else v for v in row)


def _record(batch: Batch) -> dict[str, Any]:
    return {"table": batch.table, "columns": batch.columns, "rows": [_plain(row) for row in batch.rows]}


def encode(batch: Batch) -> bytes:
    """The batch (with its companions) as one spool line. Values are kept in their text form, which COPY
    parses as before; JSON columns hold their JSON values (not text), as they always have."""
    record = _record(batch)
    if batch.companions:
        record["companions"] = [_record(c) for c in batch.companions]
    return (json.dumps(record, default=_encode, separators=(",", ":")) + "\n").encode()


def _batch(record: dict[str, Any]) -> Batch:
    return Batch(record["table"], tuple(record["columns"]), [tuple(r) for r in record["rows"]],
                 tuple(_batch(c) for c in record.get("companions", ())))


class Spool:
    """The spool file under `directory`, locked for this process while open."""

    def __init__(self, directory: Path, max_bytes: int):
        self.directory = directory
        self.path = directory / SPOOL_NAME
        self.max_bytes = max_bytes
        self.read_offset = 0  # bytes already replayed in this process
        self._fd: int | None = None

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise SpoolLocked(f"{self.path} is in use by another upwatch process") from None
        self._cut_partial_tail()

    def _cut_partial_tail(self) -> None:
        """Drop a last line cut short by a crash mid-append, so later appends start on a fresh line."""
        fd, size = self._require(), self.size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        keep = size
        while keep > 0:
            start = max(0, keep - (1 << 16))
            newline = os.pread(fd, keep - start, start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            keep = start
        logger.warning("spool ends with a partial batch cut by a crash, dropping bytes=%d", size - keep)
        os.ftruncate(fd, keep)
        os.fsync(fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    @property
    def size(self) -> int:
        return os.fstat(self._require()).st_size

    @property
    def pending_bytes(self) -> int:
        return self.size - self.read_offset

    def append(self, line: bytes) -> bool:
        """Append and fsync one line; False (nothing written) if it would pass max_bytes."""
        fd = self._require()
        if self.size + len(line) > self.max_bytes:
            return False
        os.write(fd, line)
        os.fsync(fd)
        return True

    def read_next(self) -> tuple[Batch | None, int]:
        """The next unreplayed batch and its length in bytes; (None, 0) at the end."""
        fd = self._require()
        while True:
            line = self._read_line(fd, self.read_offset)
            if line is None:
                return None, 0
            try:
                return _batch(json.loads(line)), len(line)
            except (ValueError, KeyError, TypeError) as e:
                logger.error("spool line unreadable, moved aside offset=%d error=%r", self.read_offset, str(e))
                self.reject(line, f"unreadable spool line: {e}")
                self.read_offset += len(line)

    def consumed(self, length: int) -> None:
        """Mark `length` more bytes replayed; truncate the file once all of it is."""
        self.read_offset += length
        if self.read_offset >= self.size:
            os.ftruncate(self._require(), 0)
            os.fsync(self._require())
            self.read_offset = 0

    def reject(self, line: bytes, reason: str) -> None:
        """Keep a batch the database refuses (bad data) beside the spool, for a person to look at."""
        entry = json.dumps({"reason": reason, "at": dt.datetime.now(dt.UTC).isoformat()}) + "\t"
        with open(self.directory / REJECTED_NAME, "ab") as f:
            f.write(entry.encode() + line if line.endswith(b"\n") else entry.encode() + line + b"\n")
            f.flush()
            os.fsync(f.fileno())

    def _read_line(self, fd: int, offset: int) -> bytes | None:
        chunk, parts = 1 << 16, []
        while True:
            data = os.pread(fd, chunk, offset)
            if not data:
                return None  # open() cut any partial tail, and appends are whole lines
            newline = data.find(b"\n")
            if newline >= 0:
                parts.append(data[: newline + 1])
                return b"".join(parts)
            parts.append(data)
            offset += len(data)
            chunk = min(chunk * 2, 1 << 24)

    def _require(self) -> int:
        if self._fd is None:
            raise RuntimeError("spool is not open")
        return self._fd
