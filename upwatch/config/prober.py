"""`prober:` how this prober instance runs."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from upwatch.config.base import Section
from upwatch.durations import PositiveDuration
from upwatch.durations import format as format_duration

_SHARD = re.compile(r"^(\d+)/(\d+)$")


class Prober(Section):
    location: str = Field(default_factory=socket.gethostname, min_length=1)
    instance: str = Field(default_factory=socket.gethostname, min_length=1)
    max_concurrency: int = Field(default=512, ge=1)
    per_host_concurrency: int = Field(default=32, ge=1)
    data_dir: Path = Path(".upwatch")
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    batch_rows: int = Field(default=500, ge=1)
    queue_size: int = Field(default=50_000, ge=100)
    flush_interval: PositiveDuration = Field(default="1s", validate_default=True)
    # /healthz reports the writer stuck when no batch finished for this long while rows wait
    # (default: 10 × flush_interval, at least 30s).
    writer_stuck_after: PositiveDuration | None = None
    # The part of queue_size pushed rows may fill; the rest is kept for the prober's own results.
    push_queue_share: float = Field(default=0.5, gt=0, le=1)
    # `i/n`: run only the endpoints whose name hashes to shard i of n (also `upwatch prober --shard i/n`).
    shard: str | None = None
    config_poll_interval: PositiveDuration = Field(default="2s", validate_default=True)
    heartbeat_check_interval: PositiveDuration = Field(default="5s", validate_default=True)

    @field_validator("writer_stuck_after")
    @classmethod
    def _stuck_after(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        # A shorter wait than a flush would call an idle-between-flushes writer stuck.
        flush = info.data.get("flush_interval")
        if value is not None and flush is not None and value <= flush:
            raise ValueError(f"must be longer than flush_interval ({format_duration(flush)})")
        return value

    def writer_stuck_after_s(self) -> float | None:
        """writer_stuck_after in seconds, None for the writer's default."""
        return None if self.writer_stuck_after is None else self.writer_stuck_after.total_seconds()

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        m = _SHARD.match(value or "")
        if value is not None and not (m and 1 <= int(m.group(1)) <= int(m.group(2))):
            raise ValueError(f"{value!r} must be i/n with 1 <= i <= n, e.g. 2/3")
        return value
