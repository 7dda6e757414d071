"""Parse assertions from config: YAML mappings and Gatus-style condition strings -> `Assertion`.

    - status: 200-299                        - "[STATUS] == any(200, 204)"
    - max_latency: 300ms                     - "[RESPONSE_TIME] < 300"
    - body_contains: ok                      - "[BODY] == pat(*ok*)"
    - body_not_contains: error               - "[BODY].status == UP"
    - body_matches: '^OK'                    - "len([BODY].items) > 0"
    - json: {path: data.items[0].id, equals: 3}   (or exists: true)
    - header: {name: Content-Type, equals: application/json}   (or matches: regex)
    - cert_valid_days: 14                    - "[CERTIFICATE_EXPIRATION] > 48h"
"""

from __future__ import annotations

import re
from typing import Any

from upwatch import durations
from upwatch.assertions import AnyOf, Assertion, Glob, Subject, _expected_text

_CONDITION = re.compile(r"^(?P<left>.+?)\s*(?P<op>==|!=|<=|>=|<|>)\s*(?P<right>.*?)$")
_PLACEHOLDER = re.compile(r"^\[(?P<name>[A-Z_]+)\](?P<path>.*)$")
_SEGMENT = re.compile(r"\.?([A-Za-z0-9_$@-]+)|\[(-?\d+)\]")
_PLACEHOLDERS = {"STATUS": "status", "RESPONSE_TIME": "response_time", "BODY": "body",
                 "CERTIFICATE_EXPIRATION": "cert_expiration", "CONNECTED": "connected"}
_STRUCTURED = ("status", "max_latency", "body_contains", "body_not_contains", "body_matches", "json", "header",
               "cert_valid_days")


def parse(item: Any) -> Assertion:
    """One assertion from config; raises ValueError naming the bad condition."""
    if isinstance(item, Assertion):
        return item
    if isinstance(item, str):
        return parse_condition(item)
    if isinstance(item, dict) and len(item) == 1:
        (key, value), = item.items()
        if key in _STRUCTURED:
            return _structured(str(key), value)
        raise ValueError(f"unknown assertion {key!r} (use one of {', '.join(_STRUCTURED)} or a condition string)")
    raise ValueError("an assertion is a condition string like '[STATUS] == 200' or a one-key mapping like "
                     "'status: 200-299'")


def parse_condition(text: str) -> Assertion:
    """A Gatus-style condition such as `[BODY].status == UP`."""
    m = _CONDITION.match(text.strip())
    if not m:
        raise ValueError(f"condition {text!r}: expected '<placeholder> <operator> <value>' "
                         "with an operator among ==, !=, <, <=, >, >=")
    left, op, right = m.group("left").strip(), m.group("op"), m.group("right").strip()
    written = re.search(r"[=!<>]+", text.strip()[len(m.group("left")) - 2:])
    if left[-1:] in "=!<>" or right[:1] in "=!<>" and written:
        raise ValueError(f"condition {text!r}: unknown operator {written.group(0) if written else op!r} "
                         "(use ==, !=, <, <=, >, >=)")
    try:
        if left.startswith("has(") and left.endswith(")"):
            if op not in ("==", "!=") or right not in ("true", "false"):
                raise ValueError("has(...) is compared with == true or == false")
            return Assertion(_subject(left[4:-1].strip()), "exists", (right == "true") == (op == "=="), text.strip())
        subject = _subject(left)
        expected = _value(subject, right)
    except ValueError as e:
        raise ValueError(f"condition {text!r}: {e}") from None
    if op in ("<", "<=", ">", ">=") and isinstance(expected, AnyOf | Glob):
        raise ValueError(f"condition {text!r}: {op} needs a single number")
    return Assertion(subject, op, expected, text.strip())


def _subject(left: str) -> Subject:
    length = left.startswith("len(") and left.endswith(")")
    if length:
        left = left[4:-1].strip()
    m = _PLACEHOLDER.match(left)
    if not m or m.group("name") not in _PLACEHOLDERS:
        raise ValueError(f"unknown placeholder {left!r} (use {', '.join('[' + p + ']' for p in _PLACEHOLDERS)})")
    kind = _PLACEHOLDERS[m.group("name")]
    path = json_path(m.group("path")) if m.group("path") else ()
    if path and kind != "body":
        raise ValueError(f"only [BODY] takes a path, not {left!r}")
    return Subject(kind, path=path, length=length)


def json_path(text: str) -> tuple[str | int, ...]:
    """'data.items[0].id' (or '.data.items[0].id') -> ('data', 'items', 0, 'id')."""
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"bad JSON path {text!r} at {text[pos:]!r} (use e.g. data.items[0].id)")
        steps.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not steps:
        raise ValueError("empty JSON path")
    return tuple(steps)


def _value(subject: Subject, right: str) -> Any:
    if right.startswith("any(") and right.endswith(")"):
        parts = [p.strip() for p in right[4:-1].split(",")]
        if not all(parts):
            raise ValueError("any() needs values separated by commas")
        return AnyOf(tuple(_scalar(subject, p) for p in parts))
    if right.startswith("pat(") and right.endswith(")"):
        return Glob(right[4:-1])
    if not right:
        raise ValueError("missing value after the operator")
    return _scalar(subject, right)


def _scalar(subject: Subject, text: str) -> Any:
    if subject.kind == "cert_expiration" and not subject.length:
        return durations.parse(text).total_seconds()
    if subject.kind == "response_time" and not subject.length:
        try:
            return float(text)
        except ValueError:
            return durations.parse(text).total_seconds() * 1000
    if subject.kind == "status" and not text.isdigit():
        raise ValueError(f"{text!r} is not a status code")
    if subject.kind == "connected" and text not in ("true", "false"):
        raise ValueError(f"{text!r} must be true or false")
    return text


def _structured(key: str, value: Any) -> Assertion:
    from upwatch.config.endpoints import parse_status_set

    if key == "status":
        codes = parse_status_set(value)
        return Assertion(Subject("status"), "==", codes, f"status in {_expected_text(codes)}")
    if key == "max_latency":
        limit = durations.parse(value).total_seconds() * 1000
        return Assertion(Subject("response_time"), "<=", limit, f"latency <= {limit:g} ms")
    if key == "cert_valid_days":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"cert_valid_days must be a number of days (got {value!r})")
        return Assertion(Subject("cert_expiration"), ">", value * 86400.0, f"certificate valid > {value:g} days")
    if key in ("body_contains", "body_not_contains", "body_matches"):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key} needs a non-empty string")
        op = key.removeprefix("body_")
        expected: Any = _regex(value) if op == "matches" else value
        return Assertion(Subject("body"), op, expected, f"body {op.replace('_', ' ')} {value!r}")
    return _json(value) if key == "json" else _header(value)


def _json(value: Any) -> Assertion:
    if not isinstance(value, dict) or "path" not in value or len(value.keys() - {"path"}) != 1 \
            or not value.keys() & {"equals", "exists"}:
        raise ValueError("json needs 'path' and one of 'equals' or 'exists'")
    path = json_path(str(value["path"]))
    if "exists" in value:
        exists = bool(value["exists"])
        return Assertion(Subject("body", path), "exists", exists, f"json {value['path']} exists is {str(exists).lower()}")
    return Assertion(Subject("body", path), "==", value["equals"], f"json {value['path']} == {value['equals']!r}")


def _header(value: Any) -> Assertion:
    if not isinstance(value, dict) or "name" not in value or len(value.keys() - {"name"}) != 1 \
            or not value.keys() & {"equals", "matches"}:
        raise ValueError("header needs 'name' and one of 'equals' or 'matches'")
    name = str(value["name"])
    if "equals" in value:
        return Assertion(Subject("header", name=name), "==", str(value["equals"]), f"header {name} == {value['equals']!r}")
    return Assertion(Subject("header", name=name), "matches", _regex(str(value["matches"])),
                     f"header {name} matches {value['matches']!r}")


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"bad regular expression {pattern!r}: {e}") from None
