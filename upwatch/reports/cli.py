"""`upwatch report SERVICE --from --to [-o report.pdf | --format json]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from upwatch.commands import with_connection
from upwatch.reports import data, document


def cmd_report(args: argparse.Namespace) -> int:
    """Write the service's report as PDF (to -o) or JSON (to -o or stdout); exit 1 on a bad request."""
    try:
        since = data.parse_bound(args.from_, "--from")
        until = data.parse_bound(args.to, "--to", end=True)
        data.check_range(since, until)
        fmt = args.format or ("pdf" if args.output and args.output.suffix.lower() == ".pdf" else "json")
        if fmt == "pdf" and args.output is None:
            raise data.ReportError("-o", "a PDF needs an output file (or use --format json)")

        async def work(conn: AsyncConnection, _config: Any) -> data.Report:
            return await data.build(conn, args.service, since, until)

        report = with_connection(args, work)
    except data.ReportError as e:
        print(f"upwatch report: {e}", file=sys.stderr)
        return 1
    return _write(report, fmt, args.output)


def _write(report: data.Report, fmt: str, output: Path | None) -> int:
    if output is None:
        sys.stdout.write(document.dumps(report) + "\n")
        return 0
    if fmt == "json":
        output.write_text(document.dumps(report) + "\n")
    else:
        from upwatch.reports import pdf  # matplotlib loads only for PDFs

        output.write_bytes(pdf.render(report))
    print(f"report for {report.service} written to {output}", file=sys.stderr)
    return 0


def register(commands: Any) -> None:
    """Add `report` to the `upwatch` command's subparsers."""
    parser = commands.add_parser("report", help="a service's request report over a range, as PDF or JSON")
    parser.add_argument("service", metavar="SERVICE", help="service name (as in `upwatch service list`)")
    parser.add_argument("--from", dest="from_", required=True, metavar="WHEN",
                        help="start: YYYY-MM-DD or an ISO 8601 time on a whole hour (UTC unless a zone is given)")
    parser.add_argument("--to", required=True, metavar="WHEN",
                        help="end, exclusive; a date YYYY-MM-DD means the end of that day")
    parser.add_argument("-o", "--output", type=Path, help="output file (required for PDF)")
    parser.add_argument("--format", choices=["pdf", "json"], default=None,
                        help="pdf or json (default: from -o's suffix, else json)")
    parser.set_defaults(handler=cmd_report)
