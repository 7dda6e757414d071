"""`prober:` how this prober instance runs."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field

from upwatch.config.base import Section


class Prober(Section):
    location: str = Field(default_factory=socket.gethostname, min_length=1)
    instance: str = Field(default_factory=socket.gethostname, min_length=1)
    max_concurrency: int = Field(default=512, ge=1)
    per_host_concurrency: int = Field(default=32, ge=1)
    data_dir: Path = Path(".upwatch")
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    batch_rows: int = Field(default=500, ge=1)
    queue_size: int = Field(default=50_000, ge=100)
