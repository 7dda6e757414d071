"""Ingest workers: more processes serving the push API on one port, for when one process is the limit.

One Python process parses, validates, masks and formats rows for COPY on one core, while PostgreSQL
takes less than half of another. A worker is the push API with a writer of its own (each its own
spool directory: a spool is locked by one writer) listening with SO_REUSEPORT, so the kernel spreads
incoming connections over every process bound to the address. Each worker keeps every guarantee on
its own: with durable_ack its 202 follows its own commit, a worker killed loses only what it had not
acknowledged, and its spool is replayed when its writer starts again. Rate limits and the idempotency
keys remembered in memory are per process; the keys stored with each batch are shared through the
database (a retry that reaches another worker while the first is still committing is not caught).

Contract: `serve(runtime, writer, host, port)` returns the started runner (the caller starts the
writer before and stops it after `runner.cleanup()`). Every socket on the port, the prober's own
listener included, must be bound with reuse_port=True, or the bind fails with OSError (in use).
"""

from __future__ import annotations

import logging

from aiohttp import web

from push import PREFIX
from push.app import create_app
from push.context import Writer
from upwatch.runtime import Runtime

logger = logging.getLogger(__name__)


async def serve(runtime: Runtime, writer: Writer, host: str, port: int, *,
                admin_token: str | None = None) -> web.AppRunner:
    """Serve the push API at PREFIX on host:port, sharing the port (SO_REUSEPORT) with other workers.
    Raises OSError when the port is held by a socket bound without SO_REUSEPORT."""
    root = web.Application()
    root.add_subapp(PREFIX, create_app(runtime, writer, admin_token=admin_token))
    runner = web.AppRunner(root, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=True).start()
    except OSError:
        await runner.cleanup()
        raise
    logger.info("push worker listening address=%s:%d", host, port)
    return runner
