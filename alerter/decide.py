"""Turn what the sources read into policy events and outbox rows. No I/O here:
`Cycle` is filled by evaluate.py, which then writes `tracked`, `rows` and `folds`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from alerter import render, routes
from alerter.outbox import Row
from alerter.policy import Event, EventKind, Location, Policy, is_down, observe, should_send
from alerter.records import Payload
from alerter.sources import EndpointInfo, Incident, Progress, Result, breached
from alerter.store import Tracked
from upwatch import durations
from upwatch.config.alerting import Alerting, Rule
from upwatch.maintenance import Window, silencing

RECENT = 5


def policy_of(alerting: Alerting) -> Policy:
    return Policy(alerting.cooldown, alerting.repeat_interval, alerting.send_resolved)


@dataclass
class Cycle:
    alerting: Alerting
    now: datetime
    endpoints: dict[int, EndpointInfo]
    windows: list[Window]
    tracked: dict[str, Tracked]
    rule_names: set[str] = field(default_factory=set)  # every rule there is (config and API), due or not
    rows: list[Row] = field(default_factory=list)
    folds: list[tuple[str, str]] = field(default_factory=list)  # (parent, child)
    firings: list[tuple[str, Rule, float | None]] = field(default_factory=list)  # (fire|resolve|update, rule, value)

    def __post_init__(self) -> None:
        self.by_name = {e.name: e for e in self.endpoints.values()}
        self.policy = policy_of(self.alerting)

    def track(self, fingerprint: str, kind: str, endpoint_id: int | None) -> Tracked:
        return self.tracked.setdefault(fingerprint, Tracked(fingerprint, kind, endpoint_id))

    def down_parent(self, name: str) -> str | None:
        """A parent this endpoint depends on that is DOWN now, if any."""
        info = self.by_name.get(name)
        for parent in info.depends_on if info else ():
            t = self.tracked.get(f"down:{parent}")
            if t is not None and t.state.firing:
                return parent
        return None

    def decide(self, t: Tracked, kind: EventKind, at: datetime) -> None:
        """Run the policy for one event and queue what it decides."""
        name, severity = t.about.endpoint, t.about.severity
        info = self.by_name.get(name)
        tags = info.tags if info else ()
        window = silencing(self.windows, name, tags, self.now)
        parent = self.down_parent(name) if t.kind == "down" else None
        before = t.state
        d = should_send(t.state, Event(kind, at, window is not None, parent is not None), self.now, self.policy)
        t.state, t.ticked = d.state, True
        t.changed = t.changed or d.state != before
        if d.state.firing and not before.firing:
            t.details["cause"] = t.reason  # t.reason follows every later failure; the RESOLVED names this one
        if d.action in ("none", "cooldown") or d.message is None:
            return
        payload = explain(t, replace(t.about, tags=tuple(tags), event=d.message, at=at,
                                     since=t.state.since or at, suppressed=d.suppressed, last_results=t.recent))
        subject = "[upwatch] " + render.title(t.kind, d.message, payload)
        base = Row(t.fingerprint, t.kind, d.message, "none", t.endpoint_id, severity, subject=subject,
                   payload=payload)
        if d.action == "send":
            for channel, recipients in routes.targets(self.alerting, name, tags, t.kind, severity):
                self.rows.append(replace(base, channel=channel, recipients=recipients,
                                         next_attempt_at=self.now + self.alerting.group_wait))
            return
        why = (f"silenced by maintenance window {window.name or window.id!r}" if window is not None
               else f"folded into the DOWN alert of {parent}")
        self.rows.append(replace(base, state="suppressed", last_error=why))
        if d.action == "folded" and d.message == "firing" and parent is not None:
            self.folds.append((parent, name))

    def results(self, ep: EndpointInfo, rows: list[Result]) -> None:
        """Consecutive-result thresholds per location; DOWN when min_locations agree."""
        a = self.alerting
        t = self.track(f"down:{ep.name}", "down", ep.id)
        t.about = Payload(endpoint=ep.name, target=ep.target, severity="critical")
        locs = t.locations()
        for r in rows:
            if r.skipped:
                continue
            loc = observe(locs.get(r.location, Location()), r.ok, a.failure_threshold, a.success_threshold,
                          immediate=r.missed_heartbeat and not r.ok)
            locs[r.location] = loc
            t.set_location(r.location, loc)
            t.recent = (*t.recent, r.summary())[-RECENT:]
            t.last_result_at = r.time
            if not r.ok:
                t.reason = r.reason()
            if is_down(locs.values(), a.min_locations) != t.state.firing:
                self.decide(t, "resolved" if t.state.firing else "firing", r.time)
        certs = [(r, r.cert_not_after) for r in rows if r.cert_not_after is not None]
        if certs:
            self.certificate(ep, *certs[-1])

    def certificate(self, ep: EndpointInfo, r: Result, not_after: datetime) -> None:
        t = self.track(f"cert:{ep.name}", "cert", ep.id)
        days = (not_after - self.now).total_seconds() / 86400
        expiring = days <= self.alerting.cert_expiry_days
        t.reason = (f"certificate expires in {days:.0f} days ({not_after:%Y-%m-%d})" if days >= 0
                    else f"certificate expired on {not_after:%Y-%m-%d}")
        t.about = Payload(endpoint=ep.name, target=ep.target, severity="high" if days <= 3 else "medium",
                          cert_not_after=not_after)
        if expiring != t.state.firing:
            self.decide(t, "firing" if expiring else "resolved", r.time)

    def incident(self, inc: Incident) -> None:
        """A detector incident at or above min_severity fires, unless its series' anomaly is still firing
        (then it is the same anomaly going on) or it was already told and resolved."""
        if not routes.at_least(inc.severity, self.alerting.min_severity):
            return
        t = self.track(f"anomaly:{inc.series}", "anomaly", inc.endpoint_id)
        seen = t.details.get("incident") == inc.id
        t.details["incident"] = inc.id
        if t.state.firing:
            t.changed = t.changed or not seen
            return
        through = _time(t.details.get("resolved_through"))
        if seen and (through is None or inc.ended_at <= through):  # re-read in the watermark overlap
            return
        t.about = Payload(endpoint=inc.name, series=inc.series, severity=inc.severity, score=inc.peak_score,
                          incident=inc.id)
        t.reason, t.changed = inc.reason or f"anomaly score {inc.peak_score:.2f}", True
        self.decide(t, "firing", inc.started_at)

    def anomaly_over(self, t: Tracked, progress: Progress) -> None:
        """RESOLVED once the detector has judged `anomaly_resolve_after` of the series' rows normal since
        its last anomalous point: a shorter lull inside the anomaly is no RESOLVED (hysteresis)."""
        last = progress.last_anomaly_at or t.state.since
        if not t.state.firing or progress.watermark is None or last is None:
            return
        quiet = progress.watermark - last
        if quiet < self.alerting.anomaly_resolve_after:
            return
        t.details["resolved_through"] = last.isoformat()
        t.reason = f"back within its baseline for {durations.format(quiet)}"
        self.decide(t, "resolved", last)

    def rule(self, rule: Rule, value: float | None) -> None:
        """A threshold rule's value this round; transitions are kept in alert_rule_firings."""
        endpoint = self.by_name.get(rule.endpoint or "")
        t = self.track(f"rule:{rule.name}", "rule", endpoint.id if endpoint else None)
        shown = "no data" if value is None else (f"{value:.1%}" if rule.condition.metric == "error_rate"
                                                 else f"{value:g}")
        t.reason = f"{rule.rule} (now {shown})"
        t.about = Payload(endpoint=rule.endpoint or rule.service or "", rule=rule.name, severity=rule.severity,
                          value=value)
        firing = breached(value, rule.condition)
        if firing != t.state.firing:
            self.firings.append(("fire" if firing else "resolve", rule, value))
            self.decide(t, "firing" if firing else "resolved", self.now)
        elif firing:
            self.firings.append(("update", rule, value))

    def ticks(self) -> None:
        """Reminders, and messages held back by a cooldown, maintenance or a parent now over."""
        rules = {f"rule:{name}" for name in self.rule_names}
        for t in list(self.tracked.values()):
            if not t.state.firing or t.ticked:
                continue
            gone = (t.fingerprint not in rules if t.kind == "rule"
                    else t.kind in ("down", "cert", "anomaly") and t.endpoint_id is not None
                    and t.endpoint_id not in self.endpoints)
            if gone:  # removed from the config or disabled: stop reminding, without a RESOLVED nobody could trust
                t.state, t.changed = replace(t.state, firing=False), True
                continue
            self.decide(t, "tick", self.now)


def explain(t: Tracked, payload: Payload) -> Payload:
    """`payload` with `reason` (the headline), `cause` (what made it fire) and, for a recovered DOWN,
    the `last_error` seen before it came back if that was something else."""
    cause = str(t.details.get("cause") or t.reason)
    if payload.event == "resolved" and t.kind == "down":
        return replace(payload, reason=cause, cause=cause, last_error=t.reason if t.reason != cause else None)
    return replace(payload, reason=t.reason, cause=cause)


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def dependency_order(endpoints: dict[int, EndpointInfo], ids: list[int]) -> list[int]:
    """Parents before children, so a child sees its parent's fresh DOWN in the same cycle."""
    by_name = {e.name: e for e in endpoints.values()}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        info = by_name.get(name)
        if info is None or name in seen:
            return 0
        return 1 + max((depth(p, seen | {name}) for p in info.depends_on), default=0)

    return sorted(ids, key=lambda i: (depth(endpoints[i].name), i))
