"""`upwatch` subcommands that belong to the prober: `prober` (the daemon) and `probe` (one check now)."""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import sys
from typing import Any

from upwatch.commands import Start
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this package's subcommands to the upwatch CLI."""
    daemon = commands.add_parser("prober", help="run the prober daemon alone")
    daemon.add_argument("--shard", metavar="I/N", help="run only shard I of N of the endpoints (stable by name), "
                                                      "or `auto`: share them with this location's other probers "
                                                      "through leases in the database")
    daemon.set_defaults(handler=cmd_prober)
    probe = commands.add_parser("probe", help="run one check now and print its result with the phase breakdown")
    probe.add_argument("target", metavar="NAME|URL", help="an endpoint name from the config, or an http(s) URL")
    probe.add_argument("--timeout", default="10s", help="timeout for a URL target (default 10s)")
    probe.set_defaults(handler=cmd_probe)


def cmd_prober(args: argparse.Namespace) -> int | Start:
    from upwatch.commands import load_config, start

    config, path = load_config(args)
    if args.shard:
        from prober.scheduler import Shard

        try:
            if args.shard != "auto":
                Shard.parse(args.shard)
        except ValueError as e:
            print(f"upwatch: --shard: {e}", file=sys.stderr)
            return 2
        config = config.model_copy(update={"prober": config.prober.model_copy(update={"shard": args.shard})})
    return start(config, path, ["prober"])


def cmd_probe(args: argparse.Namespace) -> int:
    endpoint = _endpoint(args)
    if endpoint is None:
        return 2
    from upwatch.runtime import run_async

    result = run_async(_probe(endpoint))
    print(render(endpoint, result))
    return 0 if result.ok else 1


def _endpoint(args: argparse.Namespace) -> Endpoint | None:
    target: str = args.target
    if target.startswith(("http://", "https://")):
        try:
            return Endpoint.model_validate({"name": "adhoc", "url": target, "timeout": args.timeout})
        except ValueError as e:
            print(f"upwatch: {target}: {str(e).splitlines()[-1].strip()}", file=sys.stderr)
            return None
    from upwatch.commands import load_config

    config, path = load_config(args)
    from prober.checks import rdap

    rdap.LOOKUPS.configure(config.prober.rdap.settings())
    endpoint = config.endpoint(target)
    if endpoint is None:
        close = difflib.get_close_matches(target, [e.name for e in config.endpoints], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"upwatch: no endpoint named {target!r} in {path}{hint}", file=sys.stderr)
        return None
    from prober import checks

    if not checks.probed(endpoint.kind):
        print(f"upwatch: {target!r} is a {endpoint.kind} endpoint: it receives results, there is nothing to probe",
              file=sys.stderr)
        return None
    return endpoint


async def _probe(endpoint: Endpoint) -> ProbeResult:
    from prober import checks
    from prober.checks.http import new_session

    session = new_session(limit=4)
    try:
        return await checks.run(endpoint, session)
    finally:
        await session.close()


def render(endpoint: Endpoint, r: ProbeResult) -> str:
    """The human report of one check."""
    lines = [f"{endpoint.name}  {endpoint.kind} {endpoint.options.summary}",
             f"  result      {'OK' if r.ok else 'FAIL'}" + (f"  {r.error_kind}: {r.error}" if not r.ok else "")]
    lines += _response(endpoint, r)
    phases = [(label, getattr(r, column)) for label, column in (
        ("dns", "dns_ms"), ("connect", "connect_ms"), ("tls", "tls_ms"), ("ttfb", "ttfb_ms"),
        ("transfer", "transfer_ms"), ("total", "latency_ms"))]
    lines.append("  phases      " + " | ".join(f"{label} {value:.1f} ms" for label, value in phases
                                               if value is not None))
    lines += [f"  {'pass' if a.ok else 'FAIL'}        {a.assertion}" + ("" if a.ok else f"  ({a.reason})")
              for a in r.assertions]
    return "\n".join(lines)


def _response(endpoint: Endpoint, r: ProbeResult) -> list[str]:
    """The lines about what answered, for the fields the check measured."""
    lines = []
    if r.status_code is not None:
        lines.append(f"  status      {r.status_code}")
    if r.final_url and r.final_url != endpoint.target:
        lines.append(f"  final url   {r.final_url}")
    if r.response_bytes is not None:
        lines.append(f"  size        {r.response_bytes} bytes")
    if r.cert_not_after is not None:
        days = (r.cert_not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400
        lines.append(f"  certificate expires {r.cert_not_after:%Y-%m-%d %H:%M} UTC ({days:.0f} days)")
    for name, value in (r.details or {}).items():
        lines.append(f"  {name.replace('_', ' '):<11} {_detail(value)}")
    return lines


def _detail(value: Any) -> str:
    """A details value as `upwatch probe` prints it: lists joined, numbers as they are."""
    if isinstance(value, list | tuple):
        return ", ".join(_detail(v) for v in value) or "(none)"
    return str(value)
