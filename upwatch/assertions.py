"""Assertions on a check's response, written as YAML mappings or Gatus-style condition strings.

Both spellings are parsed once, at config load, into the same `Assertion`
objects; `evaluate` runs them against what a check observed and returns, for
each, whether it held and why not. A bad condition is a ValueError whose
message names it (the config loader adds file, line and key).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from upwatch import values

ORDERING = ("<=", ">=", "<", ">")
OPERATORS = ("==", "!=", *ORDERING, "contains", "not_contains", "matches", "exists")
_text = values.text
_MISSING: Any = type("Missing", (), {"__repr__": lambda self: "missing"})()


@dataclass(frozen=True)
class Subject:
    """What an assertion looks at: status, response_time, body (or a JSON path in it), header, cert_expiration."""

    kind: str
    path: tuple[str | int, ...] = ()
    name: str = ""  # header name
    length: bool = False


@dataclass(frozen=True)
class AnyOf:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Glob:
    pattern: str


@dataclass(frozen=True)
class Placeholder:
    """A placeholder on the right-hand side (`[BODY].a == [BODY].b`), resolved when the assertion runs."""

    subject: Subject
    text: str  # as written, shown next to its value in reasons


@dataclass(frozen=True)
class Assertion:
    subject: Subject
    op: str
    expected: Any
    text: str  # as the operator wrote it, shown in results

    def check(self, observed: Observed) -> dict[str, Any]:
        """{"assertion", "ok", "actual"} plus "reason" when it failed."""
        actual = observed.value(self.subject)
        other = self.expected
        expected = observed.value(other.subject) if isinstance(other, Placeholder) else other
        ok = expected is not _MISSING and _holds(actual, self.op, expected)
        result: dict[str, Any] = {"assertion": self.text, "ok": ok, "actual": _show(actual, self.subject)}
        if not ok:
            result["reason"] = _reason(actual, self.op, expected, self)
        return result


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
    _json: Any = field(default=_MISSING, repr=False)

    def value(self, subject: Subject) -> Any:
        raw = self._raw(subject)
        if not subject.length or raw is _MISSING:
            return raw
        if subject.kind == "body" and not subject.path and isinstance(self._document(), list | dict):
            raw = self._document()
        # Gatus: an array counts its elements; anything else counts the characters of its (minified JSON) text.
        return len(raw) if isinstance(raw, list) else len(_text(raw))

    def _raw(self, subject: Subject) -> Any:
        kind = subject.kind
        if kind == "status":
            return _MISSING if self.status_code is None else self.status_code
        if kind == "response_time":
            return _MISSING if self.latency_ms is None else self.latency_ms
        if kind == "connected":
            return _MISSING if self.connected is None else self.connected
        if kind == "ip":
            return _MISSING if self.ip is None else self.ip
        if kind == "cert_expiration":  # milliseconds, as Gatus resolves it
            return _MISSING if self.cert_not_after is None else (self.cert_not_after - self.now).total_seconds() * 1000
        if kind == "header":
            found = None if self.headers is None else _header(self.headers, subject.name)
            return _MISSING if found is None else found
        if self.body is None:
            return _MISSING
        if not subject.path:  # trimmed like Gatus, so `[BODY] == 1` holds for "1\n"
            return self.body.decode("utf-8", "replace").strip()
        return _walk(self._document(), subject.path)

    def _document(self) -> Any:
        if self._json is _MISSING:
            try:
                self._json = json.loads(self.body or b"")
            except ValueError:
                self._json = None
        return self._json


def evaluate(assertions: Sequence[Assertion], observed: Observed) -> tuple[bool, list[dict[str, Any]]]:
    """Run every assertion; True only if all held."""
    results = [a.check(observed) for a in assertions]
    return all(r["ok"] for r in results), results


def _header(headers: Mapping[str, str], name: str) -> str | None:
    found = headers.get(name)
    if found is None:
        lowered = name.lower()
        found = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return found


def _walk(document: Any, path: tuple[str | int, ...]) -> Any:
    node = document
    for step in path:
        if (isinstance(step, int) and isinstance(node, list) and -len(node) <= step < len(node)) or (isinstance(step, str) and isinstance(node, dict) and step in node):
            node = node[step]
        else:
            return _MISSING
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
        return (actual is not _MISSING) == bool(expected)
    if actual is _MISSING:
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


def _show(value: Any, subject: Subject | None = None) -> str:
    if value is _MISSING:
        return "missing"
    if subject is not None and subject.kind == "cert_expiration" and not subject.length and values.is_measured(value):
        return values.duration_text(value)
    text = _text(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _expected_text(expected: Any, subject: Subject | None = None) -> str:
    if isinstance(expected, AnyOf):
        return "any(" + ", ".join(map(_text, expected.values)) + ")"
    if isinstance(expected, Glob):
        return f"pat({expected.pattern})"
    if isinstance(expected, frozenset):
        return _ranges(sorted(expected))
    if isinstance(expected, re.Pattern):
        return f"/{expected.pattern}/"
    return _show(expected, subject)


def _ranges(codes: list[int]) -> str:
    parts, start = [], 0
    for i in range(1, len(codes) + 1):
        if i == len(codes) or codes[i] != codes[i - 1] + 1:
            parts.append(str(codes[start]) if start == i - 1 else f"{codes[start]}-{codes[i - 1]}")
            start = i
    return ",".join(parts)


def _reason(actual: Any, op: str, expected: Any, assertion: Assertion) -> str:
    """Why it failed; a right-hand placeholder is named with its value, never passed off as a literal."""
    subject, other = assertion.subject, assertion.expected
    right = other.subject if isinstance(other, Placeholder) else subject
    if actual is _MISSING and op != "exists":
        return "value is missing"
    if isinstance(other, Placeholder) and expected is _MISSING:
        return f"{other.text} is missing"
    if op == "exists":
        return "value is missing" if expected else f"value exists: {_show(actual)}"
    if op in ORDERING and values.number(actual) is None:
        return f"{_show(actual)} is not a number"
    shown = _expected_text(expected, right)
    if isinstance(other, Placeholder):
        if op in ORDERING and values.number(expected) is None:
            return f"{other.text} ({shown}) is not a number"
        shown = f"{other.text} ({shown})"
    words = {"contains": "to contain", "not_contains": "not to contain", "matches": "to match"}
    return f"expected {words.get(op, op)} {shown}, got {_show(actual, subject)}"
