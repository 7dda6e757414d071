"""`upwatch` subcommands that belong to the prober."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this package's subcommands to the upwatch CLI."""
    from upwatch.cli import daemon

    commands.add_parser("prober", help="run the prober daemon alone").set_defaults(handler=daemon("prober"))
