"""The check registry: the only place a check kind is registered.

A kind is a module (see prober.checks.base) with

- `Options`: a CheckOptions model of the kind's own keys of an endpoint; upwatch.config
  validates `kind:` against CHECKS and the endpoint's other keys against these Options;
- `run(target, session) -> ProbeResult`, which never raises for network errors
  (they are results with an error_kind), or `run = None` for a kind that is not
  probed (push: results arrive through the push API, the heartbeat watcher
  records missing ones).

Adding a kind is one module plus one line here (docs/prober.md, "Adding a check kind").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prober.checks import dns, grpc, http, icmp, push, rdap, ssh, tcp, tls, udp, websocket
from prober.checks.base import Check, CheckOptions, Kind
from upwatch.records import ProbeResult, Target

if TYPE_CHECKING:
    import aiohttp  # for annotations only: importing the registry (as upwatch.config does) stays cheap

__all__ = ["CHECKS", "Check", "CheckOptions", "Kind", "probed", "run"]

CHECKS: dict[str, Kind] = {"http": http, "tcp": tcp, "dns": dns, "push": push, "icmp": icmp, "udp": udp, "ssh": ssh,
                           "websocket": websocket, "grpc": grpc, "tls": tls}


def probed(kind: str) -> bool:
    """Whether endpoints of this kind are run by the scheduler (registered, with a `run`)."""
    found = CHECKS.get(kind)
    return found is not None and found.run is not None


async def run(target: Target[Any], session: aiohttp.ClientSession) -> ProbeResult:
    """Run one check of a probed kind; returns a ProbeResult, never raises for network errors.
    Raises LookupError for a kind that is not registered or not probed (a caller's bug).
    [DOMAIN_EXPIRATION] is looked up first (prober.checks.rdap, cached) for a check whose assertions read it."""
    check = CHECKS[target.kind].run
    if check is None:
        raise LookupError(f"kind {target.kind} is not probed")
    if rdap.uses(target.assertions):  # [DOMAIN_EXPIRATION], for every kind that has a host name
        return await rdap.run(check, target, session)
    return await check(target, session)
