"""Gatus-style conditions evaluated end to end: the real HTTP check against a local target on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from prober.checks import http
from tests.prober import certs, targets
from upwatch.config.endpoints import Endpoint

USER = {"age": 1, "id": 1, "expected_status": 200, "code": "0xC8", "items": [1, 2, 3], "nested": {"a": 1}}


async def user(request: web.Request) -> web.Response:
    return web.json_response(USER)


async def users(request: web.Request) -> web.Response:
    return web.json_response([{"id": 1}, {"id": 2}, {"id": 3}])


def endpoint(url: str, assertions: list[Any], **fields: Any) -> Endpoint:
    return Endpoint.model_validate({"name": "gatus", "url": url, "timeout": "2s", "assertions": assertions, **fields})


@pytest.fixture
async def site() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_routes([web.get("/user", user), web.get("/users", users)])
    async with targets.serve(app) as url:
        yield url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = http.new_session(reuse_connections=True)  # [IP] and [CONNECTED] must hold on a reused connection too
    yield s
    await s.close()


PASSING = ["[STATUS] == [BODY].expected_status", "[STATUS] == [BODY].code", "[BODY].code == 0xC8", "0xC8 == [STATUS]",
           "[BODY].age == [BODY].id", "len([BODY].items) == 0x3", "len([BODY].nested) == 7", "[CONNECTED] == true",
           "[IP] == 127.0.0.1", "[IP] == pat(127.*)", "any(200, 204) == [STATUS]"]


async def test_http_check_passes_gatus_conditions(site: str, session: aiohttp.ClientSession) -> None:
    probe = endpoint(f"{site}/user", PASSING)
    for result in [await http.run(probe, session), await http.run(probe, session)]:  # new, then reused connection
        assert result.ok, result.assertions
        assert [(a.assertion, a.ok) for a in result.assertions] == [(c, True) for c in PASSING]
        assert [a.actual for a in result.assertions] == ["200", "200", "0xC8", "200", "1", "3", "7", "true",
                                                            "127.0.0.1", "127.0.0.1", "200"]
    assert result.connect_ms == 0  # the second run did reuse the connection


async def test_http_check_failure_names_right_hand_placeholders(site: str, session: aiohttp.ClientSession) -> None:
    conditions = ["len([BODY]) == 3", "len([BODY]) > 0x3", "[BODY][0].id != [BODY][2].id",
                  "[BODY][0].id == [BODY][1].id"]
    result = await http.run(endpoint(f"{site}/users", conditions), session)
    assert not result.ok and result.error_kind == "assertion"
    assert result.error == ("len([BODY]) > 0x3: expected > 0x3, got 3; "
                            "[BODY][0].id == [BODY][1].id: expected == [BODY][1].id (2), got 1")
    assert [a.ok for a in result.assertions] == [True, False, True, False]


async def test_http_check_shows_certificate_expiry_as_a_duration(session: aiohttp.ClientSession,
                                                                tmp_path: Path) -> None:
    tls = certs.make(tmp_path)
    async with targets.serve(targets.app(), targets.server_context(*map(str, tls.good))) as url:
        result = await http.run(endpoint(f"{url}/ok", ["[CERTIFICATE_EXPIRATION] > 2400h",
                                                       "[CERTIFICATE_EXPIRATION] > 48h"], ca_file=str(tls.ca)), session)
    assert result.error_kind == "assertion"
    failed, passed = (a.to_json() for a in result.assertions)
    # the certificate is valid for about 90 days (2160h), short of the 100 days asked for
    assert re.fullmatch(r"21[2-5]\dh(\d+m)?(\d+s)?", failed["actual"]), failed
    assert failed["reason"] == f"expected > 2400h, got {failed['actual']}"
    assert passed["ok"] and passed["actual"] == failed["actual"]
