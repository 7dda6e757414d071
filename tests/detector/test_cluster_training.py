"""Training on a real Dask cluster (detector.cluster): a distributed.LocalCluster on 127.0.0.1 with a
worker process of its own trains the live detector's model; the config checks the address."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from psycopg_pool import AsyncConnectionPool

from detector.cluster import training_executor
from detector.service import LiveDetector
from tests.detector.test_service import SERIES, _add_checks, endpoint  # noqa: F401 -- `endpoint` is a fixture
from upwatch import config as configuration
from upwatch.config import ConfigError
from upwatch.config.detector import Detector


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    # distributed's import gives its logger a handler on the stderr of that moment, which is
    # pytest's capture of one test, and the root logger may hold another test's closed capture:
    # the scheduler thread's later "Remove client" lines were written to a closed file ("---
    # Logging error ---"). For the cluster's lifetime its warnings go to the real stderr only.
    distributed_logger = logging.getLogger("distributed")
    handlers, propagate = distributed_logger.handlers[:], distributed_logger.propagate
    real_stderr = logging.StreamHandler(sys.__stderr__)
    real_stderr.setLevel(logging.WARNING)
    try:  # from the first change on: the handler goes and the old ones come back whatever fails
        for handler in handlers:
            distributed_logger.removeHandler(handler)
        distributed_logger.addHandler(real_stderr)
        distributed_logger.propagate = False
        # One worker process (not a thread of this one): the fit is pickled, sent and run elsewhere.
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=logging.ERROR) as cluster:
            yield str(cluster.scheduler_address)
    finally:
        distributed_logger.removeHandler(real_stderr)
        for handler in handlers:
            distributed_logger.addHandler(handler)
        distributed_logger.propagate = propagate


@pytest.mark.timeout(180)
async def test_the_live_detector_trains_on_the_cluster(pool: AsyncConnectionPool, endpoint: int,  # noqa: F811
                                                       scheduler: str, tmp_path: Path) -> None:
    from distributed import Client

    settings = Detector(min_training_rows=500, min_training_span="1h", model_dir=tmp_path / "models",
                        cluster=scheduler)
    rng = np.random.default_rng(0)
    now = datetime.now(UTC).replace(microsecond=0)
    history = [now - timedelta(hours=3) + timedelta(seconds=15 * i) for i in range(700)]
    await _add_checks(pool, endpoint, history, list(100 * np.exp(rng.normal(0, 0.08, len(history)))))
    with training_executor(settings) as executor:
        live = LiveDetector(pool, settings, executor)
        await live.tick(now)
        await live.drain()
    assert live.states[SERIES].artifact is not None
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT status, version FROM detector_models WHERE series = %s", (SERIES,))
        assert await cur.fetchone() == ("ready", 1)
    with Client(scheduler, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        # The scheduler's own record: the fit ran as a task on the cluster, not in this process.
        prefixes = client.run_on_scheduler(lambda dask_scheduler: {  # type: ignore[no-untyped-call]
            name: dict(prefix.state_counts) for name, prefix in dask_scheduler.task_prefixes.items()})
    assert prefixes.get("fit", {}).get("memory", 0) + prefixes.get("fit", {}).get("released", 0) + \
        prefixes.get("fit", {}).get("forgotten", 0) >= 1, prefixes


def test_the_cluster_address_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "upwatch.yaml"
    path.write_text("endpoints: []\ndetector:\n  cluster: scheduler:8786\n")
    with pytest.raises(ConfigError) as caught:
        configuration.load(path, environ={})
    assert "upwatch.yaml:3: detector.cluster: 'scheduler:8786' is not a Dask scheduler address" in str(caught.value)


def test_without_a_cluster_training_uses_local_processes() -> None:
    from concurrent.futures import ProcessPoolExecutor

    with training_executor(Detector(max_workers=1)) as executor:
        assert isinstance(executor, ProcessPoolExecutor)
