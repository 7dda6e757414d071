"""Where model training runs: local worker processes (the default), or a Dask cluster.

Contract: `training_executor(settings)` is a context manager giving a concurrent.futures Executor
that the live detector hands `training.fit` calls to (loop.run_in_executor). With
`detector.cluster` set it is a dask.distributed Client's executor: each fit is one task on the
cluster's workers, which need upwatch installed (the same image; docs/production.md). The client
is imported only then: dask.distributed takes over a second to import and most detectors never
need it. Scoring stays in the detector process either way (it is cheap and needs the rows).

Leaving the context ends training at once: trainings not started are cancelled and local workers
still fitting are terminated (the detector must stop within upwatch's 5 s; a model is derived
data, retrained at the next start, and artifacts are written atomically so none is half saved).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor

from upwatch.config.detector import Detector

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30
# A terminated worker is gone in milliseconds; the bound only keeps a wedged one from holding the stop.
TERMINATE_WAIT_S = 2.0
PARENT_POLL_S = 1.0  # how often a worker checks that the detector still runs


@contextlib.contextmanager
def training_executor(settings: Detector) -> Iterator[Executor]:
    """Local processes (spawned: a forked copy of an asyncio process is not safe), or the Dask cluster's."""
    if settings.cluster is None:
        context = multiprocessing.get_context("spawn")
        executor = ProcessPoolExecutor(max_workers=settings.max_workers, mp_context=context,
                                       initializer=_worker_init, initargs=(os.getpid(),))
        try:
            yield executor
        finally:
            _stop(executor)
        return
    from distributed import Client

    # A synchronous client runs its own event loop in a thread, so the detector's loop never waits on it.
    # distributed has inline types only in part: its Client constructor is untyped.
    with Client(settings.cluster, timeout=CONNECT_TIMEOUT_S,  # type: ignore[no-untyped-call]
                set_as_default=False) as client:
        workers = len(client.scheduler_info().get("workers", {}))
        logger.info("detector training on a Dask cluster scheduler=%s workers=%d", settings.cluster, workers)
        yield client.get_executor(pure=False)


def _worker_init(detector_pid: int) -> None:
    """Workers leave Ctrl-C to the detector: the terminal sends SIGINT to the whole process group,
    and a KeyboardInterrupt inside a fit would come back to the service as the fit's result.
    And they end with it: a killed detector (SIGKILL, OOM) does not close a worker's queue, so
    an idle ProcessPoolExecutor worker would wait on it forever with its ~200 MB."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(detector_pid,), name="detector-watch", daemon=True).start()


def _exit_with(detector_pid: int) -> None:
    """Exit once the detector is gone (this process is handed to another parent)."""
    while os.getppid() == detector_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _stop(executor: ProcessPoolExecutor) -> None:
    """Cancel queued fits and terminate workers mid-fit, instead of waiting (possibly minutes) for them."""
    # ProcessPoolExecutor.terminate_workers() exists from Python 3.14 only; before it, its workers
    # are reachable only as _processes (pid -> Process).
    workers = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(TERMINATE_WAIT_S)
    executor.shutdown(wait=True)
