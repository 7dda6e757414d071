"""The detector service: score new measurements, retrain models on a cadence."""

from __future__ import annotations

import asyncio
import logging

from upwatch.runtime import Runtime

logger = logging.getLogger(__name__)


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    """Run until `stop` is set."""
    logger.info("detector started")
    await stop.wait()
