"""What reading the check phases with an endpoint's latency costs (#13.5): series.fetch of a week.

    python bench/detector_fetch.py [--days 7] [--reads 15]

One endpoint with `--days` of 15 s checks (all five phases measured) in a throwaway embedded
PostgreSQL ($UPWATCH_DATABASE_URL if set); times detector.series.fetch of the whole window (what
a training reads) with the phases, as the detector does now, against the same query packed
without them (as before phase reasons). Prints the median and the spread of `--reads` reads each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector import series as series_sql
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate

_HISTORY = (
    "INSERT INTO probe_results (time, endpoint_id, id, ok, latency_ms, dns_ms, connect_ms, tls_ms, ttfb_ms,"
    " transfer_ms) SELECT t, %(id)s, gen_random_uuid(), true, 80 + random() * 10, 2, 5, 20 + random() * 4,"
    " 50 + random() * 6, 3 FROM generate_series(%(since)s::timestamptz, %(until)s, '15 seconds') AS t"
)
# The latency query without its phase columns, packed as before.
_PLAIN = (
    "SELECT time, latency_ms::float8 FROM probe_results WHERE endpoint_id = %(endpoint_id)s AND ok"
    " AND latency_ms IS NOT NULL AND time > %(since)s AND time <= %(until)s ORDER BY time"
)


async def _timed(reads: int, read: Callable[[], Awaitable[None]]) -> list[float]:
    out = []
    for _ in range(reads):
        started = time.perf_counter()
        await read()
        out.append(time.perf_counter() - started)
    return out


async def _run(url: str, days: float, reads: int) -> None:
    await migrate(url)
    until = datetime.now(UTC)
    since = until - timedelta(days=days)
    async with AsyncConnectionPool(url, min_size=1, max_size=2, open=False) as pool:
        async with pool.connection() as conn:
            cur = await conn.execute("INSERT INTO endpoints (name, kind, target) VALUES ('bench', 'http',"
                                     " 'https://127.0.0.1/') RETURNING id")
            endpoint = int((await cur.fetchone() or [0])[0])
            await conn.execute(_HISTORY, {"id": endpoint, "since": since, "until": until})
            await conn.execute("ANALYZE probe_results")
        series = series_sql.Series("endpoint:bench:latency", "latency", "latency", "ms", endpoint_id=endpoint)
        params = {"endpoint_id": endpoint, "since": since - timedelta(seconds=1), "until": until}

        async def phased() -> None:
            async with pool.connection() as conn:
                frame = await series_sql.fetch(conn, series, since - timedelta(seconds=1), until)
            assert len(frame) > 0

        async def plain() -> None:
            async with pool.connection() as conn, conn.cursor(binary=True) as cur:
                await cur.execute(sql.SQL(series_sql._PACKED).format(sql.SQL(_PLAIN)), params)
                row = await cur.fetchone()
            assert row is not None and row[0]

        await phased()
        await plain()  # warm both
        for name, read in (("with phases", phased), ("without phases", plain)):
            times = await _timed(reads, read)
            print(f"fetch {days:g} d at 15 s ({int(days * 5760):,} rows) {name}: median "
                  f"{1000 * statistics.median(times):.1f} ms, min {1000 * min(times):.1f} ms, "
                  f"max {1000 * max(times):.1f} ms over {reads} reads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--reads", type=int, default=15)
    args = parser.parse_args()
    external = os.environ.get("UPWATCH_DATABASE_URL")
    if external:
        asyncio.run(_run(external, args.days, args.reads))
        return
    with tempfile.TemporaryDirectory(prefix="upwatch-fetch-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # the server's user (embedded_postgres, as root) must enter it
        server = EmbeddedPostgres(work / "pg", settings={"fsync": "off"})
        try:
            asyncio.run(_run(server.start(), args.days, args.reads))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
