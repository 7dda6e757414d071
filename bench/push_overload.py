"""Push overload next to probing: are probe results still stored, and what does push get through?

Runs the real push app and the real BatchWriter (default queue of 50,000 rows,
embedded PostgreSQL) in this process, offers probe results at a steady rate as
the scheduler does (`--probe-rate` rows/s, 1,333 = 20,000 endpoints at 15 s),
and overloads POST /logs from a child process (`--concurrency` keep-alive
connections posting batches of `--batch` records as fast as answered, or with
`--polite` waiting Retry-After after each 503 as upwatch_client does). Prints
probe results offered / refused, push records accepted per second, the answers
by status, and how many refused push requests were read before being refused.

    flock /tmp/upwatch-cpu.lock python bench/push_overload.py [--seconds 10] [--concurrency 96] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp import web
from psycopg_pool import AsyncConnectionPool
from push_throughput import _autocommit, exchange, requests, run_load

from prober.writer import BatchWriter
from push import create_app, keys
from upwatch import config
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.runtime import Runtime


async def probe(writer: BatchWriter, endpoint_id: int, rate: float, stop: asyncio.Event) -> tuple[int, int]:
    """Offer `rate` probe results per second, one row per offer as the scheduler does: (offered, refused)."""
    offered = refused = 0
    started = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - started) * rate)
        while offered < due:
            row = {"time": datetime.now(UTC), "endpoint_id": endpoint_id, "ok": True, "latency_ms": 1.0}
            refused += not writer.offer("probe_results", [row])
            offered += 1
        await asyncio.sleep(0.01)
    return offered, refused


async def polite_load(url: str, key: str, batch: int, seconds: float, concurrency: int) -> dict[str, Any]:
    """Like push_throughput.load, but each connection waits Retry-After (1 s) after a 503, as
    upwatch_client (and any well-behaved client) does."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.hostname and parts.port
    bodies = requests(parts.hostname, parts.port, parts.path, key, batch)
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        i = n
        while time.perf_counter() < deadline:
            status = await exchange(reader, writer, bodies[i % len(bodies)])
            statuses[status] = statuses.get(status, 0) + 1
            if status == 503:
                await asyncio.sleep(1.0)
            i += concurrency
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return {"elapsed": time.perf_counter() - started, "statuses": statuses}


def run_polite_load(url: str, key: str, batch: int, seconds: float, concurrency: int, out: Any) -> None:
    out.send(asyncio.run(polite_load(url, key, batch, seconds, concurrency)))


async def main(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="upwatch-overload-bench-")
    server = EmbeddedPostgres(Path(tmp) / "pg", settings={"max_connections": "50"})
    url = server.start()
    try:
        await migrate(url)
        pool = AsyncConnectionPool(url, min_size=4, max_size=8, name="bench", open=False, configure=_autocommit)
        await pool.open(wait=True)
        cfg = config.parse("push:\n  rate_limit_per_key: 1000000\n  max_batch_records: 1000\n", "bench.yaml", {})
        writer = BatchWriter(pool, Path(tmp) / "spool")  # the prober's defaults: queue_size 50,000
        await writer.start()
        async with pool.connection() as conn:
            await keys.create_service(conn, "bench")
            key, _ = await keys.create_key(conn, "bench")
            cur = await conn.execute("INSERT INTO endpoints (name, kind) VALUES ('probe', 'http') RETURNING id")
            endpoint_id = (await cur.fetchone())[0]
        root = web.Application()
        app = create_app(Runtime(cfg, Path("bench.yaml"), url, pool), writer, admin_token=secrets.token_urlsafe())
        root.add_subapp("/api/v1", app)
        runner = web.AppRunner(root, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        stop = asyncio.Event()
        prober = asyncio.create_task(probe(writer, endpoint_id, args.probe_rate, stop))
        receive, send = multiprocessing.Pipe(duplex=False)
        target = run_polite_load if args.polite else run_load
        child = multiprocessing.get_context("spawn").Process(target=target, args=(
            f"http://127.0.0.1:{port}/api/v1/logs", key, args.batch, args.seconds, args.concurrency, send))
        child.start()
        if not await asyncio.to_thread(receive.poll, args.seconds + 300):
            raise RuntimeError("the load generator sent no result")
        result: dict[str, Any] = receive.recv()
        child.join()
        stop.set()
        offered, refused = await prober
        await writer.flush()
        async with pool.connection() as conn:
            stored = (await (await conn.execute("SELECT count(*) FROM probe_results")).fetchone())[0]
        statuses = result["statuses"]
        stats = writer.stats
        unread = getattr(stats, "requests_refused_unread", 0)
        read_then_refused = statuses.get(503, 0) - unread
        print(f"probe results: offered={offered} refused={refused} ({refused / max(1, offered):.1%}) stored={stored}")
        print(f"push: statuses={statuses} accepted={statuses.get(202, 0) * args.batch / result['elapsed']:,.0f}"
              f" records/s; 503s refused unread={unread}, read and parsed first={read_then_refused}"
              f" ({read_then_refused * args.batch:,} records); load average {os.getloadavg()[0]:.2f}")
        await runner.cleanup()
        await writer.stop()
        await pool.close()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=96)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--probe-rate", type=float, default=1333.0)
    parser.add_argument("--polite", action="store_true", help="clients wait Retry-After after a 503")
    asyncio.run(main(parser.parse_args()))
