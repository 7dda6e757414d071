"""`prober:` how this prober instance runs."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from pydantic import Field, field_validator

from upwatch.config.base import Section
from upwatch.durations import PositiveDuration

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
    # `i/n`: run only the endpoints whose name hashes to shard i of n (also `upwatch prober --shard i/n`).
    shard: str | None = None
    config_poll_interval: PositiveDuration = Field(default="2s", validate_default=True)
    heartbeat_check_interval: PositiveDuration = Field(default="5s", validate_default=True)

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        m = _SHARD.match(value or "")
        if value is not None and not (m and 1 <= int(m.group(1)) <= int(m.group(2))):
            raise ValueError(f"{value!r} must be i/n with 1 <= i <= n, e.g. 2/3")
        return value
