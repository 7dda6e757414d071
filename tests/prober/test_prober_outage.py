"""The whole prober through a database outage: probing goes on, results are spooled, then replayed."""

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from prober.service import ProberService
from prober.spool import SPOOL_NAME
from tests.prober import targets
from tests.prober.conftest import fetch
from upwatch import config as configuration
from upwatch.db import open_pool
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.runtime import Runtime

REPO = Path(__file__).parents[2]


async def test_results_of_an_outage_are_all_stored_once(own_pg: EmbeddedPostgres, tmp_path: Path) -> None:
    url = own_pg.url
    await migrate(url)
    pool = await open_pool(url, max_size=4, name="outage-service")
    async with targets.serve(targets.app()) as base:
        path = tmp_path / "upwatch.yaml"
        path.write_text("endpoints:\n"
                        f"  - {{name: a, url: '{base}/ok', interval: 1s}}\n"
                        f"  - {{name: b, url: '{base}/status/500', interval: 1s}}\n"
                        f"prober: {{data_dir: '{tmp_path / 'data'}', flush_interval: 100ms}}\n"
                        f"push: {{listen: '127.0.0.1:{targets.closed_port()}'}}\n")
        service = ProberService(Runtime(configuration.load(path), path, url, pool))
        service.writer.connect_timeout_s = 0.3
        service.writer.retry_max_s = 0.3
        await service.start()
        stop = asyncio.Event()
        loop_task = asyncio.create_task(service.run_until(stop))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(own_pg.stop)
        outage_from = datetime.now(UTC)
        for _ in range(200):  # bounded (10 s): probing goes on while the database is away, into the spool
            if service.writer.stats.rows_spooled >= 6:
                break
            await asyncio.sleep(0.05)
        spooled_during_outage = service.writer.stats.rows_spooled
        outage_to = datetime.now(UTC)
        await asyncio.to_thread(own_pg.start)
        for _ in range(100):  # bounded (10 s): until the spool is replayed
            if not service.writer.spool_bytes:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await loop_task
        await service.stop()
    await pool.close()
    # A run skipped because its previous run was still going (a loaded machine) is stored too, as a
    # "skipped" row, but is not a check.
    produced = service.metrics.checks + service.scheduler.skipped
    rows = fetch(url, "SELECT e.name, r.time, r.id FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id"
                      " ORDER BY e.name, r.time")
    assert spooled_during_outage >= 6
    assert len(rows) == produced and len({r[2] for r in rows}) == len(rows)
    for name in ("a", "b"):  # each endpoint was probed before, during and after the outage
        times = [r[1] for r in rows if r[0] == name]
        assert times[0] < outage_from and any(outage_from < t < outage_to for t in times), (times, outage_from)


def spooled_ids(path: Path) -> set[str]:
    """Ids of the probe_results rows in the spool's complete lines (a line being appended is not counted)."""
    if not path.exists():
        return set()
    ids = set()
    for record in map(json.loads, path.read_bytes().split(b"\n")[:-1]):
        if record["table"] == "probe_results":
            column = record["columns"].index("id")
            ids |= {str(uuid.UUID(row[column])) for row in record["rows"]}
    return ids


def spooled_rows(path: Path) -> int:
    return len(spooled_ids(path))


async def test_sigkill_during_an_outage_loses_no_spooled_result(
        own_pg: EmbeddedPostgres, tmp_path: Path) -> None:
    url = own_pg.url
    await migrate(url)
    hits: list[float] = []  # wall-clock time of every check the target answered

    async def ok(request: web.Request) -> web.Response:
        hits.append(time.time())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ok/{n}", ok)
    names = [f"e{i}" for i in range(20)]
    data = tmp_path / "data"
    spool = data / "spool" / SPOOL_NAME
    async with targets.serve(app) as base:
        path = tmp_path / "upwatch.yaml"
        port = targets.closed_port()
        path.write_text("endpoints:\n" + "".join(f"  - {{name: {n}, url: '{base}/ok/{n}', interval: 1s}}\n"
                                                 for n in names)
                        + f"prober: {{data_dir: '{data}', flush_interval: 100ms}}\n"
                          f"push: {{listen: '127.0.0.1:{port}'}}\n")

        async def daemon() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "upwatch.cli", "--config", str(path), "prober", cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), "UPWATCH_DATABASE_URL": url},
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

        first = await daemon()
        try:
            for _ in range(300):  # bounded: until the first results are in the database
                if len(await asyncio.to_thread(fetch, url, "SELECT id FROM probe_results")) >= len(names):
                    break
                await asyncio.sleep(0.05)
            await asyncio.to_thread(own_pg.stop)
            for _ in range(300):  # bounded (15 s): probing goes on while the database is away, into the spool
                if spooled_rows(spool) >= 2 * len(names):
                    break
                await asyncio.sleep(0.05)
        finally:
            first.kill()
            killed_at = time.time()
            _, err = await first.communicate()
        answered = list(hits)
        assert first.returncode == -signal.SIGKILL, err.decode()
        on_disk = spooled_ids(spool)

        await asyncio.to_thread(own_pg.start)
        before_outage = {str(r[0]) for r in fetch(url, "SELECT id FROM probe_results")}
        second = await daemon()  # replays the spool on start
        try:
            for _ in range(300):
                if spool.stat().st_size == 0:
                    break
                await asyncio.sleep(0.05)
        finally:
            second.send_signal(signal.SIGTERM)
            _, err2 = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 0, err2.decode()
    # What the killed process had spooled is all replayed, once each, next to what was stored before. The
    # two may overlap: a batch whose commit reached the server as it stopped is also in the spool, and a
    # spool replayed while the process lived is truncated only once all of it is stored.
    rows = fetch(url, "SELECT id, error_kind FROM probe_results WHERE time < to_timestamp(%s)", killed_at)
    assert len({r[0] for r in rows}) == len(rows)
    assert len(on_disk) >= 2 * len(names) and {str(r[0]) for r in rows} == before_outage | on_disk
    # Runs skipped on a loaded machine are stored (and spooled) as "skipped" rows, without a request.
    assert len([r for r in rows if r[1] != "skipped"]) <= len(answered)
