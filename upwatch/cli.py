"""The `upwatch` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv
from psycopg import sql

import alerter.cli
import detector.cli
import prober.cli
import prober.pages.cli
import push.cli
import upwatch.importers.cli
import upwatch.reports.cli
from prober.checks import push as push_kind
from upwatch import __version__, db, durations, logs
from upwatch.catalog import stored_target
from upwatch.commands import CommandModule, Handler, Start, load_config, print_table
from upwatch.config import Config, ConfigError
from upwatch.embedded import EmbeddedError
from upwatch.masking import masking
from upwatch.migrate import MigrationError, migrate
from upwatch.runtime import (
    ListenError,
    Service,
    check_listen,
    database,
    embedded,
    psql_command,
    report_config_error,
    run,
)


def _prober(config: Config) -> dict[str, Service]:
    """The prober (it serves the push API) and the retention job. A taken listen address fails here,
    before the prober's modules load and the database starts, so it is reported within a second or two."""
    check_listen(config.push.host, config.push.port)
    from prober import service
    from upwatch import storage

    return {"prober": service.run, "retention": storage.service}


def _detector(config: Config) -> dict[str, Service]:
    from detector import service  # pandas and scikit-learn: loaded only when the detector runs

    return {"detector": service.run}


def _alerter(config: Config) -> dict[str, Service]:
    from alerter import service

    return {"alerter": service.run}


@dataclass(frozen=True)
class Package:
    """A package's subcommands and, for a service, what running it takes (the services it starts)."""

    name: str
    commands: CommandModule
    services: Callable[[Config], dict[str, Service]] | None = None


# The only place a package's commands or services are registered; adding one is one line.
PACKAGES = (
    Package("prober", prober.cli, _prober),
    Package("push", push.cli),
    Package("pages", prober.pages.cli),
    Package("detector", detector.cli, _detector),
    Package("alerter", alerter.cli, _alerter),
    Package("import", upwatch.importers.cli),
    Package("reports", upwatch.reports.cli),
)


def start(request: Start) -> int:
    """Run the requested services in this process until SIGTERM; returns the exit status."""
    by_name = {p.name: p.services for p in PACKAGES if p.services is not None}
    services: dict[str, Service] = {}
    for name in request.names:
        services |= by_name[name](request.config)
    return run(request.config, request.config_path, services)


def cmd_up(args: argparse.Namespace) -> Start:
    config, path = load_config(args)
    return Start(config, path, tuple(p.name for p in PACKAGES if p.services is not None))


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config, path = load_config(args)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    rows = [("NAME", "KIND", "TARGET", "INTERVAL", "TIMEOUT", "TAGS", "ENABLED")]
    masks = masking(config.push.sensitive_headers, config.push.secret_names)  # the listing may end up in CI logs
    for e in config.endpoints:
        every = e.options.period if isinstance(e.options, push_kind.Options) else e.interval  # push: results expected
        interval = durations.format(every)
        rows.append((e.name, e.kind, stored_target(e, masks), interval, durations.format(e.timeout), ",".join(e.tags),
                     "yes" if e.enabled else "no"))
    print_table(rows)
    enabled = sum(e.enabled for e in config.endpoints)
    print(f"\n{path}: OK, {len(config.endpoints)} endpoints ({enabled} enabled)")
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    config, _ = load_config(args)
    with database(config) as url:
        applied = asyncio.run(migrate(url, timescaledb=config.storage.timescaledb))
    print(f"applied {len(applied)} migrations" + (": " + ", ".join(applied) if applied else " (up to date)"))
    return 0


def cmd_db_info(args: argparse.Namespace) -> int:
    config, _ = load_config(args)
    with embedded(config) as server:
        url = server.url if server else str(config.storage.database_url)
        for line in asyncio.run(_db_info(url)):
            print(line)
        if server is not None:
            print(f"data dir:    {server.data_dir}")
        print(f"psql:        {psql_command(url, server)}")
        if server is not None and server.started_here:
            print("             (works while upwatch runs: this command started the server and stops it now)")
    return 0


async def _db_info(url: str) -> list[str]:
    conn = await db.connect(url)
    try:
        version = (await (await conn.execute("SHOW server_version")).fetchone() or ["?"])[0]
        cur = await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        ts = await cur.fetchone()
        cur = await conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
        )
        tables = [r[0] for r in await cur.fetchall()]
        timescaledb = f"active ({ts[0]})" if ts else "not active (plain tables, upwatch retention job)"
        lines = [f"database:    {db.describe(url)}", f"engine:      PostgreSQL {version}",
                 f"timescaledb: {timescaledb}", "tables:"]
        for table in tables:
            cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            count = (await cur.fetchone() or [0])[0]
            lines.append(f"  {table:<24} {count:>12,} rows")
        return lines
    finally:
        await conn.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upwatch", description="Self-hosted synthetic uptime monitor.")
    parser.add_argument("--version", action="version", version=f"upwatch {__version__}")
    add_global_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser("up", help="run prober, detector and alerter in one process").set_defaults(handler=cmd_up)
    commands.add_parser("check-config", help="validate the config and list endpoints (exit 0 ok, 1 invalid)") \
        .set_defaults(handler=cmd_check_config)
    db_parser = commands.add_parser("db", help="database: migrate, info")
    db_commands = db_parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_commands.add_parser("migrate", help="apply pending migrations").set_defaults(handler=cmd_db_migrate)
    db_commands.add_parser("info", help="engine, TimescaleDB status, tables and row counts") \
        .set_defaults(handler=cmd_db_info)
    for package in PACKAGES:
        package.commands.register(commands)
    for sub in _subcommand_parsers(parser):
        add_global_options(sub, default=argparse.SUPPRESS)
    return parser


def add_global_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """--config and --log-level. Every subcommand takes them too (`upwatch prober --config F`); there
    the default is SUPPRESS, so an option given before the subcommand is not reset by the subparser."""
    if "--config" not in parser._option_string_actions:
        parser.add_argument("-c", "--config", default=default,
                            help="config file (default: $UPWATCH_CONFIG or ./upwatch.yaml)")
    if "--log-level" not in parser._option_string_actions:
        parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=default,
                            help="override the config's log_level")


def _subcommand_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below `parser`, at any depth (argparse has no public way to list them)."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += [sub, *_subcommand_parsers(sub)]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `upwatch` console script; returns the exit code."""
    load_dotenv(Path.cwd() / ".env", override=False)
    args = build_parser().parse_args(argv)
    if args.log_level:
        os.environ["UPWATCH_LOG_LEVEL"] = args.log_level
    logs.setup(os.environ.get("UPWATCH_LOG_LEVEL", "WARNING").upper())
    try:
        handler: Handler = args.handler
        outcome = handler(args)
        return start(outcome) if isinstance(outcome, Start) else outcome
    except ConfigError as e:
        return report_config_error(e)
    except (db.DatabaseUnavailable, EmbeddedError, MigrationError, ListenError) as e:
        print(f"upwatch: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
