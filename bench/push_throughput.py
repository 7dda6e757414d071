"""Push API throughput on loopback: batches of 500 and single records, at concurrency 32.

Prints, in one run: the COPY ceiling (ready rows through the writer's own COPY path, no HTTP in
front), then for each --workers count that many ingest worker processes (push.workers.serve, each
the real push app with its own BatchWriter, sharing one port with SO_REUSEPORT) against the real
PostgreSQL (embedded, or $UPWATCH_DATABASE_URL) with durable_ack: records/s accepted and durably
stored, p50/p99, transactions committed per record, and the CPU seconds per record of the servers,
the load generator and PostgreSQL. The load generator sends pre-encoded requests over raw
keep-alive connections so that, on a 2-core machine, it takes little CPU away from the servers.

    python bench/push_throughput.py [--seconds 5] [--concurrency 32] [--repeat 2] [--workers 1,2]
                                   [--phases copy,copy-binary,batch,single] [--copy-connections 1,2]
                                   [--group-window-ms 0,2] [--loop auto|asyncio] [--profile FILE]
                                   [--analytics-rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import json
import multiprocessing
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import psutil
import psycopg
from psycopg_pool import AsyncConnectionPool

from prober.copy import copy_rows
from prober.writer import BatchWriter
from push import context, keys, records, workers
from upwatch import config
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.rows import REQUEST_LOGS, Batch, new_ids
from upwatch.runtime import Runtime, loop_factory, run_async


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
    return cpu_s(psutil.Process(pid), children=True)


def cpu_s(proc: psutil.Process, *, children: bool = False) -> float:
    """CPU seconds (user + system) used so far by a process (and its live children)."""
    total = 0.0
    for one in (proc, *(proc.children() if children else ())):
        with contextlib.suppress(psutil.Error):
            times = one.cpu_times()
            total += times.user + times.system
    return total


def bench_config() -> config.Config:
    return config.parse("push:\n  rate_limit_per_key: 1000000\n  max_batch_records: 1000\n", "bench.yaml", {})


def run_worker(url: str, port: int, spool: str, profile: str | None, window_ms: float | None, loop: str,
               control: Any) -> None:
    """One ingest worker process (push.workers.serve with its own BatchWriter) until told to stop;
    `window_ms`: the group commit window instead of push.context.GROUP_WINDOW_S; `loop`: "auto" starts
    it as the daemon starts its workers (upwatch.runtime.run_async: uvloop when installed), "asyncio"
    on asyncio's own loop."""
    if window_ms is not None:
        context.GROUP_WINDOW_S = window_ms / 1000
    main = _worker(url, port, Path(spool), profile, control)
    run_async(main) if loop == "auto" else asyncio.run(main)


async def _worker(url: str, port: int, spool: Path, profile: str | None, control: Any) -> None:
    pool = AsyncConnectionPool(url, min_size=4, max_size=8, name="bench", open=False, configure=_autocommit)
    await pool.open(wait=True)  # opened up front: a pool growing on demand competes with a saturated loop
    writer = BatchWriter(pool, spool, queue_size=100_000)
    await writer.start()
    runner = await workers.serve(Runtime(bench_config(), Path("bench.yaml"), url, pool), writer, "127.0.0.1", port,
                                 admin_token=secrets.token_urlsafe())
    profiler = cProfile.Profile() if profile else None
    control.send("ready")
    while True:
        command = await asyncio.to_thread(control.recv)
        if command == "profile" and profiler is not None:
            profiler.enable()
        elif command == "stop":
            break
    if profiler is not None and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    await runner.cleanup()
    await writer.stop()
    await pool.close()
    control.send("stopped")


async def count_rows(pool: Any) -> tuple[int, int]:
    """Rows in request_logs, and transactions committed in this database so far."""
    async with pool.connection() as conn:
        rows = (await (await conn.execute("SELECT count(*) FROM request_logs")).fetchone())[0]
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        commits = (await (await conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")).fetchone())[0]
    return int(rows), int(commits)


async def phase(name: str, url: str, key: str, batch: int, args: argparse.Namespace, servers: list[psutil.Process],
                pool: Any, server: EmbeddedPostgres | None) -> None:
    before, commits_before = await count_rows(pool)
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("spawn").Process(
        target=run_load, args=(url, key, batch, args.seconds, args.concurrency, send))
    cpu_before, db_before = sum(cpu_s(p) for p in servers), database_cpu_s(server)
    child.start()
    if not await asyncio.to_thread(receive.poll, args.seconds + 300):
        raise RuntimeError("the load generator sent no result")
    result = receive.recv()
    child.join()
    # durable_ack (the default): every 202 followed its commit, so nothing is left to wait for.
    stored_after = time.time() - result["wall_start"]
    used_s, db_cpu_s = sum(cpu_s(p) for p in servers) - cpu_before, database_cpu_s(server) - db_before
    await asyncio.sleep(1.1)  # backends report their commit counts at most once a second
    after, commits = await count_rows(pool)
    accepted = result["statuses"].get(202, 0) * batch
    lat = sorted(result["latencies"])
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    print(f"{name} workers={len(servers)}: requests={len(lat)} statuses={result['statuses']} "
          f"accepted={accepted / result['elapsed']:,.0f} records/s "
          f"stored={(after - before) / stored_after:,.0f} records/s ({after - before} rows) "
          f"requests/s={len(lat) / result['elapsed']:,.0f} p50={p(0.5):.1f}ms p99={p(0.99):.1f}ms "
          f"mean={statistics.fmean(lat) * 1000:.1f}ms")
    rows = max(1, after - before)
    print(f"  transactions committed: {commits - commits_before} ({rows / max(1, commits - commits_before):.1f} records"
          " each, the benchmark's own counting and the workers' key-usage updates included)")
    print(f"  process CPU over {stored_after:.1f}s: server {used_s:.2f}s ({used_s / rows * 1e6:.0f} us/record), "
          f"load generator {result['cpu_s']:.2f}s, database {db_cpu_s:.2f}s ({db_cpu_s / rows * 1e6:.0f} us/record)"
          f"; server + database {(used_s + db_cpu_s) / rows * 1e6:.0f} us/record"
          f"; load average {os.getloadavg()[0]:.2f}")


async def copy_ceiling(url: str, seconds: float, server: EmbeddedPostgres | None, connections: int = 1) -> None:
    """COPY of ready rows through the writer's own path (prober.copy.copy_rows, 4 x 500 rows per
    transaction as a backlog is written, fsync and synchronous_commit on) on `connections` connections
    at once: what PostgreSQL and psycopg take at most, with no HTTP, parsing or validation in front."""
    valid = records.validate([record(i) for i in range(500)], privacy_level=0,
                             oldest=datetime.now(UTC) - timedelta(days=1))[0]
    template = records.batch(valid, service_id=1, privacy_level=0, sensitive=records.sensitive_set([]),
                             max_body_bytes=4096, now=datetime.now(UTC)).rows
    at = REQUEST_LOGS.columns.index("ingest_id")
    counts = [0] * connections
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(connections)]

    async def copying(n: int) -> None:
        while time.perf_counter() - started < seconds:
            ids = new_ids(4 * len(template))
            fresh = [(*row[:at], ids[i], *row[at + 1:]) for i, row in enumerate(template * 4)]
            async with conns[n].transaction():
                await copy_rows(conns[n], Batch(REQUEST_LOGS.name, REQUEST_LOGS.columns, fresh))
            counts[n] += len(fresh)

    cpu_before, db_before = time.process_time(), database_cpu_s(server)
    started = time.perf_counter()
    try:
        await asyncio.gather(*(copying(n) for n in range(connections)))
        elapsed = time.perf_counter() - started  # and CPU while the backends live: they count as the server's
        client_s, db_cpu_s = time.process_time() - cpu_before, database_cpu_s(server) - db_before
    finally:
        for conn in conns:
            await conn.close()
    _report_ceiling("COPY ceiling", sum(counts), elapsed, client_s, db_cpu_s, connections)


def _report_ceiling(label: str, rows: int, elapsed: float, client_s: float, db_cpu_s: float,
                    connections: int = 1) -> None:
    print(f"{label}: {rows / elapsed:,.0f} rows/s ({rows} rows, {connections} connection(s), 2,000 rows per commit); "
          f"client (fresh ids, psycopg) {client_s / rows * 1e6:.0f} us/row, database {db_cpu_s / rows * 1e6:.0f} us/row"
          f"; load average {os.getloadavg()[0]:.2f}")


async def copy_ceiling_binary(pool: Any, seconds: float, server: EmbeddedPostgres | None) -> None:
    """The COPY ceiling with psycopg's binary COPY (`FORMAT BINARY`, types set per column): PostgreSQL
    then parses no text timestamps, uuids or addresses. The rows are converted to the Python types the
    binary dumpers take (UUID, ip_address; JSON columns passed through as text) up front, so the client
    CPU shown is psycopg's binary formatting alone, not the conversion the server would add."""
    import ipaddress
    import uuid

    from psycopg import sql
    from psycopg.types.json import set_json_dumps

    valid = records.validate([record(i) for i in range(500)], privacy_level=0,
                             oldest=datetime.now(UTC) - timedelta(days=1))[0]
    template = records.batch(valid, service_id=1, privacy_level=0, sensitive=records.sensitive_set([]),
                             max_body_bytes=4096, now=datetime.now(UTC)).rows
    columns = REQUEST_LOGS.columns
    at, ip_at = columns.index("ingest_id"), columns.index("source_ip")
    template = [(*r[:ip_at], r[ip_at] and ipaddress.ip_address(r[ip_at]), *r[ip_at + 1:]) for r in template]
    rows = 0
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                                 " WHERE attrelid = 'request_logs'::regclass AND attnum > 0")
        types = dict(await cur.fetchall())
        set_json_dumps(lambda value: value if isinstance(value, str) else json.dumps(value), conn)
        statement = sql.SQL("COPY request_logs ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)))
        cpu_before, db_before = time.process_time(), database_cpu_s(server)
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            ids = [uuid.UUID(i) for i in new_ids(4 * len(template))]
            fresh = [(*row[:at], ids[i], *row[at + 1:]) for i, row in enumerate(template * 4)]
            async with conn.transaction(), conn.cursor().copy(statement) as copy:
                copy.set_types([types[c] for c in columns])
                for row in fresh:
                    await copy.write_row(row)
            rows += len(fresh)
        elapsed = time.perf_counter() - started
        client_s, db_cpu_s = time.process_time() - cpu_before, database_cpu_s(server) - db_before
    _report_ceiling("COPY ceiling, binary", rows, elapsed, client_s, db_cpu_s)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_workers(url: str, count: int, tmp: str, profile: str | None,
                        window_ms: float | None, loop: str) -> tuple[int, list[Any]]:
    """`count` ingest worker processes sharing one port; (port, [(process, control pipe)])."""
    port = free_port()
    started = []
    for n in range(count):
        mine, theirs = multiprocessing.Pipe()
        proc = multiprocessing.get_context("spawn").Process(
            target=run_worker, args=(url, port, str(Path(tmp) / f"spool-{count}-{n}"),
                                     f"{profile}.{count}.{n}" if profile else None, window_ms, loop, theirs))
        proc.start()
        if not await asyncio.to_thread(mine.poll, 120) or mine.recv() != "ready":
            raise RuntimeError("an ingest worker did not start")
        started.append((proc, mine))
    return port, started


async def stop_workers(started: list[Any]) -> None:
    for _, control in started:
        control.send("stop")
    for proc, control in started:
        await asyncio.to_thread(control.poll, 60)
        proc.join(10)


async def main(args: argparse.Namespace) -> None:
    server = None
    url = os.environ.get("UPWATCH_DATABASE_URL")
    tmp = tempfile.mkdtemp(prefix="upwatch-push-bench-")
    os.chmod(tmp, 0o755)  # noqa: S103  the server's user (embedded_postgres, as root) must enter it; 0o701 fails
    if not url:
        server = EmbeddedPostgres(Path(tmp) / "pg", settings={"max_connections": "80"})
        url = server.start()
    try:
        await migrate(url)
        pool = AsyncConnectionPool(url, min_size=2, max_size=4, name="bench", open=False, configure=_autocommit)
        await pool.open(wait=True)
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM services WHERE name = 'bench'")
            await keys.create_service(conn, "bench")
            key, _ = await keys.create_key(conn, "bench")
        counts = [int(n) for n in str(args.workers).split(",")]
        windows = [float(ms) for ms in args.group_window_ms.split(",")] if args.group_window_ms else [None]
        print(f"workers' event loop: {'uvloop' if args.loop == 'auto' and loop_factory() else 'asyncio'}")
        for _ in range(args.repeat):
            if "copy" in args.phases.split(","):
                for connections in [int(n) for n in str(args.copy_connections).split(",")]:
                    await copy_ceiling(url, args.seconds, server, connections)
            if "copy-binary" in args.phases.split(","):
                await copy_ceiling_binary(pool, args.seconds, server)
            for count, window_ms in itertools.product(counts, windows):
                port, started = await start_workers(url, count, tmp, args.profile, window_ms, args.loop)
                if window_ms is not None:
                    print(f"group commit window {window_ms:g} ms:")
                servers = [psutil.Process(proc.pid) for proc, _ in started]
                endpoint = f"http://127.0.0.1:{port}/api/v1/logs"
                for _, control in started:
                    control.send("profile")
                if "batch" in args.phases:
                    await phase("batch-500", endpoint, key, 500, args, servers, pool, server)
                if "single" in args.phases:
                    await phase("single", endpoint, key, 1, args, servers, pool, server)
                if args.analytics_rows and (count, window_ms) == (counts[-1], windows[-1]):
                    await analytics_phase(endpoint.rsplit("/", 1)[0], key, args.analytics_rows, pool)
                await stop_workers(started)
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
    parser.add_argument("--phases", default="copy,batch,single",
                        help="comma-separated: copy, copy-binary, batch, single")
    parser.add_argument("--workers", default="1,2",
                        help="ingest worker processes sharing the port; comma-separated counts run one after another")
    parser.add_argument("--copy-connections", default="1,2",
                        help="the COPY ceiling on this many connections at once; comma-separated counts")
    parser.add_argument("--analytics-rows", type=int, default=0,
                        help="also insert this many logs over 30 days and time GET /analytics")
    parser.add_argument("--group-window-ms", default="", metavar="MS[,MS]",
                        help="group commit window(s) of the workers (default: push.context.GROUP_WINDOW_S)")
    parser.add_argument("--loop", choices=("auto", "asyncio"), default="auto",
                        help="the workers' event loop: auto (as the daemon: uvloop when installed) or asyncio")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile each worker's load phases into FILE.<workers>.<n>")
    asyncio.run(main(parser.parse_args()))
