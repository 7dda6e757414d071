"""The per-recipient state machine (pure): what one attempt's outcome makes of a recipient."""

from __future__ import annotations

import pytest

from alerter import ledger
from alerter.ledger import Standing
from alerter.records import Delivery, Outcome

R = "a@example.test"


def attempt(state: str, error: str | None = "why") -> Delivery:
    return Delivery.failed("attempt", recipients={R: Outcome(state, error)})  # type: ignore[arg-type]


@pytest.mark.parametrize(("before", "delivery", "expired", "after"), [
    (None, attempt("sent", None), False, "sent"),
    (None, attempt("pending"), False, "pending"),
    (None, attempt("pending"), True, "failed"),
    (None, attempt("failed"), False, "failed"),
    (None, attempt("uncertain"), False, "uncertain"),
    ("uncertain", attempt("uncertain"), False, "unconfirmed"),
    ("uncertain", attempt("pending"), False, "uncertain"),  # still owed, but still only one more copy
    ("uncertain", attempt("pending"), True, "unconfirmed"),
    ("uncertain", attempt("sent", None), False, "sent"),
    ("pending", Delivery.failed("cannot reach SMTP server"), False, "pending"),
    ("pending", Delivery.failed("no SMTP server", permanent=True), False, "failed"),
], ids=["sent", "4xx", "4xx-too-old", "5xx", "no-final-reply", "no-final-reply-twice",
        "4xx-after-uncertain", "too-old-after-uncertain", "sent-after-uncertain", "no-connection",
        "not-configured"])
def test_one_attempt_moves_a_recipient(before: str | None, delivery: Delivery, expired: bool, after: str) -> None:
    standing = {R: Standing(before, 1)} if before else {}  # type: ignore[arg-type]
    [(rcpt, new)] = ledger.settle(standing, [R], delivery, expired).items()
    assert rcpt == R and new.state == after and new.attempts == (2 if before else 1)


def test_alert_is_pending_while_anyone_is_owed_then_sent_if_anyone_received_it() -> None:
    s = {"a": Standing("sent"), "b": Standing("pending", 1, "450 busy")}
    assert ledger.verdict(["a", "b"], s) == ("pending", "b: pending: 450 busy")
    assert ledger.owed(["a", "b", "c"], s) == ("b", "c")
    assert ledger.verdict(["a", "b"], s | {"b": Standing("failed", 2, "550 no such user")}) == (
        "sent", "b: failed: 550 no such user")
    assert ledger.verdict(["b"], {"b": Standing("unconfirmed", 2, "no reply")}) == ("sent", "b: unconfirmed: no reply")
    assert ledger.verdict(["b"], {"b": Standing("failed", 1, "550")}) == ("failed", "b: failed: 550")
