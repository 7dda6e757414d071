"""Parse assertions from config: YAML mappings and Gatus-style condition strings -> `Assertion`.

    - status: 200-299                        - "[STATUS] == any(200, 204)"
    - max_latency: 300ms                     - "[RESPONSE_TIME] < 300"
    - body_contains: ok                      - "[BODY] == pat(*ok*)"
    - body_not_contains: error               - "[BODY].status == UP"
    - body_matches: '^OK'                    - "len([BODY].items) > 0"
    - json: {path: data.items[0].id, equals: 3}   (or exists: true)
    - header: {name: Content-Type, equals: application/json}   (or matches: regex)
    - cert_valid_days: 14                    - "[CERTIFICATE_EXPIRATION] > 48h"
                                             - "[DOMAIN_EXPIRATION] > 720h"   (RDAP: prober.checks.rdap)
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import replace
from typing import Any

from upwatch import durations, values
from upwatch.assertions import ORDERING, AnyOf, Assertion, Glob, Placeholder, Subject, expected_text

# Gatus looks for " == " first, then these in order; the first one found splits the condition.
_OPERATORS = ("==", "!=", "<=", ">=", ">", "<")
_FLIPPED = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}
_OPERATOR_RUN = re.compile(r"[=!<>]+")
_PLACEHOLDER = re.compile(r"^\[(?P<name>[A-Za-z_]+)\](?P<path>.*)$")
_SEGMENT = re.compile(r"\.?([A-Za-z0-9_$@-]+)|\[(-?\d+)\]")
_PLACEHOLDERS = {"STATUS": "status", "RESPONSE_TIME": "response_time", "BODY": "body",
                 "CERTIFICATE_EXPIRATION": "cert_expiration", "CONNECTED": "connected", "IP": "ip",
                 "DNS_RCODE": "dns_rcode", "DOMAIN_EXPIRATION": "domain_expiration"}
# Gatus placeholders we do not resolve: a clear error rather than Gatus's fallback to comparing the literal text.
_UNSUPPORTED = {"CONTEXT": "there are no suites"}
# The rcode names a DNS response can carry (dnspython's, which are Gatus's); the dns check's expected_rcode too.
DNS_RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET",
              "NOTAUTH", "NOTZONE", "BADVERS")
# Compared in milliseconds; literals may be durations.
_TIMES = ("response_time", "cert_expiration", "domain_expiration")
_STATUS_PART = re.compile(r"^\s*([1-5]\d\d)\s*(?:-\s*([1-5]\d\d)\s*)?$")
# Kinds without a host name of their own for [DOMAIN_EXPIRATION]: a dns endpoint's host is the name it queries
# (Gatus has no [DOMAIN_EXPIRATION] for dns either), a push endpoint has no host.
NO_DOMAIN_KINDS = frozenset({"dns", "push"})
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_STRUCTURED = ("status", "max_latency", "body_contains", "body_not_contains", "body_matches", "json", "header",
               "cert_valid_days")


def parse_status_set(value: Any) -> frozenset[int]:
    """'200-299', '200,204', 200 or [200, '300-399'] -> a set of status codes."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return _status_set(value)
    return _parse_status_set(value)


@functools.lru_cache(maxsize=256)  # thousands of endpoints share one spelling, and so one frozenset
def _status_set(value: str | int) -> frozenset[int]:
    return _parse_status_set(value)


def _parse_status_set(value: Any) -> frozenset[int]:
    parts: list[Any] = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
    codes: set[int] = set()
    for part in parts:
        for piece in str(part).split(","):
            m = _STATUS_PART.match(piece)
            if not m:
                raise ValueError(f"{piece.strip()!r} is not a status code or range like 200-299")
            low, high = int(m.group(1)), int(m.group(2) or m.group(1))
            if high < low:
                raise ValueError(f"{piece.strip()!r}: range end is below its start")
            codes.update(range(low, high + 1))
    return frozenset(codes)


def ascii_host(host: str) -> str:
    """A host name lower-cased, without a final dot, internationalised labels in their xn-- form."""
    name = host.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name  # not a valid name: domain_problem rejects its labels


def reads_domain(assertion: Assertion) -> bool:
    """Whether `assertion` reads [DOMAIN_EXPIRATION], on either side."""
    other = assertion.expected
    return assertion.subject.kind == "domain_expiration" or (
        isinstance(other, Placeholder) and other.subject.kind == "domain_expiration")


def domain_problem(kind: str, host: str) -> str | None:
    """Why an endpoint of `kind` on `host` has no domain for [DOMAIN_EXPIRATION] to look up, if it has none."""
    if kind in NO_DOMAIN_KINDS:
        return f"[DOMAIN_EXPIRATION] does not apply to kind {kind} (it has no host name of its own)"
    name = ascii_host(host)
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        return f"[DOMAIN_EXPIRATION] needs a host name, and {host} is an IP address"
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return f"[DOMAIN_EXPIRATION] needs a domain name such as example.com, not {host!r}"
    return None


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
    """A Gatus-style condition such as `[BODY].status == UP` or `[BODY].age == [BODY].id`."""
    text = text.strip()
    try:
        return _condition(text)
    except ValueError as e:
        raise ValueError(f"condition {text!r}: {e}") from None


def _condition(text: str) -> Assertion:
    op, left, right = _split(text)
    left_subject, right_subject = _operand(left), _operand(right)
    if left_subject is None:  # `200 == [STATUS]`, `any(200, 204) == [STATUS]`: the placeholder leads
        if right_subject is None:
            raise ValueError("neither side is a placeholder such as [STATUS] or [BODY].path, so it never changes")
        left, right, op = right, left, _FLIPPED[op]
        left_subject, right_subject = right_subject, None
    if _function(left) == "has" or _function(right) == "has":
        return _has(left, op, right, right_subject, text)
    if right_subject is not None:
        return Assertion(left_subject, op, Placeholder(right_subject, right), text)
    expected = _value(left_subject, op, right)
    if op in ORDERING and isinstance(expected, AnyOf | Glob):
        raise ValueError(f"{op} needs a single number")
    return Assertion(left_subject, op, expected, text)


def _split(text: str) -> tuple[str, str, str]:
    """(operator, left, right) the way Gatus splits: the operator needs a space on each side."""
    op = next((o for o in _OPERATORS if f" {o} " in text), None)
    if op is None:
        raise ValueError(_no_operator(text))
    parts = text.split(f" {op} ")
    if len(parts) > 2:
        raise ValueError(f"{op} appears more than once; a condition compares two values")
    left, right = parts[0].strip(), parts[1].strip()
    if not left or not right:
        raise ValueError(f"missing value {'before' if not left else 'after'} the operator")
    return op, left, right


def _no_operator(text: str) -> str:
    for run in _OPERATOR_RUN.finditer(text):
        if run.group(0) not in _OPERATORS:
            return f"unknown operator {run.group(0)!r} (use ==, !=, <, <=, >, >=)"
        before, after = text[:run.start()].strip(), text[run.end():].strip()
        if not before or not after:
            return f"missing value {'before' if not before else 'after'} the operator"
        return f"put a space on each side of the operator, as in '{before} {run.group(0)} {after}'"
    return "expected '<value> <operator> <value>' with an operator among ==, !=, <, <=, >, >="


def _function(operand: str) -> str:
    for name in ("len", "has"):
        if operand.startswith(f"{name}(") and operand.endswith(")"):
            return name
    return ""


def _operand(text: str) -> Subject | None:
    """The placeholder `text` names (inside len() or has() too); None for a literal."""
    function = _function(text)
    inner = text[4:-1].strip() if function else text
    m = _PLACEHOLDER.match(inner)
    if m is None:
        if function:
            raise ValueError(f"{function}() takes a placeholder such as [BODY].items, not {inner!r}")
        return None
    name = m.group("name").upper()
    kind = _PLACEHOLDERS.get(name)
    if name in _UNSUPPORTED:
        raise ValueError(f"[{name}] is not supported by upwatch ({_UNSUPPORTED[name]})")
    if kind is None:
        raise ValueError(f"unknown placeholder {inner!r} (use {', '.join('[' + p + ']' for p in _PLACEHOLDERS)})")
    path = json_path(m.group("path")) if m.group("path") else ()
    if path and kind != "body":
        raise ValueError(f"only [BODY] takes a path, not {inner!r}")
    return Subject(kind, path=path, length=function == "len")


def _has(left: str, op: str, right: str, right_subject: Subject | None, text: str) -> Assertion:
    if _function(left) != "has" or right_subject is not None or op not in ("==", "!=") \
            or right not in ("true", "false"):
        raise ValueError("has(...) is compared with == true or == false")
    subject = _operand(left)
    if subject is None:  # _operand raises for has() of a literal; this keeps the type checker informed
        raise ValueError("has() takes a placeholder such as [BODY].items")
    return Assertion(replace(subject, length=False), "exists", (right == "true") == (op == "=="), text)


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


def _value(subject: Subject, op: str, right: str) -> Any:
    if right.startswith("any(") and right.endswith(")"):
        parts = [p.strip() for p in right[4:-1].split(",")]
        if not all(parts):
            raise ValueError("any() needs values separated by commas")
        return AnyOf(tuple(_scalar(subject, op, p) for p in parts))
    if right.startswith("pat(") and right.endswith(")"):
        values.pattern(right[4:-1])  # a malformed pattern is a config error, not a silent mismatch
        return Glob(right[4:-1])
    return _scalar(subject, op, right)


def _scalar(subject: Subject, op: str, text: str) -> Any:
    """A literal, checked against what its placeholder can be; times become milliseconds."""
    if subject.kind in _TIMES and not subject.length:
        return _milliseconds(text)
    if op in ORDERING or subject.length:
        if values.number(text) is None:
            raise ValueError(f"{text!r} is not a number (e.g. 5, 2.5, 0x1F)")
        return text
    if subject.kind == "status" and values.integer(text) is None:
        raise ValueError(f"{text!r} is not a status code")
    if subject.kind == "connected" and text not in ("true", "false"):
        raise ValueError(f"{text!r} must be true or false")
    if subject.kind == "dns_rcode" and text not in DNS_RCODES:  # Gatus would compare and never match
        raise ValueError(f"{text!r} is not an rcode name (use one of {', '.join(DNS_RCODES)})")
    return text


def _milliseconds(text: str) -> float:
    number = values.number(text)
    if number is not None:
        return number
    try:
        return durations.parse(text).total_seconds() * 1000
    except ValueError:
        raise ValueError(f"{text!r} is neither a number of milliseconds nor a duration (e.g. 300, 300ms, 1s, 48h)") \
            from None


def _structured(key: str, value: Any) -> Assertion:
    if key == "status":
        codes = parse_status_set(value)
        return Assertion(Subject("status"), "==", codes, f"status in {expected_text(codes)}")
    if key == "max_latency":
        limit = durations.parse(value).total_seconds() * 1000
        return Assertion(Subject("response_time"), "<=", limit, f"latency <= {limit:g} ms")
    if key == "cert_valid_days":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"cert_valid_days must be a number of days (got {value!r})")
        return Assertion(Subject("cert_expiration"), ">", value * 86_400_000.0, f"certificate valid > {value:g} days")
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
        return Assertion(Subject("body", path), "exists", exists,
                         f"json {value['path']} exists is {str(exists).lower()}")
    return Assertion(Subject("body", path), "==", value["equals"], f"json {value['path']} == {value['equals']!r}")


def _header(value: Any) -> Assertion:
    if not isinstance(value, dict) or "name" not in value or len(value.keys() - {"name"}) != 1 \
            or not value.keys() & {"equals", "matches"}:
        raise ValueError("header needs 'name' and one of 'equals' or 'matches'")
    name = str(value["name"])
    if "equals" in value:
        return Assertion(Subject("header", name=name), "==", str(value["equals"]),
                         f"header {name} == {value['equals']!r}")
    return Assertion(Subject("header", name=name), "matches", _regex(str(value["matches"])),
                     f"header {name} matches {value['matches']!r}")


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"bad regular expression {pattern!r}: {e}") from None
