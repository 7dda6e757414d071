"""Lease-based sharding (prober.shard: auto): how long a killed prober's endpoints go unprobed, and
what leasing costs at 20,000 endpoints.

Takeover: three real `upwatch prober` processes with the default lease (ttl 10 s, renewed every
2.5 s, 64 slots) share --endpoints endpoints at a 15 s interval against a local HTTP server, on a
throwaway embedded PostgreSQL. Once every slot is held, one prober is killed with SIGKILL; the bench
waits until every endpoint it probed has a result from another prober and prints, per endpoint,
the gap between its last result before the kill and the first after (the goal is within two
intervals, 30 s), and the number of results from two probers for one endpoint within half an
interval (double probing; the goal is 0).

Overhead (in this process, --scale endpoints): the CPU of one renewal (a transaction of five
statements whatever the number of endpoints), of re-applying the jobs when the slots held change
(scheduler.apply over every endpoint), and of the per-run ownership check.

    python bench/prober_leases.py [--endpoints 96] [--scale 20000]

Not a test: it prints figures and exits 0; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from aiohttp import web  # noqa: E402

from prober.checks.http import new_session  # noqa: E402
from prober.leases import Leases  # noqa: E402
from prober.scheduler import Scheduler, stable_hash  # noqa: E402
from prober.writer import BatchWriter  # noqa: E402
from upwatch import config as configuration  # noqa: E402
from upwatch.db import open_pool  # noqa: E402
from upwatch.embedded import EmbeddedPostgres  # noqa: E402
from upwatch.migrate import migrate  # noqa: E402

INTERVAL_S = 15


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


async def target() -> tuple[web.AppRunner, str]:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")
    app = web.Application()
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def write_config(work: Path, base: str, instance: str, endpoints: int) -> Path:
    path = work / f"{instance}.yaml"
    lines = "".join(f"  - name: ep{i:05d}\n    url: {base}/ok\n    interval: {INTERVAL_S}s\n" for i in range(endpoints))
    path.write_text(f"endpoints:\n{lines}prober:\n  instance: {instance}\n  location: bench\n  shard: auto\n"
                    f"  data_dir: {work / instance}\npush:\n  listen: 127.0.0.1:{free_port()}\n")
    return path


async def wait(url: str, sql: str, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if query(url, sql)[0][0]:
            return True
        await asyncio.sleep(0.5)
    return False


async def takeover(url: str, work: Path, endpoints: int) -> None:
    runner, base = await target()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "UPWATCH_DATABASE_URL": url}
    procs = {}
    try:
        for name in ("p1", "p2", "p3"):
            procs[name] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "upwatch.cli", "--config", str(write_config(work, base, name, endpoints)),
                "prober", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        steady = await wait(url, "SELECT count(DISTINCT split_part(holder, '/', 1)) = 3 AND bool_and(holder IS NOT"
                                 " NULL) FROM prober_slots WHERE location = 'bench'", 120)
        await wait(url, f"SELECT count(DISTINCT endpoint_id) = {endpoints} FROM probe_results", 60)
        slots = {int(str(r[0])) for r in query(url, "SELECT slot FROM prober_slots WHERE holder LIKE 'p2/%'")}
        victims = [f"ep{i:05d}" for i in range(endpoints) if stable_hash(f"ep{i:05d}") % 64 in slots]
        procs["p2"].send_signal(signal.SIGKILL)
        await procs["p2"].wait()
        killed = query(url, "SELECT now()")[0][0]
        names = ",".join(victims)
        done = await wait(url, f"SELECT count(DISTINCT e.name) = {len(victims)} FROM probe_results r JOIN endpoints e"
                               f" ON e.id = r.endpoint_id WHERE r.prober <> 'p2' AND r.time > '{killed}'"
                               f" AND e.name = ANY('{{{names}}}')", 120)
        rows = query(url, f"""
            SELECT extract(epoch FROM first - last), extract(epoch FROM first - '{killed}') FROM (
                SELECT (SELECT min(time) FROM probe_results r WHERE r.endpoint_id = e.id AND r.time > '{killed}') first,
                       (SELECT max(time) FROM probe_results r WHERE r.endpoint_id = e.id AND r.time <= '{killed}') last
                FROM endpoints e WHERE e.name = ANY('{{{names}}}')) t WHERE first IS NOT NULL AND last IS NOT NULL""")
        gaps, since_kill = [float(str(r[0])) for r in rows], [float(str(r[1])) for r in rows]
        doubled = query(url, "SELECT count(*) FROM probe_results a JOIN probe_results b"
                             " ON a.endpoint_id = b.endpoint_id AND a.prober < b.prober"
                             f" AND abs(extract(epoch FROM a.time - b.time)) < {INTERVAL_S / 2}")
        print(f"takeover: {endpoints} endpoints at {INTERVAL_S}s on 3 probers (steady={steady}); killed p2 holding "
              f"{len(slots)} of 64 slots, {len(victims)} endpoints; all taken over: {done}")
        if gaps:
            print(f"  gap between last result before the kill and first after: median {statistics.median(gaps):.1f} s, "
                  f"max {max(gaps):.1f} s (goal: within two intervals, {2 * INTERVAL_S} s); from the kill to the first "
                  f"result by another prober: median {statistics.median(since_kill):.1f} s, "
                  f"max {max(since_kill):.1f} s")
        print(f"  results from two probers for one endpoint within half an interval: {doubled[0][0]} (goal 0)")
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        await runner.cleanup()


async def overhead(url: str, work: Path, scale: int) -> None:
    path = work / "scale.yaml"
    # An hour apart: next to nothing runs during the measurement (only the bookkeeping is measured).
    path.write_text("endpoints:\n" + "".join(f"  - name: s{i:06d}\n    url: http://127.0.0.1:9/ok\n    interval: 1h\n"
                                               for i in range(scale)))
    endpoints = configuration.load(path).endpoints
    ids = {e.name: i + 1 for i, e in enumerate(endpoints)}
    pool = await open_pool(url, max_size=2, name="bench-leases")
    session = new_session(4)
    try:
        writer = BatchWriter(pool, work / "spool")
        leases = [Leases(pool, location="scale", instance=f"s{i}", slots=64, ttl_s=10.0, slot_of=stable_hash)
                  for i in range(2)]
        await leases[0].renew()
        cpu = time.process_time()
        rounds = 50
        for _ in range(rounds):
            await leases[0].renew()
        renew_ms = (time.process_time() - cpu) / rounds * 1000
        wall = time.perf_counter()
        for _ in range(rounds):
            await leases[0].renew()
        renew_wall_ms = (time.perf_counter() - wall) / rounds * 1000
        scheduler = Scheduler(session, writer, location="scale", prober="s0", shard=leases[0])
        scheduler.start()  # as in the daemon (a scheduler not started yet keeps its jobs in a list)
        scheduler.apply(endpoints, ids)  # all 64 slots: every endpoint
        await leases[1].renew()
        await leases[0].renew()  # gives back half
        cpu = time.process_time()
        _, _, removed = scheduler.apply(endpoints, ids)
        apply_ms = (time.process_time() - cpu) * 1000
        scheduler.shutdown()
        cpu = time.process_time()
        for e in endpoints:
            leases[0].owns(e.name)
        owns_us = (time.process_time() - cpu) / len(endpoints) * 1e6
        print(f"overhead at {scale:,} endpoints: renewal {renew_ms:.2f} ms CPU in this process "
              f"({renew_wall_ms:.2f} ms wall incl. PostgreSQL) every 2.5 s; re-applying the jobs after the share "
              f"changed ({len(removed):,} removed) {apply_ms:.0f} ms CPU; ownership check per run {owns_us:.2f} us")
    finally:
        await session.close()
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=96)
    parser.add_argument("--scale", type=int, default=20_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="upwatch-bench-"))
    work.chmod(0o755)  # the server's user (as root: embedded_postgres) must enter it
    server = EmbeddedPostgres(work / "pg")
    url = server.start()
    try:
        asyncio.run(migrate(url, timescaledb="off"))
        print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
        asyncio.run(takeover(url, work, args.endpoints))
        asyncio.run(overhead(url, work, args.scale))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
