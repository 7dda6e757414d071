"""`upwatch` subcommands that belong to the detector."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this package's subcommands to the upwatch CLI."""
    from upwatch.cli import daemon

    parser = commands.add_parser("detector", help="run the detector daemon alone; `status` for per-series state")
    parser.set_defaults(handler=daemon("detector"))
    actions = parser.add_subparsers(dest="detector_command", metavar="ACTION")
    actions.add_parser("status", help="per series: rows, model age, threshold, last score, anomalies in 24 h") \
        .set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    """Print per-series detector state; exit 0."""
    from detector.status import render, status
    from upwatch import db
    from upwatch.cli import load_config
    from upwatch.migrate import migrate
    from upwatch.runtime import database

    config, _ = load_config(args)

    async def show(url: str) -> str:
        # Same as every service at start: a database nobody has run against yet gets its tables.
        await migrate(url, timescaledb=config.storage.timescaledb)
        conn = await db.connect(url)
        try:
            return render(await status(conn, datetime.now(UTC)))
        finally:
            await conn.close()

    with database(config) as url:
        print(asyncio.run(show(url)))
    return 0
