"""Gatus condition semantics, as Gatus documents them, evaluated by our own parser and evaluator.

References are to TwiN/gatus at 08c4635: README.md "Conditions" (lines 466-514), config/endpoint/placeholder.go
and the scenario names in config/endpoint/condition_test.go where the README says nothing. Where we differ on
purpose, the case says so and docs/prober.md ("Coming from Gatus") explains why.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from prober.checks.assertions import Observed, evaluate
from upwatch.conditions import parse

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def run(condition: str, body: Any = None, **fields: Any) -> dict[str, Any]:
    """The one result of `condition` on a response with `body` (JSON-encoded unless bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    observed = Observed(**{"now": NOW, "status_code": 200, "latency_ms": 120.0, "body": raw, **fields})
    [result] = evaluate([parse(condition)], observed)
    assert (result.reason is None) is result.ok
    return result.to_json()


NUMBERS = [
    # condition_test.go body-jsonpath-hexadecimal-int-using-equal-to-0x1 / -using-equals / -0xC0ff33
    ("[BODY].data == 1", {"data": "0x1"}, True),
    ("[BODY].data == 0x1", {"data": "0x1"}, True),
    ("[BODY].data == 12648243", {"data": "0xC0ff33"}, True),
    ("[BODY].data == 3", {"data": "0x1"}, False),
    # body-jsonpath-octal-int-using-equal / -using-equals, body-jsonpath-binary-int-using-equal / -using-equals
    ("[BODY].data == 2", {"data": "0o2"}, True),
    ("[BODY].data == 0o2", {"data": "0o2"}, True),
    ("[BODY].data == 2", {"data": "0b0010"}, True),
    ("[BODY].data == 0b10", {"data": "0b0010"}, True),
    # body-jsonpath-hexadecimal-int-using-greater-than, -octal-, -binary-, -hexadecimal-int-greater
    ("[BODY].data > 0", {"data": "0x1"}, True),
    ("[BODY].data > 0", {"data": "0o1"}, True),
    ("[BODY].data > 0", {"data": "0b1"}, True),
    ("[BODY].data >= 1", {"data": "0x01"}, True),
    # the literal side may be written in any base too (Go's strconv.ParseInt(s, 0, 64) on both sides)
    ("[BODY].n == 0x1F", {"n": 31}, True),
    ("[BODY].n < 0x1F", {"n": 32}, False),
    ("[BODY].n != 0b11111", {"n": 31}, False),
    ("[STATUS] == 0xC8", None, True),
    ("[STATUS] <= 0o454", None, True),
    ("[BODY].n == 1_000", {"n": 1000}, True),
    # text that is not an integer stays text in Gatus: version "1.10" is not 1.1
    ("[BODY].version == 1.1", {"version": "1.10"}, False),
    # ours: a JSON number compares as a number, 1.5 == 1.50 (Gatus compares the text "1.5" with "1.50")
    ("[BODY].price == 1.50", {"price": 1.5}, True),
    # ours: a leading 0 is decimal (Go's base-0 parsing would read 010 as octal 8)
    ("[BODY].code == 010", {"code": 10}, True),
    # ours: decimals are compared exactly (Gatus truncates 100.5 to 100 in ordering comparisons)
    ("[BODY].balance > 100", {"balance": 100.5}, True),
]


@pytest.mark.parametrize(("condition", "body", "ok"), NUMBERS, ids=[f"{c[0]} on {c[1]}" for c in NUMBERS])
def test_numbers_in_any_base_compare_as_numbers(condition: str, body: Any, ok: bool) -> None:
    assert run(condition, body)["ok"] is ok


LENGTHS = [
    # README.md:509 len: "If the given path leads to an array, returns its length"
    ("len([BODY]) == 3", [{"id": 1}, {"id": 2}, {"id": 3}], True, "3"),
    ("len([BODY].data) < 5", {"data": [{"id": 1}]}, True, "1"),  # README.md:483
    ("len([BODY].data) == 3", {"data": [{"id": 1}, {"id": 2}, {"id": 3}]}, True, "3"),
    # README.md:484 "String at JSONPath $.name has a length of 8"
    ("len([BODY].name) == 8", {"name": "john.doe"}, True, "8"),
    ("len([BODY].name) == 8", {"name": "bob"}, False, "3"),
    # README.md:509 "Otherwise, the JSON at the given path is minified and converted to a string"
    ("len([BODY].age) == 2", {"age": 18}, True, "2"),
    ("len([BODY].adult) == 4", {"adult": True}, True, "4"),
    ("len([BODY][0]) == 23", [{"age": 18, "adult": True}], True, "23"),
    ("len([BODY]) == 19", b'{"name": "john.doe"}', True, "19"),  # minified, as documented
    ("len([BODY].data) == 8", {"name": "john.doe"}, False, "missing"),  # len-body-array-invalid
    ("len([BODY]) == 8", b"john.doe", True, "8"),  # len-body-string
    ("len([BODY].data) == 0x3", {"data": [1, 2, 3]}, True, "3"),
    # placeholder.go formatWithFunction: len() of any other placeholder is the length of its text
    ("len([STATUS]) == 3", None, True, "3"),
]


@pytest.mark.parametrize(("condition", "body", "ok", "actual"), LENGTHS,
                         ids=[f"{c[0]} on {str(c[1])[:30]}" for c in LENGTHS])
def test_len_counts_array_elements_and_otherwise_characters(condition: str, body: Any, ok: bool,
                                                            actual: str) -> None:
    result = run(condition, body)
    assert (result["ok"], result["actual"]) == (ok, actual)


USER = {"user": {"firstName": "john", "lastName": "doe"}, "age": 1, "id": 1, "status": 200, "hex": "0xC8",
        "budget_ms": 100, "name": "john.doe", "errors": []}
EITHER_SIDE = [
    # README.md:482 "[BODY].age == [BODY].id: JSONPath value of $.age is equal JSONPath $.id"
    ("[BODY].age == [BODY].id", {"age": 1, "id": 1}, True, None),
    ("[BODY].age == [BODY].id", {"age": 2, "id": 1}, False, "expected == [BODY].id (1), got 2"),
    # condition_test.go body-jsonpath-double-placeholder / -failure
    ("[BODY].user.firstName != [BODY].user.lastName", USER, True, None),
    ("[BODY].user.firstName == [BODY].user.lastName", USER, False, "expected == [BODY].user.lastName (doe), got john"),
    # TestCondition_Validate: "[STATUS] == [BODY].status"
    ("[STATUS] == [BODY].status", USER, True, None),
    ("[STATUS] == [BODY].hex", USER, True, None),
    ("[RESPONSE_TIME] < [BODY].budget_ms", USER, False, "expected < [BODY].budget_ms (100), got 120"),
    ("[BODY].age == [BODY].nope", USER, False, "[BODY].nope is missing"),
    ("[BODY].age < [BODY].name", USER, False, "[BODY].name (john.doe) is not a number"),
    # literals on the left (Gatus resolves both sides alike)
    ("200 == [STATUS]", None, True, None),
    ("300 > [RESPONSE_TIME]", None, True, None),
    ("100 > [RESPONSE_TIME]", None, False, "expected < 100, got 120"),
    ("john.doe == [BODY].name", USER, True, None),
    # condition_test.go any-status-reverse, pat-body-html-failure-alt; README.md:511-512
    ("any(200, 429) == [STATUS]", None, True, None),
    ("any(201, 429) == [STATUS]", None, False, "expected == any(201, 429), got 200"),
    ("pat(*john*) == [BODY].name", USER, True, None),
    ("pat(bob*) != [BODY].name", USER, True, None),
    ("false == has([BODY].errors)", USER, False, "value exists: []"),
    # placeholder.go: "All placeholder names are handled case-insensitively, but paths preserve original case"
    ("[status] == 200", None, True, None),
    ("[Body].user.firstName == john", USER, True, None),
    # condition.go looks for " == " before the other operators, so the rest is the value's text
    ("[BODY].expr == a > b", {"expr": "a > b"}, True, None),
    # ours: JSON null is a value (Gatus treats the path as missing)
    ("[BODY].data == null", {"data": None}, True, None),
    # README.md:479 "[BODY] == 1"; Gatus trims the body first, so a trailing newline does not matter
    ("[BODY] == 1", b"1\n", True, None),
]


@pytest.mark.parametrize(("condition", "body", "ok", "reason"), EITHER_SIDE, ids=[c[0] for c in EITHER_SIDE])
def test_placeholders_and_literals_go_on_either_side(condition: str, body: Any, ok: bool, reason: str | None) -> None:
    result = run(condition, body)
    assert result["ok"] is ok
    assert result.get("reason") == reason


PATTERNS = [
    # README.md:487, 511 pat(); condition_test.go pat-body-*, pat-ip, pat-status. The syntax is Go's filepath.Match.
    ("[BODY].name == pat(john*)", {"name": "john.doe"}, True),
    ("[BODY].name == pat(bob*)", {"name": "john.doe"}, False),
    ("[BODY] == pat(*<div id=\"user\">john.doe</div>*)", b'<html><div id="user">john.doe</div></html>', True),
    ("[BODY].data == pat(*Whatever*)", {"data": ["hello", "world", "Whatever"]}, True),
    ("[STATUS] == pat(2*)", None, True),
    ("[STATUS] == pat(4*)", None, False),
    ("[BODY].ip == pat(10.?.0.[0-9])", {"ip": "10.1.0.7"}, True),
    ("[BODY].code == pat([^E]*)", {"code": "OK-1"}, True),  # Go negates a class with ^ (fnmatch would use !)
    ("[BODY].code == pat([^E]*)", {"code": "E-1"}, False),
    ("[BODY].note == pat(\\*)", {"note": "*"}, True),  # \ escapes
    ("[BODY].note == pat(\\*)", {"note": "x"}, False),
]


@pytest.mark.parametrize(("condition", "body", "ok"), PATTERNS, ids=[f"{c[0]} on {str(c[1])[:30]}" for c in PATTERNS])
def test_pat_uses_gatus_pattern_syntax(condition: str, body: Any, ok: bool) -> None:
    assert run(condition, body)["ok"] is ok


REJECTED = [
    # TestCondition_Validate: Gatus rejects these ("invalid condition: ...")
    ("[STATUS]==201", "put a space on each side of the operator, as in '[STATUS] == 201'"),
    ("[STATUS] = = 201", "unknown operator '=' (use ==, !=, <, <=, >, >=)"),
    ("[STATUS] ? 201", "expected '<value> <operator> <value>' with an operator among ==, !=, <, <=, >, >="),
    ("[STATUS] ==", "missing value after the operator"),
    ("[STATUS]", "expected '<value> <operator> <value>' with an operator among ==, !=, <, <=, >, >="),
    # README.md:511-512: pat and any "work only with == and !="
    ("[STATUS] > any(200, 201)", "> needs a single number"),
    ("[BODY] < pat(a*)", "< needs a single number"),
    # ours, stricter: Gatus would compare with 0, a literal, or ignore the rest of the condition
    ("[RESPONSE_TIME] < potato",
     "'potato' is neither a number of milliseconds nor a duration (e.g. 300, 300ms, 1s, 48h)"),
    ("[BODY].n > potato", "'potato' is not a number (e.g. 5, 2.5, 0x1F)"),
    ("len([BODY].name) == john", "'john' is not a number (e.g. 5, 2.5, 0x1F)"),
    ("[BODY] == a == b", "== appears more than once; a condition compares two values"),
    ("1 == 2", "neither side is a placeholder such as [STATUS] or [BODY].path, so it never changes"),
    ("[STAUTS] == 200", ("unknown placeholder '[STAUTS]' (use [STATUS], [RESPONSE_TIME], [BODY], "
                         "[CERTIFICATE_EXPIRATION], [CONNECTED], [IP], [DNS_RCODE], [DOMAIN_EXPIRATION])")),
    # Gatus placeholders upwatch cannot resolve are named, not compared as text
    ("[CONTEXT].user == 1", "[CONTEXT] is not supported by upwatch (there are no suites)"),
    ("[DOMAIN_EXPIRATION] > soon",
     "'soon' is neither a number of milliseconds nor a duration (e.g. 300, 300ms, 1s, 48h)"),  # ours, as above
    ("[DNS_RCODE] == NOERORR", "'NOERORR' is not an rcode name (use one of NOERROR, FORMERR, SERVFAIL, NXDOMAIN, "
                               "NOTIMP, REFUSED, YXDOMAIN, YXRRSET, NXRRSET, NOTAUTH, NOTZONE, BADVERS)"),  # ours
    ("[BODY] == pat([abc)", "unclosed [ in pattern '[abc'"),  # Gatus: never matches, silently
    ("len(oops) == 1", "len() takes a placeholder such as [BODY].items, not 'oops'"),
    ("has([BODY].x) > 1", "has(...) is compared with == true or == false"),
    ("[STATUS] == OK", "'OK' is not a status code"),
]


@pytest.mark.parametrize(("condition", "message"), REJECTED, ids=[c[0] for c in REJECTED])
def test_invalid_conditions_are_config_errors(condition: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^condition ") as raised:
        parse(condition)
    assert str(raised.value) == f"condition {condition!r}: {message}"


DAY_MS = 86_400_000
EXPIRY = [
    # condition_test.go certificate-expiration-greater-than-duration: "[CERTIFICATE_EXPIRATION] (24h) > 48h"
    ("[CERTIFICATE_EXPIRATION] > 48h", dt.timedelta(hours=24), "24h", "expected > 48h, got 24h"),
    ("[CERTIFICATE_EXPIRATION] > 12h", dt.timedelta(hours=24), "24h", None),
    # certificate-expiration-greater-than-numerical-failure: a bare number is milliseconds
    (f"[CERTIFICATE_EXPIRATION] > {28 * DAY_MS}", dt.timedelta(days=14), "336h", "expected > 672h, got 336h"),
    (f"[CERTIFICATE_EXPIRATION] > {28 * DAY_MS}", dt.timedelta(days=60), "1440h", None),
    ("[CERTIFICATE_EXPIRATION] > 2h", dt.timedelta(hours=1, seconds=15.7), "1h0m15s", "expected > 2h, got 1h0m15s"),
    ("[CERTIFICATE_EXPIRATION] > 1h", dt.timedelta(minutes=50), "50m", "expected > 1h, got 50m"),
    ("[CERTIFICATE_EXPIRATION] > 0", dt.timedelta(days=-1), "-24h", "expected > 0s, got -24h"),
    ({"cert_valid_days": 31}, dt.timedelta(days=30), "720h", "expected > 744h, got 720h"),
]


@pytest.mark.parametrize(("spec", "left", "actual", "reason"), EXPIRY, ids=[str(c[0]) for c in EXPIRY])
def test_certificate_expiry_is_shown_as_a_duration(spec: object, left: dt.timedelta, actual: str,
                                                   reason: str | None) -> None:
    observed = Observed(now=NOW, cert_not_after=NOW + left)
    [result] = evaluate([parse(spec)], observed)
    assert result.actual == actual
    assert result.reason == reason
