"""Assertions on a check's response, written as YAML mappings or Gatus-style condition strings.

Both spellings are parsed once, at config load (upwatch.conditions), into the
same `Assertion` objects; prober.checks.assertions runs them against what a
check observed. This module holds what both sides need: the parsed form and
how values are shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from upwatch import values

ORDERING = ("<=", ">=", "<", ">")
OPERATORS = ("==", "!=", *ORDERING, "contains", "not_contains", "matches", "exists")
_text = values.text
# What a placeholder resolves to when the check did not observe it (no status from a tcp check, no such JSON path).
# Shown as durations (`240h`, `-24h` once past), as Gatus shows them.
_DURATIONS = ("cert_expiration", "domain_expiration")
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "missing"})()


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
    """One parsed assertion: `subject op expected`."""

    subject: Subject
    op: str
    expected: Any
    text: str  # as the operator wrote it, shown in results


def show(value: Any, subject: Subject | None = None) -> str:
    """A value as results show it (at most 200 characters)."""
    if value is MISSING:
        return "missing"
    if subject is not None and subject.kind in _DURATIONS and not subject.length and values.is_measured(value):
        return values.duration_text(value)
    text = _text(value)
    return text if len(text) <= 200 else text[:197] + "..."


def expected_text(expected: Any, subject: Subject | None = None) -> str:
    """An expected value as written in messages: any(...), pat(...), 200-299, /regex/."""
    if isinstance(expected, AnyOf):
        return "any(" + ", ".join(map(_text, expected.values)) + ")"
    if isinstance(expected, Glob):
        return f"pat({expected.pattern})"
    if isinstance(expected, frozenset):
        return _ranges(sorted(expected))
    if isinstance(expected, re.Pattern):
        return f"/{expected.pattern}/"
    return show(expected, subject)


def _ranges(codes: list[int]) -> str:
    parts, start = [], 0
    for i in range(1, len(codes) + 1):
        if i == len(codes) or codes[i] != codes[i - 1] + 1:
            parts.append(str(codes[start]) if start == i - 1 else f"{codes[start]}-{codes[i - 1]}")
            start = i
    return ",".join(parts)
