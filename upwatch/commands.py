"""What the services' command modules share: config and database for a command, tables, and the
request to start daemons. It imports no service, so a service's `cli.py` can use it and
`upwatch.cli`, which imports those `cli.py` modules, stays the only module above them."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from psycopg import AsyncConnection

from upwatch import config as configuration
from upwatch import db
from upwatch.config import Config
from upwatch.migrate import migrate
from upwatch.runtime import database

T = TypeVar("T")


@dataclass(frozen=True)
class Start:
    """A command's request to run these services in this process; `upwatch.cli` carries it out,
    since only it knows the services (a service's command module cannot import the others)."""

    config: Config
    config_path: Path
    names: tuple[str, ...]


# A subcommand's handler: an exit status, or the services to run until SIGTERM.
Handler = Callable[[argparse.Namespace], "int | Start"]


class CommandModule(Protocol):
    """A service's `cli.py`: adds its subcommands to the `upwatch` parser."""

    def register(self, commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]  # argparse's generic is private
        """Add this package's subcommands; each sets `handler` (a Handler) in its defaults."""


def load_config(args: argparse.Namespace) -> tuple[Config, Path]:
    """The config named by --config / $UPWATCH_CONFIG / ./upwatch.yaml."""
    path = configuration.resolve_path(args.config, os.environ)
    return configuration.load(path), path


def start(config: Config, path: Path, names: Sequence[str]) -> Start:
    """Ask for the named services to run with `config` (see Start)."""
    return Start(config, path, tuple(names))


def daemon(name: str) -> Handler:
    """A handler that runs one service alone (`upwatch prober`, `python -m prober`)."""

    def handler(args: argparse.Namespace) -> Start:
        config, path = load_config(args)
        return start(config, path, [name])

    return handler


def with_connection(args: argparse.Namespace, work: Callable[[AsyncConnection, Config], Awaitable[T]]) -> T:
    """Run `work(conn, config)` on the configured (or embedded) database, migrated first,
    as every daemon does at start: a command may be the first thing run against a database."""
    config, _ = load_config(args)

    async def main(url: str) -> T:
        await migrate(url, timescaledb=config.storage.timescaledb)
        conn = await db.connect(url)
        try:
            return await work(conn, config)
        finally:
            await conn.close()

    with database(config) as url:
        return asyncio.run(main(url))


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Rows as left-aligned columns; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
