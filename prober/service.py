"""The prober service: sync endpoints from the config, then probe them."""

from __future__ import annotations

import asyncio
import logging

from upwatch.catalog import sync_endpoints
from upwatch.runtime import Runtime

logger = logging.getLogger(__name__)


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    """Run until `stop` is set."""
    async with runtime.pool.connection() as conn:
        await sync_endpoints(conn, runtime.config.endpoints)
    logger.info("prober started endpoints=%d", len(runtime.config.endpoints))
    await stop.wait()
