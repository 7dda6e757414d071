import datetime as dt
import json

import pytest

from prober.checks.assertions import Observed, evaluate
from upwatch.conditions import parse

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
BODY = json.dumps({"status": "UP", "ok": True, "data": {"items": [{"id": 3}, {"id": 4}]}, "n": 5}).encode()


def observed(**overrides: object) -> Observed:
    fields = {"now": NOW, "status_code": 200, "latency_ms": 120.0, "body": BODY,
              "headers": {"Content-Type": "application/json"}, "cert_not_after": NOW + dt.timedelta(days=30)}
    return Observed(**{**fields, **overrides})  # type: ignore[arg-type]


CASES = [
    ("[STATUS] == 200", True, "200"),
    ("[STATUS] == any(201, 204)", False, "200"),
    ("[STATUS] == any(200, 204)", True, "200"),
    ("[STATUS] != 500", True, "200"),
    ("[RESPONSE_TIME] < 300", True, "120"),
    ("[RESPONSE_TIME] < 100", False, "120"),
    ("[RESPONSE_TIME] <= 1s", True, "120"),
    ("[BODY].status == UP", True, "UP"),
    ("[BODY].ok == true", True, "true"),
    ("[BODY].data.items[1].id == 4", True, "4"),
    ("[BODY].data.items[5].id == 4", False, "missing"),
    ("len([BODY].data.items) > 1", True, "2"),
    ("len([BODY].data.items) > 2", False, "2"),
    ("[BODY].n >= 5", True, "5"),
    ("[BODY] == pat(*\"UP\"*)", True, None),
    ("[BODY] == pat(*DOWN*)", False, None),
    ("has([BODY].data) == true", True, None),
    ("has([BODY].nope) == true", False, "missing"),
    ("has([BODY].nope) == false", True, "missing"),
    ("[CERTIFICATE_EXPIRATION] > 48h", True, None),
    ("[CERTIFICATE_EXPIRATION] > 720h1m", False, None),
    ({"status": "200-299"}, True, "200"),
    ({"status": [500, "502-504"]}, False, "200"),
    ({"max_latency": "100ms"}, False, "120"),
    ({"body_contains": '"UP"'}, True, None),
    ({"body_not_contains": "error"}, True, None),
    ({"body_matches": r'"id":\s*4'}, True, None),
    ({"json": {"path": "data.items[0].id", "equals": 3}}, True, "3"),
    ({"json": {"path": "data.items[0].id", "equals": "3"}}, True, "3"),
    ({"json": {"path": "data.missing", "exists": True}}, False, "missing"),
    ({"header": {"name": "content-type", "equals": "application/json"}}, True, "application/json"),
    ({"header": {"name": "Content-Type", "matches": "^text/"}}, False, "application/json"),
    ({"cert_valid_days": 14}, True, None),
    ({"cert_valid_days": 31}, False, None),
]


@pytest.mark.parametrize(("spec", "ok", "actual"), CASES, ids=[str(c[0]) for c in CASES])
def test_assertion_is_evaluated_with_its_actual_value(spec: object, ok: bool, actual: str | None) -> None:
    [result] = evaluate([parse(spec)], observed())
    assert result.ok is ok
    if actual is not None:
        assert result.actual == actual
    assert (result.reason is None) is ok


def test_failed_assertion_says_what_was_expected_and_what_came() -> None:
    results = evaluate([parse("[STATUS] == any(201, 204)"), parse({"max_latency": "100ms"}),
                        parse({"body_contains": "DOWN"}), parse("[BODY].status < 3")], observed())
    assert [r.reason for r in results] == [
        "expected == any(201, 204), got 200",
        "expected <= 100, got 120",
        "expected to contain DOWN, got " + BODY.decode()[:197] + ("..." if len(BODY) > 200 else ""),
        "UP is not a number",
    ]


def test_missing_response_parts_fail_instead_of_raising() -> None:
    nothing = Observed(now=NOW)
    results = evaluate([parse("[STATUS] == 200"), parse("[BODY].a == 1"), parse({"cert_valid_days": 1}),
                        parse({"header": {"name": "X", "equals": "y"}})], nothing)
    assert not any(r.ok for r in results)
    assert {r.reason for r in results} == {"value is missing"}


def test_non_json_body_makes_paths_missing() -> None:
    [result] = evaluate([parse("[BODY].status == UP")], observed(body=b"<html>"))
    assert not result.ok and result.actual == "missing"


def test_condition_text_is_kept_for_results_and_storage() -> None:
    assert parse(" [STATUS] == 200 ").text == "[STATUS] == 200"
    assert parse({"status": "200-204,301"}).text == "status in 200-204,301"
