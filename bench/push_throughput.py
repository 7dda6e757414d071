"""Push API throughput on loopback: batches of 500 and single records, at concurrency 32.

Runs the real push app (real BatchWriter, real PostgreSQL: embedded, or
$UPWATCH_DATABASE_URL) in this process and the load generator in a child
process. Prints records/s accepted, records/s durably stored (until every
accepted row is committed), p50/p99 response times, and the CPU seconds used
by the server process, the load generator and the embedded PostgreSQL. The
load generator sends pre-encoded requests over raw keep-alive connections so
that, on a 2-core machine, it takes little CPU away from the server.

    python bench/push_throughput.py [--seconds 5] [--concurrency 32] [--repeat 2] [--phases batch,single]
                                   [--analytics-rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import psutil
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from prober.writer import BatchWriter
from push import create_app, keys
from upwatch import config
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.runtime import Runtime


def record(i: int) -> dict[str, Any]:
    """One request as upwatch_client sends it (it always adds a timestamp)."""
    return {"timestamp": datetime.now(UTC).isoformat(), "method": "GET", "path": f"/users/{i % 1000}",
            "route": "/users/{id}", "status_code": 200 if i % 50 else 500, "latency_ms": float(i % 300),
            "source_ip": f"10.0.{i % 200}.{i % 250}", "user_agent": "bench/1.0",
            "request_headers": {"Authorization": "Bearer x", "Accept": "*/*"}, "tags": {"env": "bench"}}


def requests(host: str, port: int, path: str, key: str, batch: int) -> list[bytes]:
    """64 distinct POST requests, encoded once: the load generator must not be what limits the figure."""
    out = []
    for i in range(64):
        body = json.dumps([record(i * batch + j) for j in range(batch)] if batch > 1 else record(i)).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        out.append(head.encode() + body)
    return out


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one keep-alive request and read its response; the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def load(url: str, key: str, batch: int, seconds: float, concurrency: int) -> dict[str, Any]:
    """`concurrency` keep-alive connections posting pre-encoded requests for `seconds`."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    bodies = requests(parts.hostname, parts.port, parts.path, key, batch)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    wall_start = time.time()
    cpu_start = time.process_time()
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        i = n
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await exchange(reader, writer, bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            i += concurrency
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return {"elapsed": time.perf_counter() - started, "latencies": latencies, "statuses": statuses,
            "wall_start": wall_start, "cpu_s": time.process_time() - cpu_start}


def run_load(url: str, key: str, batch: int, seconds: float, concurrency: int, out: Any) -> None:
    out.send(asyncio.run(load(url, key, batch, seconds, concurrency)))


def database_cpu_s(server: EmbeddedPostgres | None) -> float:
    """CPU seconds used so far by the embedded PostgreSQL (postmaster and backends); 0 for an external one."""
    if server is None:
        return 0.0
    pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for proc in (psutil.Process(pid), *psutil.Process(pid).children()):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


async def phase(name: str, url: str, key: str, batch: int, args: argparse.Namespace, writer: BatchWriter,
                pool: Any, server: EmbeddedPostgres | None) -> None:
    async with pool.connection() as conn:
        before = (await (await conn.execute("SELECT count(*) FROM request_logs")).fetchone())[0]
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("spawn").Process(
        target=run_load, args=(url, key, batch, args.seconds, args.concurrency, send))
    cpu_before, db_before = time.process_time(), database_cpu_s(server)
    child.start()
    if not await asyncio.to_thread(receive.poll, args.seconds + 300):
        raise RuntimeError("the load generator sent no result")
    result = receive.recv()
    child.join()
    await writer.flush()
    stored_after = time.time() - result["wall_start"]  # from the first request until every row is committed
    cpu_s, db_cpu_s = time.process_time() - cpu_before, database_cpu_s(server) - db_before
    async with pool.connection() as conn:
        after = (await (await conn.execute("SELECT count(*) FROM request_logs")).fetchone())[0]
    accepted = result["statuses"].get(202, 0) * batch
    lat = sorted(result["latencies"])
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    print(f"{name}: requests={len(lat)} statuses={result['statuses']} "
          f"accepted={accepted / result['elapsed']:,.0f} records/s "
          f"stored={(after - before) / stored_after:,.0f} records/s ({after - before} rows) "
          f"requests/s={len(lat) / result['elapsed']:,.0f} p50={p(0.5):.1f}ms p99={p(0.99):.1f}ms "
          f"mean={statistics.fmean(lat) * 1000:.1f}ms")
    rows = max(1, after - before)
    print(f"  process CPU over {stored_after:.1f}s: server {cpu_s:.2f}s ({cpu_s / rows * 1e6:.0f} us/record), "
          f"load generator {result['cpu_s']:.2f}s, database {db_cpu_s:.2f}s ({db_cpu_s / rows * 1e6:.0f} us/record)"
          f"; load average {os.getloadavg()[0]:.2f}")


async def analytics_phase(base: str, key: str, rows: int, pool: Any) -> None:
    """Insert `rows` synthetic logs over 30 days (SQL), roll them up, then time GET /analytics."""
    from push import rollup

    started = time.perf_counter()
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM services WHERE name = 'bench'")
        service_id = (await cur.fetchone())[0]
        await conn.execute(
            "INSERT INTO request_logs (time, service_id, method, path, route, status_code, latency_ms, source_ip)"
            " SELECT now() - (i * (interval '30 days' / %s)), %s, (ARRAY['GET','POST','PUT'])[i %% 3 + 1],"
            " '/r/' || (i %% 50), '/r/{id}', CASE WHEN i %% 40 = 0 THEN 500 ELSE 200 END, (i %% 500)::float,"
            " ('10.0.' || (i %% 250) || '.' || (i %% 200))::inet FROM generate_series(1, %s) i",
            (rows, service_id, rows))
    inserted = time.perf_counter() - started
    started = time.perf_counter()
    await rollup.update(pool)
    print(f"analytics: inserted {rows:,} rows in {inserted:.1f}s, rollup built in {time.perf_counter() - started:.1f}s")
    for analyzed in (False, True):
        if analyzed:  # what autovacuum does within about a minute of a bulk load
            async with pool.connection() as conn:
                await conn.execute("ANALYZE request_logs, request_rollup_1m, request_client_ips_1h, request_status_1h")
        await _time_analytics(base, key, "after ANALYZE" if analyzed else "before ANALYZE")


async def _time_analytics(base: str, key: str, when: str) -> None:
    print(f"  {when}:")
    async with aiohttp.ClientSession() as session:
        for label, hours, bucket in (("1h raw", 1, "1m"), ("6h", 6, "5m"), ("24h rollup", 24, "1h"),
                                     ("30d rollup", 720, "1d")):
            params = {"from": datetime.fromtimestamp(time.time() - hours * 3600, UTC).isoformat(), "bucket": bucket}
            timings = []
            for _ in range(3):  # the first run reads cold pages; all three are printed
                t0 = time.perf_counter()
                async with session.get(f"{base}/analytics", params=params,
                                       headers={"Authorization": f"Bearer {key}"}) as resp:
                    body = await resp.json()
                timings.append(f"{(time.perf_counter() - t0) * 1000:.0f}")
            print(f"    GET /analytics {label}: {' / '.join(timings)} ms, status={resp.status}"
                  f" source={body.get('source')} requests={body.get('total_requests'):,}"
                  f" unique_ips={body.get('unique_client_ips'):,}")


async def _autocommit(conn: Any) -> None:
    await conn.set_autocommit(True)


async def main(args: argparse.Namespace) -> None:
    server = None
    url = os.environ.get("UPWATCH_DATABASE_URL")
    tmp = tempfile.mkdtemp(prefix="upwatch-push-bench-")
    os.chmod(tmp, 0o755)  # noqa: S103  the server's user (embedded_postgres, as root) must enter it; 0o701 fails
    if not url:
        server = EmbeddedPostgres(Path(tmp) / "pg", settings={"max_connections": "50"})
        url = server.start()
    try:
        await migrate(url)
        # Connections opened up front: a pool growing on demand competes with a saturated event loop.
        pool = AsyncConnectionPool(url, min_size=4, max_size=8, name="bench", open=False,
                                   configure=_autocommit)
        await pool.open(wait=True)
        cfg = config.parse("push:\n  rate_limit_per_key: 1000000\n  max_batch_records: 1000\n", "bench.yaml", {})
        runtime = Runtime(cfg, Path("bench.yaml"), url, pool)
        writer = BatchWriter(pool, Path(tmp) / "spool", queue_size=100_000)
        await writer.start()
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM services WHERE name = 'bench'")
            await keys.create_service(conn, "bench")
            key, _ = await keys.create_key(conn, "bench")
        root = web.Application()
        root.add_subapp("/api/v1", create_app(runtime, writer, admin_token=secrets.token_urlsafe()))
        runner = web.AppRunner(root, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        endpoint = f"http://127.0.0.1:{port}/api/v1/logs"
        for _ in range(args.repeat):
            if "batch" in args.phases:
                await phase("batch-500", endpoint, key, 500, args, writer, pool, server)
            if "single" in args.phases:
                await phase("single", endpoint, key, 1, args, writer, pool, server)
        if args.analytics_rows:
            await analytics_phase(endpoint.rsplit("/", 1)[0], key, args.analytics_rows, pool)
        await runner.cleanup()
        await writer.stop()
        await pool.close()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1, help="run the load phases this many times")
    parser.add_argument("--phases", default="batch,single", help="comma-separated: batch, single")
    parser.add_argument("--analytics-rows", type=int, default=0,
                        help="also insert this many logs over 30 days and time GET /analytics")
    asyncio.run(main(parser.parse_args()))
