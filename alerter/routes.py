"""Who gets an alert: the matching `alerting.routes`, or by default the SMTP recipients and every webhook."""

from __future__ import annotations

from collections.abc import Iterable

from upwatch.config.alerting import SEVERITIES, Alerting, Route


def matches(route: Route, endpoint: str, tags: Iterable[str], kind: str, severity: str | None) -> bool:
    """Every criterion the route sets must hold; an empty criterion matches anything."""
    return ((not route.endpoints or endpoint in route.endpoints)
            and (not route.tags or bool(set(route.tags) & set(tags)))
            and (not route.kinds or kind in route.kinds)
            and (not route.severities or severity in route.severities))


def targets(alerting: Alerting, endpoint: str, tags: Iterable[str], kind: str,
            severity: str | None) -> list[tuple[str, tuple[str, ...]]]:
    """(channel, recipients) pairs; always at least one, so a missing recipient shows up as a failed alert."""
    tags = tuple(tags)
    matched = [r for r in alerting.routes if matches(r, endpoint, tags, kind, severity)]
    if matched:
        emails = {a for r in matched for a in r.recipients}
        hooks = sorted({h for r in matched for h in r.webhooks})
    else:
        emails, hooks = set(alerting.smtp.recipients), [w.name for w in alerting.webhooks]
    out: list[tuple[str, tuple[str, ...]]] = [("email", tuple(sorted(emails)))] if emails else []
    out += [(f"webhook:{h}", ()) for h in hooks]
    return out or [("email", ())]


def at_least(severity: str | None, minimum: str) -> bool:
    """Whether `severity` ranks at or above `minimum` (medium < high < critical)."""
    return severity in SEVERITIES and SEVERITIES.index(severity) >= SEVERITIES.index(minimum)
