"""`push:` the HTTP listener that serves the push API, /metrics and /healthz."""

from __future__ import annotations

from pydantic import Field, field_validator

from upwatch.config.base import Section
from upwatch.durations import PositiveDuration

MAX_WORKERS = 32


class Push(Section):
    listen: str = "127.0.0.1:8080"
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_batch_records: int = Field(default=1000, ge=1)
    max_stored_body_bytes: int = Field(default=16 * 1024, ge=0)
    rate_limit_per_key: float = Field(default=100.0, gt=0, description="requests per second")
    sensitive_headers: list[str] = Field(default_factory=list)
    # Names masked wherever they appear (headers, query parameters, JSON and form fields), in
    # addition to the built-in secret words; matched by tokens (see push/masking.py).
    secret_names: list[str] = Field(default_factory=list)
    # Answer 202 only once the rows are committed (or fsync'd to the writer's spool), so a
    # killed process cannot lose what it acknowledged. Off: answer as soon as they are queued.
    durable_ack: bool = True
    # While the database is unreachable, a key verified within this long is still accepted
    # (answers stay 202, rows are spooled); older or unseen keys get 503 until it is back.
    key_outage_grace: PositiveDuration = Field(default="24h", validate_default=True)
    # Processes serving POST /logs on push.listen (SO_REUSEPORT); 1: the prober's own listener only.
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS, strict=True)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} must be host:port, e.g. 127.0.0.1:8080")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])
