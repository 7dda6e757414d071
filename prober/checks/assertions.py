"""Running parsed assertions against what a check observed (parsing is upwatch.conditions).

`evaluate` returns, for each assertion, whether it held and why not, following
Gatus's condition semantics (upwatch.values).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prober.checks import rdap
from upwatch import values
from upwatch.assertions import MISSING, ORDERING, AnyOf, Assertion, Glob, Placeholder, Subject, expected_text, show
from upwatch.records import AssertionResult

_text = values.text


def check(assertion: Assertion, observed: Observed) -> AssertionResult:
    """Whether `assertion` held for `observed`, with the value seen and, when it failed, why."""
    actual = observed.value(assertion.subject)
    other = assertion.expected
    expected = observed.value(other.subject) if isinstance(other, Placeholder) else other
    ok = expected is not MISSING and _holds(actual, assertion.op, expected)
    reason = None if ok else observed.unknown(assertion) or _reason(actual, assertion.op, expected, assertion)
    return AssertionResult(assertion.text, ok, show(actual, assertion.subject), reason)


@dataclass
class Observed:
    """What a check saw. Fields a check kind does not have stay None."""

    now: dt.datetime
    status_code: int | None = None
    latency_ms: float | None = None
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    cert_not_after: dt.datetime | None = None
    connected: bool | None = None
    ip: str | None = None
    dns_rcode: str | None = None  # NOERROR, NXDOMAIN, SERVFAIL ... (Gatus's [DNS_RCODE])
    # [DOMAIN_EXPIRATION]: looked up (cached) by prober.checks.rdap.run before the check, for any kind.
    domain: rdap.Expiry | None = field(default_factory=rdap.CURRENT.get)
    _json: Any = field(default=MISSING, repr=False)

    def value(self, subject: Subject) -> Any:
        raw = self._raw(subject)
        if not subject.length or raw is MISSING:
            return raw
        if subject.kind == "body" and not subject.path and isinstance(self._document(), list | dict):
            raw = self._document()
        # Gatus: an array counts its elements; anything else counts the characters of its (minified JSON) text.
        return len(raw) if isinstance(raw, list) else len(_text(raw))

    def _raw(self, subject: Subject) -> Any:
        kind = subject.kind
        if kind == "status":
            return MISSING if self.status_code is None else self.status_code
        if kind == "response_time":
            return MISSING if self.latency_ms is None else self.latency_ms
        if kind == "connected":
            return MISSING if self.connected is None else self.connected
        if kind == "ip":
            return MISSING if self.ip is None else self.ip
        if kind == "dns_rcode":
            return MISSING if self.dns_rcode is None else self.dns_rcode
        if kind == "cert_expiration":  # milliseconds, as Gatus resolves it
            return MISSING if self.cert_not_after is None else (self.cert_not_after - self.now).total_seconds() * 1000
        if kind == "domain_expiration":
            expires_at = None if self.domain is None else self.domain.expires_at
            return MISSING if expires_at is None else (expires_at - self.now).total_seconds() * 1000
        if kind == "header":
            found = None if self.headers is None else _header(self.headers, subject.name)
            return MISSING if found is None else found
        if self.body is None:
            return MISSING
        if not subject.path:  # trimmed like Gatus, so `[BODY] == 1` holds for "1\n"
            return self.body.decode("utf-8", "replace").strip()
        return _walk(self._document(), subject.path)

    def unknown(self, assertion: Assertion) -> str | None:
        """Why a failed lookup left [DOMAIN_EXPIRATION] without a value, when that is why `assertion` failed."""
        other = assertion.expected.subject if isinstance(assertion.expected, Placeholder) else None
        if self.domain is None or self.domain.error is None or "domain_expiration" not in (
                assertion.subject.kind, other.kind if other else ""):
            return None
        return f"domain expiration unknown: {self.domain.error}"

    def _document(self) -> Any:
        if self._json is MISSING:
            try:
                self._json = json.loads(self.body or b"")
            except ValueError:
                self._json = None
        return self._json


def evaluate(assertions: Sequence[Assertion], observed: Observed) -> list[AssertionResult]:
    """Run every assertion, in order."""
    return [check(a, observed) for a in assertions]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    found = headers.get(name)
    if found is None:
        lowered = name.lower()
        found = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return found


def _walk(document: Any, path: tuple[str | int, ...]) -> Any:
    node = document
    for step in path:
        found = (isinstance(step, int) and isinstance(node, list) and -len(node) <= step < len(node)) \
            or (isinstance(step, str) and isinstance(node, dict) and step in node)
        if not found:
            return MISSING
        node = node[step]
    return node


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, AnyOf):
        return any(_equal(actual, e) for e in expected.values)
    if isinstance(expected, Glob):
        return values.pattern(expected.pattern).fullmatch(_text(actual)) is not None
    if isinstance(expected, frozenset):
        return actual in expected
    return values.equal(actual, expected)


def _holds(actual: Any, op: str, expected: Any) -> bool:
    if op == "exists":
        return (actual is not MISSING) == bool(expected)
    if actual is MISSING:
        return False
    if op in ("==", "!="):
        return _equal(actual, expected) == (op == "==")
    if op == "contains":
        return str(expected) in _text(actual)
    if op == "not_contains":
        return str(expected) not in _text(actual)
    if op == "matches":
        return expected.search(_text(actual)) is not None
    a, e = values.number(actual), values.number(expected)
    if a is None or e is None:
        return False
    return {"<": a < e, "<=": a <= e, ">": a > e, ">=": a >= e}[op]


def _reason(actual: Any, op: str, expected: Any, assertion: Assertion) -> str:
    """Why it failed; a right-hand placeholder is named with its value, never passed off as a literal."""
    subject, other = assertion.subject, assertion.expected
    right = other.subject if isinstance(other, Placeholder) else subject
    if actual is MISSING and op != "exists":
        return "value is missing"
    if isinstance(other, Placeholder) and expected is MISSING:
        return f"{other.text} is missing"
    if op == "exists":
        return "value is missing" if expected else f"value exists: {show(actual)}"
    if op in ORDERING and values.number(actual) is None:
        return f"{show(actual)} is not a number"
    shown = expected_text(expected, right)
    if isinstance(other, Placeholder):
        if op in ORDERING and values.number(expected) is None:
            return f"{other.text} ({shown}) is not a number"
        shown = f"{other.text} ({shown})"
    words = {"contains": "to contain", "not_contains": "not to contain", "matches": "to match"}
    return f"expected {words.get(op, op)} {shown}, got {show(actual, subject)}"
