"""Alerts -> subject, plain text and HTML. Pure: everything comes from the alert payload."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from alerter.records import Alert, Notice
from upwatch import durations

DASHBOARD_UID = "upwatch-endpoint"
SUBJECT_MAX = 180


def dashboard_url(grafana_url: str, endpoint: str) -> str:
    """The Grafana endpoint dashboard for one endpoint."""
    return f"{grafana_url.rstrip('/')}/d/{DASHBOARD_UID}?var-endpoint={quote(endpoint, safe='')}"


def title(p: dict[str, Any]) -> str:
    """'DOWN payments-api: timeout after 10 s', 'RESOLVED …', 'ANOMALY high …'."""
    name, kind, event, reason = p.get("endpoint", "?"), p.get("kind"), p.get("event"), p.get("reason", "")
    if kind == "test":
        return "test message"
    if event == "resolved":
        return f"RESOLVED {name}: {_resolution(p)}"
    still = "STILL " if event == "reminder" else ""
    if kind == "down":
        return f"{still}DOWN {name}: {reason}"
    if kind == "anomaly":
        return f"{still}ANOMALY {p.get('severity', '')} {name}: {reason}"
    if kind == "rule":
        return f"{still}RULE {p.get('severity', '')} {p.get('rule', name)}: {reason}"
    return f"{still}{str(kind).upper()} {name}: {reason}"


def _resolution(p: dict[str, Any]) -> str:
    since, at = _time(p.get("since")), _time(p.get("at"))
    lasted = f" after {durations.format(at - since.replace(microsecond=0))}" if since and at else ""
    if p.get("kind") == "down":
        return f"up again{lasted}"
    if p.get("kind") == "cert":
        return "certificate renewed"
    return f"back to normal{lasted}"


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value).replace(microsecond=0) if isinstance(value, str) else None


def _lines(p: dict[str, Any], grafana_url: str) -> list[tuple[str, str]]:
    """(label, value) facts shown in both text and HTML."""
    facts: list[tuple[str, str]] = []
    since = _time(p.get("since"))
    if since:
        facts.append(("Since", since.strftime("%Y-%m-%d %H:%M:%S %Z")))
    facts += _why(p)
    for label, key in (("Severity", "severity"), ("Target", "target")):
        if p.get(key):
            facts.append((label, str(p[key])))
    if p.get("score") is not None:
        facts.append(("Score", f"{float(p['score']):.2f}"))
    if p.get("folded"):
        facts.append(("Also affected", ", ".join(p["folded"]) + f" (depend on {p.get('endpoint')})"))
    if p.get("suppressed"):
        facts.append(("Held back", f"{p['suppressed']} notifications during the cooldown"))
    if p.get("endpoint") and p.get("kind") != "test":
        facts.append(("Dashboard", dashboard_url(grafana_url, str(p["endpoint"]))))
    return facts


def _why(p: dict[str, Any]) -> list[tuple[str, str]]:
    """A RESOLVED names the cause that made it fire; other messages the current reason, and the
    cause too once it is something else."""
    reason, cause = str(p.get("reason") or ""), str(p.get("cause") or "")
    if p.get("event") == "resolved":
        facts = [("Cause", cause or reason)] if cause or reason else []
        if p.get("last_error"):
            facts.append(("Last error", str(p["last_error"])))
        elif p.get("kind") != "down" and reason and cause and reason != cause:
            facts.append(("Now", reason))
        return facts
    facts = [("Reason", reason)] if reason else []
    if cause and cause != reason:
        facts.append(("Went down with" if p.get("kind") == "down" else "Fired with", cause))
    return facts


def _results(p: dict[str, Any]) -> list[str]:
    rows = []
    for r in p.get("last_results", []):
        stamp = (_time(r.get("time")) or datetime.min).strftime("%H:%M:%S")
        outcome = "ok  " if r.get("ok") else "FAIL"
        status = r.get("status_code") or "-"
        latency = f"{r['latency_ms']:.0f} ms" if r.get("latency_ms") is not None else "-"
        rows.append(f"{stamp} {outcome} {status} {latency} {r.get('location') or ''} {r.get('error') or ''}".rstrip())
    return rows


def _text(p: dict[str, Any], grafana_url: str) -> str:
    out = [title(p), ""] + [f"{label}: {value}" for label, value in _lines(p, grafana_url)]
    if p.get("kind") == "test":
        out.append("This is a test message from upwatch: email delivery works.")
    if p.get("last_results"):
        out += ["", "Last results:"] + [f"  {r}" for r in _results(p)]
    return "\n".join(out)


def _html(p: dict[str, Any], grafana_url: str) -> str:
    rows = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>"
        + (f"<a href='{html.escape(value)}'>{html.escape(value)}</a>" if label == "Dashboard" else html.escape(value))
        + "</td></tr>"
        for label, value in _lines(p, grafana_url))
    results = "".join(f"<li><code>{html.escape(r)}</code></li>" for r in _results(p))
    return (f"<h3>{html.escape(title(p))}</h3><table>{rows}</table>"
            + (f"<p>Last results:</p><ul>{results}</ul>" if results else ""))


def notice(alerts: Sequence[Alert], grafana_url: str) -> Notice:
    """One message for one or several alerts going to the same channel and recipients."""
    payloads = [dict(a.payload, kind=a.kind, event=a.event) for a in alerts]
    if len(payloads) == 1:
        subject = title(payloads[0])
    else:
        subject = f"{len(payloads)} alerts: " + ", ".join(title(p).split(":")[0] for p in payloads)
    subject = "[upwatch] " + subject
    if len(subject) > SUBJECT_MAX:
        subject = subject[: SUBJECT_MAX - 1] + "…"
    text = "\n\n----\n\n".join(_text(p, grafana_url) for p in payloads) + "\n"
    body = "<hr>".join(_html(p, grafana_url) for p in payloads)
    facts = [{"id": a.id, "fingerprint": a.fingerprint, "title": title(p), **p} for a, p in zip(alerts, payloads)]
    return Notice(subject, text, f"<html><body>{body}</body></html>", tuple(alerts),
                  alerts[0].recipients if alerts else (), facts)
