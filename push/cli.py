"""`upwatch service ...`, `upwatch key ...` and `upwatch logs ...`: manage push clients and their logs
from the shell."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from pydantic import ValidationError

from push import keys, query
from push.bodies import query_problems
from push.context import dumps
from upwatch.commands import print_table, with_connection


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _with_db(action: Callable[[AsyncConnection, argparse.Namespace], Awaitable[int]]) -> Callable[..., int]:
    """A handler that runs `action` on a migrated database connection; PushError -> exit 1."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return with_connection(args, lambda conn, _config: action(conn, args))
        except keys.PushError as e:
            print(f"upwatch: {e}", file=sys.stderr)
            return 1

    return handler


async def service_create(conn: AsyncConnection, args: argparse.Namespace) -> int:
    """upwatch service create NAME."""
    row = await keys.create_service(conn, args.name, description=args.description, base_url=args.base_url,
                                    privacy_level=args.privacy_level, retention_days=args.retention_days,
                                    allowed_hosts=args.allowed_host, replay_methods=args.replay_method)
    print(f"created service {row['name']} (id {row['id']})")
    return 0


async def service_list(conn: AsyncConnection, args: argparse.Namespace) -> int:
    """upwatch service list."""
    rows: list[tuple[str, ...]] = [("NAME", "KEYS", "PRIVACY", "RETENTION", "BASE URL", "CREATED")]
    for s in await keys.list_services(conn):
        rows.append((s["name"], str(s["active_keys"]), str(s["privacy_level"]), f"{s['retention_days']}d",
                     s["base_url"] or "-", _when(s["created_at"])))
    print_table(rows)
    return 0


async def service_delete(conn: AsyncConnection, args: argparse.Namespace) -> int:
    """upwatch service delete NAME [--purge]."""
    counts = await keys.delete_service(conn, args.name, purge=args.purge)
    print(f"deleted service {args.name}: {counts['keys']} keys, {counts['logs']} logs, "
          f"{counts['rollups']} rollup rows, {counts['replays']} replays")
    return 0


async def key_create(conn: AsyncConnection, args: argparse.Namespace) -> int:
    """upwatch key create SERVICE: the raw key on stdout, the note on stderr."""
    raw, row = await keys.create_key(conn, args.service, args.name)
    print(raw)
    print(f"key {row['prefix']} for service {args.service}: store it now, it is not shown again", file=sys.stderr)
    return 0


async def key_list(conn: AsyncConnection, args: argparse.Namespace) -> int:
    """upwatch key list SERVICE."""
    rows: list[tuple[str, ...]] = [("PREFIX", "NAME", "CREATED", "LAST USED", "REVOKED")]
    for k in await keys.list_keys(conn, args.service):
        rows.append((k["prefix"], k["name"] or "-", _when(k["created_at"]), _when(k["last_used_at"]),
                     _when(k["revoked_at"])))
    print_table(rows)
    return 0


async def key_revoke(conn: AsyncConnection, args: argparse.Namespace) -> int:
    """upwatch key revoke PREFIX."""
    when = await keys.revoke_key(conn, args.prefix)
    print(f"revoked key {args.prefix} at {_when(when)}")
    return 0


def _address(value: Any) -> str:
    """An inet value (an address, or an interface when stored with a prefix) as its address."""
    return "-" if value is None else str(getattr(value, "ip", value))


# `upwatch logs search` flags -> GET /logs query parameters (validated by the same LogQuery).
SEARCH_FLAGS = ("service", "method", "path", "route", "status", "min_latency_ms", "max_latency_ms", "has_error",
                "tag", "user_id", "client_ip", "hostname", "user_agent", "browser", "os", "device", "from", "to",
                "order", "limit", "cursor")


async def logs_search(conn: AsyncConnection, args: argparse.Namespace) -> int:
    """upwatch logs search [filters]: one page as a table (or JSON), the next cursor on stderr."""
    given = {name: str(getattr(args, name)) for name in SEARCH_FLAGS
             if getattr(args, name, None) is not None}
    try:
        q = query.LogQuery.model_validate(given)
    except ValidationError as e:
        for problem in query_problems(e).details or []:
            print(f"upwatch: logs search: --{problem['field'].replace('_', '-')}: {problem['reason']}",
                  file=sys.stderr)
        return 2
    service_id = None
    if q.service is not None:
        found = await keys.get_service(conn, q.service)
        if found is None:
            raise keys.PushError(f"no service named {q.service!r}")
        service_id = int(found["id"])
    try:
        page = await query.search(conn, q, service_id)
    except query.BadCursor as e:
        print(f"upwatch: logs search: --cursor: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(dumps(page))
    else:
        rows: list[tuple[str, ...]] = [("ID", "TIME", "SERVICE", "METHOD", "STATUS", "LATENCY MS", "CLIENT IP", "URL")]
        for log in page["items"]:
            rows.append((str(log["id"]), _when(log["time"]), log["service"], log["method"] or "-",
                         str(log["status_code"] or "-"), "-" if log["latency_ms"] is None else f"{log['latency_ms']:g}",
                         _address(log["source_ip"]), log["url"] or log["path"] or "-"))
        print_table(rows)
    if page["next_cursor"]:
        print(f"next page: --cursor {page['next_cursor']}", file=sys.stderr)
    return 0


def _register_logs(commands: Any) -> None:
    logs = commands.add_parser("logs", help="pushed request logs: search")
    actions = logs.add_subparsers(dest="logs_command", metavar="ACTION", required=True)
    search = actions.add_parser("search", help="search logs like GET /api/v1/logs (same filters and order)")
    search.add_argument("--service", help="only this service's logs (default: all)")
    for flag, text in (("method", "HTTP method"), ("path", "path substring"), ("route", "exact route"),
                       ("status", "status code (404) or class (5xx)"), ("min-latency-ms", "at least this latency"),
                       ("max-latency-ms", "at most this latency"), ("has-error", "true or false"),
                       ("tag", "tag name, or name=value"), ("user-id", "exact user id"),
                       ("client-ip", "client address or network (10.0.0.0/8, 2001:db8::/32)"),
                       ("hostname", "host of the logged URL (case-insensitive)"),
                       ("user-agent", "user agent substring (case-insensitive)"),
                       ("browser", "browser family parsed from the user agent (Firefox, Mobile Safari)"),
                       ("os", "OS family (Linux, iOS, Windows)"), ("device", "device family (iPhone, Spider)"),
                       ("from", "ISO 8601 start (inclusive)"), ("to", "ISO 8601 end (exclusive)"),
                       ("cursor", "next_cursor of the previous page")):
        search.add_argument(f"--{flag}", help=text, dest=flag.replace("-", "_"))
    search.add_argument("--order", choices=["-time", "time", "-latency", "latency"], default=None,
                        help="sort order (default -time: newest first)")
    search.add_argument("--limit", type=int, default=None, help="rows per page, 1-500 (default 50)")
    search.add_argument("--json", action="store_true", help="print the page as JSON, as the API returns it")
    search.set_defaults(handler=_with_db(logs_search))


def register(commands: Any) -> None:
    """Add `service` and `key` subcommands to the upwatch CLI."""
    service = commands.add_parser("service", help="push API clients: create, list, delete")
    actions = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="register a service that pushes logs")
    create.add_argument("name")
    create.add_argument("--description", default="")
    create.add_argument("--base-url", help="where replays may go (its host is the default allow-list)")
    create.add_argument("--privacy-level", type=int, choices=[0, 1, 2], default=0,
                        help="0 store client IPs, 1 drop them, 2 never read them")
    create.add_argument("--retention-days", type=int, default=30)
    create.add_argument("--allowed-host", action="append", default=[],
                        help="replay allow-list entry: host, host:port or scheme://host:port (repeatable)")
    create.add_argument("--replay-method", action="append", default=[],
                        help="also replay this method besides GET, HEAD, OPTIONS (repeatable)")
    create.set_defaults(handler=_with_db(service_create))
    actions.add_parser("list", help="list services").set_defaults(handler=_with_db(service_list))
    delete = actions.add_parser("delete", help="delete a service and its keys")
    delete.add_argument("name")
    delete.add_argument("--purge", action="store_true", help="also delete all its logs")
    delete.set_defaults(handler=_with_db(service_delete))

    key = commands.add_parser("key", help="push API keys: create, list, revoke")
    key_actions = key.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    kc = key_actions.add_parser("create", help="create a key (printed once)")
    kc.add_argument("service")
    kc.add_argument("--name", default="")
    kc.set_defaults(handler=_with_db(key_create))
    kl = key_actions.add_parser("list", help="list a service's keys")
    kl.add_argument("service")
    kl.set_defaults(handler=_with_db(key_list))
    kr = key_actions.add_parser("revoke", help="revoke a key by its prefix")
    kr.add_argument("prefix")
    kr.set_defaults(handler=_with_db(key_revoke))
    _register_logs(commands)
