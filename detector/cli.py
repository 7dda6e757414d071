"""`upwatch` subcommands that belong to the detector."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from psycopg import AsyncConnection

from upwatch.config import Config


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this package's subcommands to the upwatch CLI."""
    from upwatch.commands import daemon

    parser = commands.add_parser("detector", help="run the detector daemon alone; `status` for per-series state")
    parser.set_defaults(handler=daemon("detector"))
    actions = parser.add_subparsers(dest="detector_command", metavar="ACTION")
    actions.add_parser("status", help="per series: rows, model age, threshold, last score, anomalies in 24 h") \
        .set_defaults(handler=cmd_status)


async def _render(conn: AsyncConnection, config: Config) -> str:
    from detector.status import render, status

    return render(await status(conn, datetime.now(UTC), config.detector))


def cmd_status(args: argparse.Namespace) -> int:
    """Print per-series detector state; exit 0."""
    from upwatch.commands import with_connection

    print(with_connection(args, _render))
    return 0
