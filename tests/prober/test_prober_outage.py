"""The whole prober through a database outage: probing goes on, results are spooled, then replayed."""

import asyncio
import time
from pathlib import Path

from prober.service import ProberService
from tests.prober import targets
from tests.prober.conftest import fetch
from upwatch import config as configuration
from upwatch.db import open_pool
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.runtime import Runtime


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
        await asyncio.sleep(3.0)  # probing goes on while the database is away
        spooled_during_outage = service.writer.stats.rows_spooled
        await asyncio.to_thread(own_pg.start)
        deadline = time.monotonic() + 10
        while service.writer.spool_bytes and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await loop_task
        await service.stop()
    await pool.close()
    produced = service.metrics.checks
    rows = fetch(url, "SELECT e.name, r.time, r.id FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id"
                      " ORDER BY e.name, r.time")
    assert spooled_during_outage >= 4
    assert len(rows) == produced and len({r[2] for r in rows}) == len(rows)
    for name in ("a", "b"):
        times = [r[1] for r in rows if r[0] == name]
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
        assert len(times) >= 5 and max(gaps) < 1.5  # one result every second, outage included
