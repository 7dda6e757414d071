"""`storage:` where measurements live and for how long."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from upwatch.config.base import Section
from upwatch.durations import Interval


class Retention(Section):
    probe_results: Interval = Field(default="90d", validate_default=True)
    request_logs: Interval = Field(default="30d", validate_default=True)
    rollups: Interval = Field(default="400d", validate_default=True)
    anomalies: Interval = Field(default="180d", validate_default=True)
    alerts: Interval = Field(default="180d", validate_default=True)


class Embedded(Section):
    data_dir: Path = Path(".upwatch/pgdata")
    port: int | None = Field(default=None, ge=1, le=65535)


class Storage(Section):
    database_url: str | None = None
    embedded: Embedded = Embedded()
    timescaledb: Literal["auto", "require", "off"] = "auto"
    retention: Retention = Retention()
    pool_size: int = Field(default=10, ge=2, le=200)
