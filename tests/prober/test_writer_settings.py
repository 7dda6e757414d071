"""prober.writer_stuck_after and prober.push_queue_share, from the config file to the running writer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from prober.service import ProberService
from tests.prober import targets
from tests.prober.conftest import result_row
from upwatch import config as configuration
from upwatch.config import ConfigError
from upwatch.runtime import Runtime


@pytest.mark.parametrize(("setting", "message"), [
    ("writer_stuck_after: 1s", "prober.writer_stuck_after: must be longer than flush_interval (1s)"),
    ("writer_stuck_after: soon", "prober.writer_stuck_after: 'soon' is not a duration (use e.g. 15s, 5m, 1h, 7d)"),
    ("push_queue_share: 0", "prober.push_queue_share: Input should be greater than 0 (got 0)"),
    ("push_queue_share: 1.5", "prober.push_queue_share: Input should be less than or equal to 1 (got 1.5)"),
], ids=["not-above-flush", "not-a-duration", "zero-share", "share-above-one"])
def test_bad_writer_settings_name_file_line_and_key(setting: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        configuration.parse(f"prober:\n  flush_interval: 1s\n  {setting}\n", "upwatch.yaml", {})
    assert str(caught.value) == f"upwatch.yaml:3: {message}"


async def test_configured_share_and_stuck_time_reach_the_running_writer(
        tmp_path: Path, database_url: str, pool: AsyncConnectionPool) -> None:
    port = targets.closed_port()
    async with targets.serve(targets.app()) as base, aiohttp.ClientSession() as client:
        path = tmp_path / "upwatch.yaml"
        path.write_text(f"endpoints:\n  - {{name: a, url: '{base}/ok', interval: 1s}}\n"
                        f"prober:\n  data_dir: {tmp_path / 'data'}\n  queue_size: 200\n  flush_interval: 100ms\n"
                        f"  push_queue_share: 0.25\n  writer_stuck_after: 2s\n"
                        f"push:\n  listen: 127.0.0.1:{port}\n")
        svc = ProberService(Runtime(configuration.load(path), path, database_url, pool))
        await svc.start()
        lock = await psycopg.AsyncConnection.connect(database_url)
        try:
            endpoint_id = svc.ids["a"]
            # No await in between: the flusher cannot take rows away, so the queue holds exactly these.
            rows = [result_row(endpoint_id, i) for i in range(51)]
            assert svc.writer.offer("probe_results", rows[:50 - svc.writer.queue_rows], external=True)
            assert not svc.writer.offer("probe_results", rows[50:], external=True)  # a quarter of 200 is full
            assert svc.writer.offer("probe_results", rows[50:])  # the rest is kept for probe results

            async def healthz(status: int) -> dict[str, Any]:
                for _ in range(300):  # bounded: about 15 s, far below the 30 s default of stuck_after
                    async with client.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        if resp.status == status:
                            return dict(await resp.json())
                    await asyncio.sleep(0.05)
                raise AssertionError(f"/healthz never answered {status}")

            assert (await healthz(200))["writer_stuck"] is False
            await lock.execute("LOCK TABLE probe_results IN ACCESS EXCLUSIVE MODE")  # every COPY now waits
            assert (await healthz(503))["writer_stuck"] is True
            await lock.rollback()
            assert (await healthz(200))["writer_stuck"] is False
        finally:
            await lock.rollback()
            await lock.close()
            await svc.stop()
