"""Who gets an alert: the channels of the matching `alerting.routes`, or by default every channel."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from alerter.channels import takes_recipients
from upwatch.config.alerting import SEVERITIES, Alerting, Route

Target = tuple[str, tuple[str, ...]]  # (channel name, recipients: empty for channels without any)


def matches(route: Route, endpoint: str, tags: Iterable[str], kind: str, severity: str | None) -> bool:
    """Every criterion the route sets must hold; an empty criterion matches anything."""
    return ((not route.endpoints or endpoint in route.endpoints)
            and (not route.tags or bool(set(route.tags) & set(tags)))
            and (not route.kinds or kind in route.kinds)
            and (not route.severities or severity in route.severities))


def _route_targets(alerting: Alerting, route: Route) -> Iterator[Target]:
    """The route's channels. Its `recipients`, if any, replace the own recipients of the channels it
    names that have recipients, or go to the channel `email` when it names none."""
    named = route.named
    takers = [n for n in named if takes_recipients(alerting.channel_type(n))]
    for name in named:
        channel = alerting.channel(name)
        if channel is None or (route.recipients and name in takers):
            continue
        yield name, channel.recipients
    if route.recipients:
        for name in takers or ["email"]:
            yield name, tuple(route.recipients)


def targets(alerting: Alerting, endpoint: str, tags: Iterable[str], kind: str, severity: str | None) -> list[Target]:
    """(channel, recipients) pairs; always at least one, so a missing recipient shows up as a failed alert.

    A channel that has recipients but none to send to is left out while there are others."""
    tags = tuple(tags)
    matched = [r for r in alerting.routes if matches(r, endpoint, tags, kind, severity)]
    wanted: dict[str, set[str]] = {}
    pairs = ([t for r in matched for t in _route_targets(alerting, r)] if matched
             else [(c.name, c.recipients) for c in alerting.channels])
    for name, recipients in pairs:
        wanted.setdefault(name, set()).update(recipients)
    out = [(name, tuple(sorted(rcpts))) for name, rcpts in wanted.items()
           if rcpts or not takes_recipients(alerting.channel_type(name))]
    # Only channels with recipients are ever left out, so channels[0] has recipients too.
    return sorted(out) or [("email" if alerting.channel("email") else alerting.channels[0].name, ())]


def at_least(severity: str | None, minimum: str) -> bool:
    """Whether `severity` ranks at or above `minimum` (medium < high < critical)."""
    return severity in SEVERITIES and SEVERITIES.index(severity) >= SEVERITIES.index(minimum)
