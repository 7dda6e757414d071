"""Prober throughput: the real prober against N local HTTP endpoints at a 15 s interval.

Starts a multi-path aiohttp target on 127.0.0.1 in a separate process and a
private embedded PostgreSQL, runs the prober service (scheduler, checks,
writer, rollups, metrics) for a warm-up cycle plus --cycles measured cycles,
and prints checks/s, CPU ms per check (prober process, and PostgreSQL's
share), p50/p99 start lateness, skipped runs, rows written and RSS.

    python bench/prober_throughput.py --endpoints 1000 5000 --cycles 2

--cpu 0 pins this process (the prober) to one CPU; the target and PostgreSQL
stay free to run elsewhere. The event loop is uvloop when it is installed
(as upwatch runs), asyncio's with --asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prober.service import ProberService
from upwatch import config as configuration
from upwatch import db
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.runtime import Runtime, loop_factory

TARGET = """
import sys
from aiohttp import web
BODY = b'{"status":"UP","items":[1,2,3]}'
async def handle(request):
    return web.Response(body=BODY, content_type="application/json")
app = web.Application()
app.router.add_get("/t/{n}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, handle_signals=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_cpu_s(server: EmbeddedPostgres) -> float:
    """User+system CPU seconds of the postmaster and its children (backends, writer, wal writer...)."""
    pid = int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])
    main = psutil.Process(pid)
    total = 0.0
    for proc in [main, *main.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def write_config(path: Path, n: int, port: int, listen: int, data_dir: Path) -> None:
    lines = ["endpoints:"]
    for i in range(n):
        lines += [f"  - name: ep{i:05d}", f"    url: http://127.0.0.1:{port}/t/{i}", "    interval: 15s",
                  "    timeout: 5s", "    assertions: ['[STATUS] == 200', '[BODY].status == UP']"]
    lines += ["prober:", "  location: bench", "  instance: bench", f"  data_dir: {data_dir}",
              "  max_concurrency: 512", f"  per_host_concurrency: {max(32, n)}", "  config_poll_interval: 60s",
              "push:", f"  listen: 127.0.0.1:{listen}"]
    path.write_text("\n".join(lines) + "\n")


async def measure(n: int, cycles: int, url: str, server: EmbeddedPostgres, workdir: Path,
                  port: int) -> dict[str, float]:
    path = workdir / f"bench-{n}.yaml"
    write_config(path, n, port, free_port(), workdir / f"data-{n}")
    cfg = configuration.load(path)
    pool = await db.open_pool(url, max_size=4, name=f"bench-{n}")
    service = ProberService(Runtime(cfg, path, url, pool))
    lateness: list[float] = []
    if os.environ.get("BENCH_NO_ROLLUP"):  # to see what the rollup costs PostgreSQL
        service.writer.hooks["probe_results"].clear()
    service.scheduler.observers.append(lambda e, r, late: lateness.append(late) if late is not None else None)
    await service.start()
    me = psutil.Process()
    lags: list[float] = []

    async def watch_loop() -> None:  # how late a 100 ms sleep wakes up: the event loop's own delay
        while True:  # (10 wake-ups a second: this probe's own CPU stays out of the figures)
            t = time.perf_counter()
            await asyncio.sleep(0.1)
            lags.append(time.perf_counter() - t - 0.1)

    watcher = asyncio.create_task(watch_loop())
    await asyncio.sleep(15)  # warm-up: connections opened, every job has run once
    lateness.clear()
    lags.clear()
    checks0, skipped0, rows0 = service.metrics.checks, service.scheduler.skipped, service.writer.stats.rows_written
    profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    psutil.cpu_percent()  # starts the machine-wide busy measurement
    cpu0, pg0, t0 = me.cpu_times(), postgres_cpu_s(server), time.monotonic()
    if profiler:
        profiler.enable()
    await asyncio.sleep(15 * cycles)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats(os.environ["BENCH_PROFILE"]).print_stats(45)
    watcher.cancel()
    await service.writer.flush()
    cpu1, pg1, t1 = me.cpu_times(), postgres_cpu_s(server), time.monotonic()
    machine_busy = psutil.cpu_percent()  # all processes on the machine, other people's included
    checks = service.metrics.checks - checks0
    result = {
        "endpoints": n, "seconds": t1 - t0, "checks": checks, "checks_per_s": checks / (t1 - t0),
        "prober_cpu_ms_per_check": 1000 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / max(1, checks),
        "prober_user_ms_per_check": 1000 * (cpu1.user - cpu0.user) / max(1, checks),
        "postgres_cpu_ms_per_check": 1000 * (pg1 - pg0) / max(1, checks),
        "lateness_p50_ms": 1000 * statistics.median(lateness) if lateness else float("nan"),
        "lateness_p99_ms": 1000 * statistics.quantiles(lateness, n=100)[98] if len(lateness) > 1 else float("nan"),
        "lateness_max_ms": 1000 * max(lateness) if lateness else float("nan"),
        "loop_lag_p99_ms": 1000 * statistics.quantiles(lags, n=100)[98],
        "loop_lag_max_ms": 1000 * max(lags),
        "machine_busy_pct": machine_busy,
        "skipped": service.scheduler.skipped - skipped0,
        "failed": service.metrics.failures,
        "rows_written": service.writer.stats.rows_written - rows0,
        "rss_mb": me.memory_info().rss / 2**20,
    }
    await service.stop()
    await pool.close()
    return result


HEADER = ("{:>6} {:>9} {:>13} {:>7} {:>12} {:>7} {:>12} {:>12} {:>9} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8} {:>7}"
          .format("N", "checks/s", "cpu ms/check", "(user)", "pg ms/check", "total", "p50 late ms", "p99 late ms",
                  "max late", "skipped", "failed", "rows", "RSS MB", "lag p99", "lag max", "busy %"))


def line(n: int, r: dict[str, float]) -> str:
    """One row of the table under HEADER."""
    total = r["prober_cpu_ms_per_check"] + r["postgres_cpu_ms_per_check"]
    return (f"{n:>6} {r['checks_per_s']:>9.1f} {r['prober_cpu_ms_per_check']:>13.3f} "
            f"{r['prober_user_ms_per_check']:>7.3f} {r['postgres_cpu_ms_per_check']:>12.3f} {total:>7.3f} "
            f"{r['lateness_p50_ms']:>12.1f} {r['lateness_p99_ms']:>12.1f} {r['lateness_max_ms']:>9.1f} "
            f"{r['skipped']:>8} {r['failed']:>7} {r['rows_written']:>7} {r['rss_mb']:>7.0f} "
            f"{r['loop_lag_p99_ms']:>8.1f} {r['loop_lag_max_ms']:>8.1f} {r['machine_busy_pct']:>7.0f}")


async def main(args: argparse.Namespace, workdir: Path, server: EmbeddedPostgres, url: str, port: int) -> None:
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"loop={loop} cpu={'any' if args.cpu is None else args.cpu} python={sys.version.split()[0]}", flush=True)
    await migrate(url)
    await asyncio.sleep(1.0)
    print(HEADER, flush=True)
    for n in args.endpoints:
        print(line(n, await measure(n, args.cycles, url, server, workdir, port)), flush=True)


def run(args: argparse.Namespace) -> None:
    """Start the target server and PostgreSQL, then measure on the chosen event loop."""
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="upwatch-bench-"))
    workdir.chmod(0o755)  # the server's user (embedded_postgres, as root) must enter it
    server = EmbeddedPostgres(workdir / "pg", settings={"fsync": "off", "synchronous_commit": "off"})
    port = free_port()
    target = subprocess.Popen([sys.executable, "-c", TARGET, str(port)])
    try:
        url = server.start()
        if args.cpu is not None:  # after starting PostgreSQL and the target, which must not inherit it
            os.sched_setaffinity(0, {args.cpu})
        with asyncio.Runner(loop_factory=None if args.asyncio else loop_factory()) as runner:
            runner.run(main(args, workdir, server, url, port))
    finally:
        target.terminate()
        target.wait(10)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--cycles", type=int, default=4, help="measured 15 s cycles after one warm-up cycle")
    parser.add_argument("--asyncio", action="store_true", help="run on asyncio's loop even when uvloop is installed")
    parser.add_argument("--cpu", type=int, help="pin the prober (this process) to this CPU")
    run(parser.parse_args())
    os._exit(0)
