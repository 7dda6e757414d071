"""Where model training runs: local worker processes (the default), or a Dask cluster.

Contract: `training_executor(settings)` is a context manager giving a concurrent.futures Executor
that the live detector hands `training.fit` calls to (loop.run_in_executor). With
`detector.cluster` set it is a dask.distributed Client's executor: each fit is one task on the
cluster's workers, which need upwatch installed (the same image; docs/production.md). The client
is imported only then: dask.distributed takes over a second to import and most detectors never
need it. Scoring stays in the detector process either way (it is cheap and needs the rows).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor

from upwatch.config.detector import Detector

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30


@contextlib.contextmanager
def training_executor(settings: Detector) -> Iterator[Executor]:
    """Local processes (spawned: a forked copy of an asyncio process is not safe), or the Dask cluster's."""
    if settings.cluster is None:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=settings.max_workers, mp_context=context) as executor:
            yield executor
        return
    from distributed import Client

    # A synchronous client runs its own event loop in a thread, so the detector's loop never waits on it.
    # distributed has inline types only in part: its Client constructor is untyped.
    with Client(settings.cluster, timeout=CONNECT_TIMEOUT_S,  # type: ignore[no-untyped-call]
                set_as_default=False) as client:
        workers = len(client.scheduler_info().get("workers", {}))
        logger.info("detector training on a Dask cluster scheduler=%s workers=%d", settings.cluster, workers)
        yield client.get_executor(pure=False)
