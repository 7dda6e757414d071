from datetime import UTC, datetime, timedelta

import pytest

from alerter.policy import Event, EventKind, Location, Policy, State, is_down, observe, should_send

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = Policy(cooldown=timedelta(minutes=10), repeat_interval=timedelta(hours=4), send_resolved=True)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def run_checks(results: str, failure_threshold: int = 3, success_threshold: int = 2) -> list[bool]:
    """'ffffss' -> the DOWN verdict after each result."""
    loc, verdicts = Location(), []
    for r in results:
        loc = observe(loc, r == "s", failure_threshold, success_threshold)
        verdicts.append(loc.down)
    return verdicts


@pytest.mark.parametrize(("results", "expected"), [
    ("ff", [False, False]),
    ("fff", [False, False, True]),
    ("ffsf", [False, False, False, False]),
    ("fffs", [False, False, True, True]),
    ("fffss", [False, False, True, True, False]),
    ("fffsfs", [False, False, True, True, True, True]),
], ids=["two-failures-not-down", "third-failure-down", "success-resets-count", "one-success-still-down",
        "two-successes-up", "interrupted-recovery-stays-down"])
def test_consecutive_thresholds(results: str, expected: list[bool]) -> None:
    assert run_checks(results) == expected


def test_missed_heartbeat_is_down_at_once() -> None:
    assert observe(Location(), False, 3, 2, immediate=True).down


@pytest.mark.parametrize(("down_locations", "min_locations", "expected"), [
    (1, 1, True), (1, 2, False), (2, 2, True), (0, 1, False),
], ids=["one-of-one", "one-bad-path-pages-nobody", "two-agree", "none"])
def test_min_locations(down_locations: int, min_locations: int, expected: bool) -> None:
    locations = [Location(3, 0, True)] * down_locations + [Location(0, 5, False)] * 2
    assert is_down(locations, min_locations) is expected


FIRING = State(firing=True, since=at(0), announced=True, last_sent_at=at(0))
HELD = State(firing=True, since=at(0), announced=False, last_sent_at=at(-5), suppressed=2)


@pytest.mark.parametrize(("state", "event", "now", "action", "message", "suppressed_after"), [
    (State(), Event("firing", at(0)), at(0), "send", "firing", 0),
    (State(last_sent_at=at(-3)), Event("firing", at(0)), at(0), "cooldown", "firing", 1),
    (State(last_sent_at=at(-11)), Event("firing", at(0)), at(0), "send", "firing", 0),
    (State(), Event("firing", at(0), silenced=True), at(0), "silenced", "firing", 0),
    (State(), Event("firing", at(0), folded=True), at(0), "folded", "firing", 0),
    (FIRING, Event("firing", at(1)), at(1), "none", None, 0),
    (FIRING, Event("resolved", at(1)), at(1), "send", "resolved", 0),
    (FIRING, Event("resolved", at(1), silenced=True), at(1), "send", "resolved", 0),
    (HELD, Event("resolved", at(1)), at(1), "cooldown", "resolved", 3),
    (HELD, Event("resolved", at(1), silenced=True), at(1), "silenced", "resolved", 2),
    (State(), Event("resolved", at(1)), at(1), "none", None, 0),
    (HELD, Event("tick", at(4)), at(4), "none", None, 2),
    (HELD, Event("tick", at(6)), at(6), "send", "firing", 0),
    (HELD, Event("tick", at(6), silenced=True), at(6), "none", None, 2),
    (HELD, Event("tick", at(6), folded=True), at(6), "none", None, 2),
    (FIRING, Event("tick", at(239)), at(239), "none", None, 0),
    (FIRING, Event("tick", at(240)), at(240), "send", "reminder", 0),
    (FIRING, Event("tick", at(240), silenced=True), at(240), "none", None, 0),
    (State(), Event("tick", at(240)), at(240), "none", None, 0),
], ids=["first-down-sent", "down-within-cooldown-counted", "down-after-cooldown-sent", "maintenance-recorded",
        "child-folded-into-parent", "still-down-nothing-new", "resolved-sent", "resolved-sent-even-in-maintenance",
        "unannounced-resolve-counted", "unannounced-resolve-in-maintenance", "resolve-when-ok-ignored",
        "held-down-waits-for-cooldown", "held-down-told-after-cooldown", "held-down-quiet-in-maintenance",
        "held-down-quiet-while-parent-down", "no-reminder-before-repeat-interval", "reminder-after-repeat-interval",
        "no-reminder-in-maintenance", "tick-when-ok-ignored"])
def test_should_send(state: State, event: Event, now: datetime, action: str, message: str | None,
                     suppressed_after: int) -> None:
    decision = should_send(state, event, now, POLICY)
    assert (decision.action, decision.message) == (action, message)
    assert decision.state.suppressed == suppressed_after
    if action == "send":
        assert decision.state.last_sent_at == now


def test_sent_message_reports_and_resets_suppressed_count() -> None:
    decision = should_send(HELD, Event("tick", at(6)), at(6), POLICY)
    assert decision.suppressed == 2 and decision.state.suppressed == 0 and decision.state.announced


def test_resolved_not_sent_when_send_resolved_is_off() -> None:
    decision = should_send(FIRING, Event("resolved", at(1)), at(1), Policy(send_resolved=False))
    assert decision.action == "none" and not decision.state.firing


def test_flapping_endpoint_sends_a_bounded_number_of_messages() -> None:
    """Down/up every 15 s check for an hour: at most 2 messages per cooldown window (+1 at its end)."""
    state, loc, sent = State(), Location(), []
    now = T0
    for i in range(240):
        now = T0 + timedelta(seconds=15 * i)
        loc = observe(loc, i % 2 == 1, 1, 1)
        kind: EventKind = "firing" if loc.down else "resolved"
        for event in (Event(kind, now), Event("tick", now)):
            decision = should_send(state, event, now, POLICY)
            state = decision.state
            if decision.action == "send":
                sent.append((now, decision.message))
    assert 6 <= len(sent) <= 3 * 6 + 1
    for start in range(0, 60, 10):
        window = [s for s in sent if at(start) <= s[0] < at(start + 10)]
        assert len(window) <= 3
