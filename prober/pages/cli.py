"""`upwatch incident`: post, update, resolve and list the incidents shown on the status pages."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from psycopg import AsyncConnection

from prober.pages import incidents
from upwatch.commands import print_table, with_connection
from upwatch.config import Config


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


def cmd_add(args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection, config: Config) -> int | str:
        known = {e.name for e in config.endpoints}
        unknown = [n for n in args.endpoint or () if n not in known]
        if unknown:
            return f"no endpoint {unknown[0]!r} in the config"
        return await incidents.create(conn, args.title, args.message, args.endpoint or (), args.state)

    made = with_connection(args, work)
    if isinstance(made, str):
        print(f"upwatch: --endpoint: {made}", file=sys.stderr)
        return 2
    print(f"incident {made} posted")
    return 0


def cmd_update(args: argparse.Namespace, state: incidents.State | None = None) -> int:
    state = state or args.state
    done = with_connection(args, lambda conn, _: incidents.update(conn, args.id, args.message, state))
    if not done:
        print(f"upwatch: no incident with id {args.id}", file=sys.stderr)
        return 1
    print(f"incident {args.id} {'resolved' if state == 'resolved' else 'updated'}")
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    return cmd_update(args, "resolved")


def cmd_list(args: argparse.Namespace) -> int:
    found = with_connection(args, lambda conn, _: incidents.recent(conn, datetime.now(UTC), alerts=False))
    if not found:
        print("no incidents open or resolved in the last 7 days")
        return 0
    rows = [("ID", "STATE", "SINCE (UTC)", "RESOLVED (UTC)", "ENDPOINTS", "TITLE")]
    rows += [(str(n.id), n.state, _when(n.started_at), _when(n.resolved_at), ",".join(n.endpoints) or "*", n.title)
             for n in found]
    print_table(rows)
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `upwatch incident ...` to the upwatch CLI."""
    incident = commands.add_parser("incident", help="status page incidents: add, update, resolve, list")
    actions = incident.add_subparsers(dest="incident_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="post an incident")
    add.add_argument("title")
    add.add_argument("--message", "-m", required=True, help="the first update, shown under the title")
    add.add_argument("--endpoint", action="append", help="affected endpoint (repeatable; none: every page)")
    add.add_argument("--state", choices=incidents.STATES[:-1], default="investigating")
    add.set_defaults(handler=cmd_add)
    update = actions.add_parser("update", help="add an update (and move it to another state)")
    update.add_argument("id", type=int)
    update.add_argument("--message", "-m", required=True)
    update.add_argument("--state", choices=incidents.STATES)
    update.set_defaults(handler=cmd_update)
    resolve = actions.add_parser("resolve", help="resolve it, with a last update")
    resolve.add_argument("id", type=int)
    resolve.add_argument("--message", "-m", default="Resolved.")
    resolve.set_defaults(handler=cmd_resolve)
    listing = actions.add_parser("list", help="open incidents and those resolved in the last 7 days")
    listing.set_defaults(handler=cmd_list)
