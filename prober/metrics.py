"""/metrics: blackbox_exporter's families for each endpoint's last result, and the prober's own health."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from prober.exposition import CONTENT_TYPE, Exposition, add_probe
from prober.writer import BatchWriter
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            out.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        out += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.total:.6f}",
                f"{name}_count {self.count}"]
        return out


class Metrics:
    """Keeps the last result of each endpoint and counts checks; `render` gives the /metrics body."""

    content_type = CONTENT_TYPE  # of the body `render` gives

    def __init__(self, location: str) -> None:
        self.location = location
        self.last: dict[str, tuple[Endpoint, ProbeResult]] = {}
        self.lateness = Histogram(LATENESS_BUCKETS)
        self.checks = 0
        self.failures = 0

    def observe(self, endpoint: Endpoint, result: ProbeResult, lateness_s: float | None) -> None:
        """Scheduler observer: remember the result; skipped runs only count."""
        if result.error_kind == "skipped":
            return
        self.last[endpoint.name] = (endpoint, result)
        self.checks += 1
        self.failures += not result.ok
        if lateness_s is not None:
            self.lateness.observe(lateness_s)

    def forget(self, names: list[str]) -> None:
        for name in names:
            self.last.pop(name, None)

    def render(self, writer: BatchWriter, skipped: int, scheduler_running: bool) -> str:
        lines: list[str] = []
        self._endpoint_lines(lines)
        stats = writer.stats
        health = [
            ("upwatch_prober_up", "gauge", "1 while the scheduler runs", int(scheduler_running)),
            ("upwatch_prober_checks_total", "counter", "checks completed", self.checks),
            ("upwatch_prober_check_failures_total", "counter", "checks that failed", self.failures),
            ("upwatch_prober_skipped_runs_total", "counter", "runs skipped: previous still running", skipped),
            ("upwatch_writer_queue_rows", "gauge", "rows waiting in the writer queue", writer.queue_rows),
            ("upwatch_writer_spool_bytes", "gauge", "bytes in the spool not yet replayed", writer.spool_bytes),
            ("upwatch_writer_rows_written_total", "counter", "rows stored in the database", stats.rows_written),
            ("upwatch_writer_rows_spooled_total", "counter", "rows written to the spool", stats.rows_spooled),
            ("upwatch_writer_rows_dropped_total", "counter", "rows dropped: spool full", stats.rows_dropped),
            ("upwatch_writer_rows_rejected_total", "counter", "rows the database refused", stats.rows_rejected),
            ("upwatch_writer_rows_refused_total", "counter", "rows refused: queue full", stats.rows_refused),
            ("upwatch_writer_external_rows_refused_total", "counter",
             "pushed rows refused: the push share of the queue is full", stats.external_rows_refused),
            ("upwatch_push_requests_refused_unread_total", "counter",
             "push requests refused (503) before their body was read: queue full", stats.requests_refused_unread),
            ("upwatch_writer_database_up", "gauge", "1 while the database takes writes", int(stats.database_ok)),
        ]
        for name, kind, help_text, value in health:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        name = "upwatch_prober_start_lateness_seconds"
        lines += [f"# HELP {name} check start time minus its scheduled time", f"# TYPE {name} histogram"]
        lines += self.lateness.lines(name)
        return "\n".join(lines) + "\n"

    def _endpoint_lines(self, lines: list[str]) -> None:
        out = Exposition()
        for name in sorted(self.last):
            endpoint, result = self.last[name]
            labels = (("endpoint", name), ("kind", endpoint.kind), ("location", self.location))
            add_probe(out, endpoint.kind, result, labels, timeout_s=endpoint.timeout.total_seconds(),
                      assertions=endpoint.assertions)
        lines += out.lines()
