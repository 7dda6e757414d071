"""Alerts -> subject, plain text and HTML. Pure: everything comes from the alert and its payload."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote

from alerter.records import Alert, Notice, Payload
from upwatch import durations

DASHBOARD_UID = "upwatch-endpoint"
SUBJECT_MAX = 180


def dashboard_url(grafana_url: str, endpoint: str) -> str:
    """The Grafana endpoint dashboard for one endpoint."""
    return f"{grafana_url.rstrip('/')}/d/{DASHBOARD_UID}?var-endpoint={quote(endpoint, safe='')}"


def title(kind: str, event: str, p: Payload) -> str:
    """'DOWN payments-api: timeout after 10 s', 'RESOLVED …', 'ANOMALY high …'."""
    name = p.endpoint or "?"
    if kind == "test":
        return "test message"
    if event == "resolved":
        return f"RESOLVED {name}: {_resolution(kind, p)}"
    still = "STILL " if event == "reminder" else ""
    if kind == "down":
        return f"{still}DOWN {name}: {p.reason}"
    if kind == "anomaly":
        return f"{still}ANOMALY {p.severity or ''} {name}: {p.reason}"
    if kind == "rule":
        return f"{still}RULE {p.severity or ''} {p.rule or name}: {p.reason}"
    return f"{still}{kind.upper()} {name}: {p.reason}"


def _resolution(kind: str, p: Payload) -> str:
    since, at = _second(p.since), _second(p.at)
    lasted = f" after {durations.format(at - since)}" if since and at else ""
    if kind == "down":
        return f"up again{lasted}"
    if kind == "cert":
        return "certificate renewed"
    return f"back to normal{lasted}"


def _second(value: datetime | None) -> datetime | None:
    return value.replace(microsecond=0) if value else None


def _lines(a: Alert, grafana_url: str) -> list[tuple[str, str]]:
    """(label, value) facts shown in both text and HTML."""
    p = a.payload
    facts: list[tuple[str, str]] = []
    since = _second(p.since)
    if since:
        facts.append(("Since", since.strftime("%Y-%m-%d %H:%M:%S %Z")))
    facts += _why(a.kind, a.event, p)
    for label, value in (("Severity", p.severity), ("Target", p.target)):
        if value:
            facts.append((label, value))
    if p.score is not None:
        facts.append(("Score", f"{p.score:.2f}"))
    if p.folded:
        facts.append(("Also affected", ", ".join(p.folded) + f" (depend on {p.endpoint})"))
    if p.suppressed:
        facts.append(("Held back", f"{p.suppressed} notifications during the cooldown"))
    if p.endpoint and a.kind != "test":
        facts.append(("Dashboard", dashboard_url(grafana_url, p.endpoint)))
    return facts


def _why(kind: str, event: str, p: Payload) -> list[tuple[str, str]]:
    """A RESOLVED names the cause that made it fire; other messages the current reason, and the
    cause too once it is something else."""
    reason, cause = p.reason, p.cause
    if event == "resolved":
        facts = [("Cause", cause or reason)] if cause or reason else []
        if p.last_error:
            facts.append(("Last error", p.last_error))
        elif kind != "down" and reason and cause and reason != cause:
            facts.append(("Now", reason))
        return facts
    facts = [("Reason", reason)] if reason else []
    if cause and cause != reason:
        facts.append(("Went down with" if kind == "down" else "Fired with", cause))
    return facts


def _results(p: Payload) -> list[str]:
    rows = []
    for r in p.last_results:
        stamp = (_second(r.time) or datetime.min).strftime("%H:%M:%S")
        outcome = "ok  " if r.ok else "FAIL"
        status = r.status_code or "-"
        latency = f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "-"
        rows.append(f"{stamp} {outcome} {status} {latency} {r.location} {r.error or ''}".rstrip())
    return rows


def _text(a: Alert, grafana_url: str) -> str:
    out = [title(a.kind, a.event, a.payload), ""] + [f"{label}: {value}" for label, value in _lines(a, grafana_url)]
    if a.kind == "test":
        out.append("This is a test message from upwatch: email delivery works.")
    if a.payload.last_results:
        out += ["", "Last results:"] + [f"  {r}" for r in _results(a.payload)]
    return "\n".join(out)


def _html(a: Alert, grafana_url: str) -> str:
    rows = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>"
        + (f"<a href='{html.escape(value)}'>{html.escape(value)}</a>" if label == "Dashboard" else html.escape(value))
        + "</td></tr>"
        for label, value in _lines(a, grafana_url))
    results = "".join(f"<li><code>{html.escape(r)}</code></li>" for r in _results(a.payload))
    return (f"<h3>{html.escape(title(a.kind, a.event, a.payload))}</h3><table>{rows}</table>"
            + (f"<p>Last results:</p><ul>{results}</ul>" if results else ""))


def notice(alerts: Sequence[Alert], grafana_url: str) -> Notice:
    """One message for one or several alerts going to the same channel and recipients."""
    titles = tuple(title(a.kind, a.event, a.payload) for a in alerts)
    several = f"{len(titles)} alerts: " + ", ".join(t.split(":")[0] for t in titles)
    subject = "[upwatch] " + (titles[0] if len(titles) == 1 else several)
    if len(subject) > SUBJECT_MAX:
        subject = subject[: SUBJECT_MAX - 1] + "…"
    text = "\n\n----\n\n".join(_text(a, grafana_url) for a in alerts) + "\n"
    body = "<hr>".join(_html(a, grafana_url) for a in alerts)
    links = tuple(dashboard_url(grafana_url, a.payload.endpoint) if a.payload.endpoint and a.kind != "test" else ""
                  for a in alerts)
    return Notice(subject, text, f"<html><body>{body}</body></html>", tuple(alerts), titles,
                  alerts[0].recipients if alerts else (), links=links)
