"""`upwatch` subcommands that belong to the alerter: the daemon, `alerts` and `silence`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import TypeVar

from upwatch import durations
from upwatch.commands import print_table, with_connection

T = TypeVar("T")
STATES = ("pending", "sent", "failed", "suppressed")


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from alerter import outbox

    alerts = with_connection(args, lambda conn, _: outbox.recent(conn, args.state, args.limit))
    if not alerts:
        print("no alerts" + (f" in state {args.state}" if args.state else ""))
        return 0
    rows = [("ID", "CREATED (UTC)", "STATE", "ATTEMPTS", "CHANNEL", "SUBJECT", "LAST ERROR")]
    for a in alerts:
        channel = a.channel + (f" ({','.join(a.recipients)})" if a.recipients else "")
        rows.append((str(a.id), _when(a.created_at), a.state, str(a.attempts), channel, a.subject,
                     a.last_error or ""))
    print_table(rows)
    return 0


def cmd_alerts_test_email(args: argparse.Namespace) -> int:
    from alerter import render
    from alerter.channels import email
    from alerter.records import Alert, Payload
    from upwatch.commands import load_config

    config, _ = load_config(args)
    channel = next((c for c in config.alerting.channels if c.type == "email"), None)
    if channel is None or not isinstance(channel.options, email.Options):
        print("upwatch: no email channel: set alerting.smtp or add one of type email to alerting.channels",
              file=sys.stderr)
        return 2
    options, recipients = channel.options, tuple(args.to or channel.recipients)
    alert = Alert(0, "test", "test", "firing", None, channel.name, recipients, Payload(endpoint="upwatch"),
                  datetime.now(UTC))
    delivery = asyncio.run(email.send(render.notice([alert], config.alerting.grafana_url), options))
    if not delivery.ok:
        print(f"upwatch: test email failed: {delivery.error}", file=sys.stderr)
        return 1
    print(f"test email accepted by {options.host}:{options.port} for {', '.join(recipients)}"
          + (f" (refused: {delivery.error})" if delivery.error else ""))
    return 0


def cmd_silence_add(args: argparse.Namespace) -> int:
    from alerter import maintenance

    if not args.endpoint and not args.tag and not args.all:
        print("upwatch: name what to silence: --endpoint NAME, --tag TAG or --all", file=sys.stderr)
        return 2
    try:
        starts = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC)
        starts = starts if starts.tzinfo else starts.replace(tzinfo=UTC)
        ends = starts + durations.parse(args.duration)
    except ValueError as e:
        print(f"upwatch: {e}", file=sys.stderr)
        return 2
    window = maintenance.Window(args.name or "", starts, ends, endpoints=tuple(args.endpoint or ()),
                                tags=tuple(args.tag or ()), source="cli")
    wid = with_connection(args, lambda conn, _: maintenance.add(conn, window))
    print(f"silence {wid} added: {_when(starts)} to {_when(ends)} UTC")
    return 0


def cmd_silence_list(args: argparse.Namespace) -> int:
    from alerter import maintenance

    windows = with_connection(args, lambda conn, _: maintenance.load(conn))
    if not windows:
        print("no silences")
        return 0
    rows = [("ID", "NAME", "FROM (UTC)", "UNTIL (UTC)", "ENDPOINTS", "TAGS")]
    for w in windows:
        rows.append((str(w.id), w.name, _when(w.starts_at), _when(w.ends_at), ",".join(w.endpoints) or "*",
                     ",".join(w.tags)))
    print_table(rows)
    return 0


def cmd_silence_remove(args: argparse.Namespace) -> int:
    from alerter import maintenance

    removed = with_connection(args, lambda conn, _: maintenance.remove(conn, args.id))
    if not removed:
        print(f"upwatch: no silence with id {args.id}", file=sys.stderr)
        return 1
    print(f"silence {args.id} removed")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this package's subcommands to the upwatch CLI."""
    from upwatch.commands import daemon

    commands.add_parser("alerter", help="run the alerter daemon alone").set_defaults(handler=daemon("alerter"))

    alerts = commands.add_parser("alerts", help="notifications: list, test-email")
    actions = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="recent alerts with their delivery state and last error")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=cmd_alerts_list)
    test = actions.add_parser("test-email", help="send a test message with the current SMTP settings")
    test.add_argument("--to", action="append", help="recipient (default: the email channel's recipients)")
    test.set_defaults(handler=cmd_alerts_test_email)

    silence = commands.add_parser("silence", help="ad-hoc maintenance windows: add, list, remove")
    actions = silence.add_subparsers(dest="silence_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="silence endpoints for a while")
    add.add_argument("--endpoint", action="append", help="endpoint name (repeatable)")
    add.add_argument("--tag", action="append", help="endpoints with this tag (repeatable)")
    add.add_argument("--all", action="store_true", help="every endpoint")
    add.add_argument("--for", dest="duration", default="1h", help="how long, e.g. 30m, 2h (default 1h)")
    add.add_argument("--start", help="ISO time it starts (default now; UTC unless an offset is given)")
    add.add_argument("--name", help="why, shown in alerts list")
    add.set_defaults(handler=cmd_silence_add)
    actions.add_parser("list", help="current and future silences").set_defaults(handler=cmd_silence_list)
    remove = actions.add_parser("remove", help="end a silence now")
    remove.add_argument("id", type=int)
    remove.set_defaults(handler=cmd_silence_remove)
