"""The prober's HTTP listener: /metrics and /healthz, plus whatever the extensions add (the push API).

An extension is `setup(app, runtime, writer)`: it adds routes or sub-apps
(e.g. `app.add_subapp("/api/v1", push_app)`) before the app starts. To mount
one, add it to EXTENSIONS below (or pass `extensions=` to build_app).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

import push
from prober import pages
from prober.metrics import Metrics
from prober.scheduler import Scheduler
from prober.writer import BatchWriter
from upwatch.runtime import Runtime

logger = logging.getLogger(__name__)

Extension = Callable[[web.Application, Runtime, BatchWriter], None]
EXTENSIONS: list[Extension] = [push.setup, pages.setup]


@dataclass
class State:
    scheduler: Scheduler
    writer: BatchWriter
    metrics: Metrics


STATE = web.AppKey("prober_state", State)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = state.metrics.render(state.writer, state.scheduler.skipped, state.scheduler.running)
    return web.Response(text=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def healthz(request: web.Request) -> web.Response:
    """200 only while the scheduler runs and the writer is not stuck (an unreachable database is not 'stuck':
    results are spooled, and that is reported here)."""
    state = request.app[STATE]
    stats = state.writer.stats
    running, stuck = state.scheduler.running, state.writer.stuck()
    healthy = running and not stuck
    report = {"scheduler": running, "writer_stuck": stuck, "database_ok": stats.database_ok,
              "queue_rows": state.writer.queue_rows, "spool_bytes": state.writer.spool_bytes,
              "endpoints": len(state.scheduler.endpoints), "status": "ok" if healthy else "unhealthy"}
    return web.Response(text=json.dumps(report), status=200 if healthy else 503, content_type="application/json")


def build_app(runtime: Runtime, state: State, extensions: Sequence[Extension] | None = None) -> web.Application:
    """The listener's application, with every extension set up on it."""
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    for extension in EXTENSIONS if extensions is None else extensions:
        extension(app, runtime, state.writer)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start listening; raises OSError when the address is taken (a startup failure)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    logger.info("prober listening address=%s:%d", host, port)
    return runner
