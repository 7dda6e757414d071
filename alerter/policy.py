"""Pure alerting policy: no I/O, `now` is always a parameter.

Two layers. `observe` turns one location's check results into a DOWN/UP
verdict with Gatus-style consecutive thresholds; `should_send` decides, per
fingerprint, whether a firing/resolved/tick event becomes a message, is held
back by the cooldown (counted), silenced by maintenance or folded into a
parent's DOWN (both recorded, not sent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

EventKind = Literal["firing", "resolved", "tick"]
Action = Literal["send", "cooldown", "silenced", "folded", "none"]
Message = Literal["firing", "resolved", "reminder"]


@dataclass(frozen=True)
class Location:
    """Consecutive results of one endpoint seen from one prober location."""

    failures: int = 0
    successes: int = 0
    down: bool = False


def observe(loc: Location, ok: bool, failure_threshold: int, success_threshold: int,
            immediate: bool = False) -> Location:
    """Count one result; DOWN after `failure_threshold` failures, UP after `success_threshold` successes.

    `immediate` marks a failure that is already conclusive (a missed heartbeat is
    reported only once its grace has passed)."""
    if ok:
        successes = loc.successes + 1
        return Location(0, successes, loc.down and successes < success_threshold)
    failures = failure_threshold if immediate else loc.failures + 1
    return Location(failures, 0, loc.down or failures >= failure_threshold)


def is_down(locations: Iterable[Location], min_locations: int) -> bool:
    """DOWN only when enough locations agree, so one bad network path pages nobody."""
    return sum(1 for loc in locations if loc.down) >= min_locations


@dataclass(frozen=True)
class Policy:
    cooldown: timedelta = timedelta(minutes=10)
    repeat_interval: timedelta = timedelta(hours=4)
    send_resolved: bool = True


@dataclass(frozen=True)
class State:
    """What has been decided and told for one fingerprint (persisted in alert_state)."""

    firing: bool = False
    since: datetime | None = None
    announced: bool = False  # the current (or last) firing was sent to someone
    last_sent_at: datetime | None = None
    suppressed: int = 0  # messages held back by the cooldown since the last one sent
    acked: bool = False  # someone acknowledged this firing (over the API): no reminders until it resolves


@dataclass(frozen=True)
class Event:
    kind: EventKind
    at: datetime
    silenced: bool = False  # inside a maintenance window
    folded: bool = False  # a parent it depends on is DOWN


@dataclass(frozen=True)
class Decision:
    action: Action
    state: State
    message: Message | None = None  # what is sent or recorded
    suppressed: int = 0  # how many messages the cooldown held back before this one


def should_send(state: State, event: Event, now: datetime, policy: Policy) -> Decision:
    """The one place that decides whether an event is told; never raises."""
    if event.kind == "firing" and not state.firing:
        return _fire(replace(state, firing=True, since=event.at, announced=False, acked=False), event, now, policy)
    if event.kind == "resolved":
        return _resolve(state, event, now, policy)
    return _tick(state, event, now, policy)


def _cooling(state: State, now: datetime, policy: Policy) -> bool:
    return state.last_sent_at is not None and now - state.last_sent_at < policy.cooldown


def _sent(state: State, now: datetime, message: Message, **changes: object) -> Decision:
    new = replace(state, last_sent_at=now, suppressed=0, **changes)  # type: ignore[arg-type]
    return Decision("send", new, message, state.suppressed)


def _fire(state: State, event: Event, now: datetime, policy: Policy) -> Decision:
    if event.silenced:
        return Decision("silenced", state, "firing")
    if event.folded:
        return Decision("folded", state, "firing")
    if _cooling(state, now, policy):
        return Decision("cooldown", replace(state, suppressed=state.suppressed + 1), "firing")
    return _sent(state, now, "firing", announced=True)


def _resolve(state: State, event: Event, now: datetime, policy: Policy) -> Decision:
    if not state.firing:
        return Decision("none", state)
    ok = replace(state, firing=False, acked=False)
    if state.announced:
        # A DOWN someone was told about always gets its RESOLVED, maintenance or not:
        # otherwise they keep believing it is down.
        return _sent(ok, now, "resolved") if policy.send_resolved else Decision("none", ok)
    if event.silenced:
        return Decision("silenced", ok, "resolved")
    if event.folded:
        return Decision("folded", ok, "resolved")
    return Decision("cooldown", replace(ok, suppressed=state.suppressed + 1), "resolved")


def _tick(state: State, event: Event, now: datetime, policy: Policy) -> Decision:
    if not state.firing or event.silenced:
        return Decision("none", state)
    if not state.announced:
        # Held back earlier (cooldown, maintenance, parent down) and still firing: tell now.
        if event.folded or _cooling(state, now, policy):
            return Decision("none", state)
        return _sent(state, now, "firing", announced=True)
    if state.acked:
        return Decision("none", state)
    if state.last_sent_at is not None and now - state.last_sent_at >= policy.repeat_interval:
        return _sent(state, now, "reminder")
    return Decision("none", state)
