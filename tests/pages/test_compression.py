"""Pages and read API responses are gzipped over real HTTP when (and only when) the client accepts gzip."""

from __future__ import annotations

import gzip
import json

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from prober.pages.compression import accepts_gzip
from tests.pages.test_pages_http import _prepare
from upwatch.runtime import Runtime


async def _raw(client: TestClient, path: str, accept: str | None) -> tuple[aiohttp.ClientResponse, bytes]:
    """The bytes as sent, not decoded by the client (a session of our own with auto_decompress off)."""
    headers = {} if accept is None else {"Accept-Encoding": accept}
    async with (aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"]) as session,
                session.get(client.make_url(path), headers=headers) as resp):
        return resp, await resp.read()


async def test_page_is_gzipped_when_accepted(runtime: Runtime, client: TestClient) -> None:
    _prepare(runtime)
    resp, body = await _raw(client, "/status/public", "gzip, deflate, br")
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in resp.headers["Vary"]
    html = gzip.decompress(body).decode()
    assert html.startswith("<!doctype html>") and 'data-endpoint="api"' in html
    assert len(body) * 4 < len(html)  # 90 similar day bars per endpoint compress well


@pytest.mark.parametrize("accept", [None, "identity", "gzip;q=0", "br", "*;q=0"])
async def test_not_gzipped_unless_accepted(runtime: Runtime, client: TestClient, accept: str | None) -> None:
    resp, body = await _raw(client, "/status/public", accept)
    assert resp.status == 200 and "Content-Encoding" not in resp.headers
    assert body.decode().startswith("<!doctype html>")
    assert "Accept-Encoding" in resp.headers["Vary"]


@pytest.mark.parametrize("path", ["/api/read/v1/endpoints", "/api/read/v1/endpoints/api/results?limit=50",
                                  "/api/read/v1/openapi.json", "/api/read/v1/pages/public", "/status"])
async def test_read_api_is_gzipped_and_decodes_to_the_same_data(runtime: Runtime, client: TestClient,
                                                                path: str) -> None:
    _prepare(runtime)
    zipped, body = await _raw(client, path, "gzip")
    plain, text = await _raw(client, path, None)
    assert zipped.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    if path.startswith("/api/"):
        unzipped, direct = json.loads(gzip.decompress(body)), json.loads(text)
        if isinstance(direct, dict):  # a page's data says when it was read
            unzipped.pop("generated_at", None), direct.pop("generated_at", None)
        assert unzipped == direct
    else:
        assert gzip.decompress(body) == text


async def test_badges_stay_uncompressed_with_their_etag(runtime: Runtime, client: TestClient) -> None:
    _prepare(runtime)
    resp, body = await _raw(client, "/badge/api/status.svg", "gzip")
    assert "Content-Encoding" not in resp.headers and b"<svg" in body and resp.headers["ETag"]


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip", True), ("GZIP", True), ("deflate, gzip;q=0.5", True), ("x-gzip", True), ("*", True),
    ("", False), ("identity", False), ("gzip;q=0", False), ("gzip;q=0.0, *;q=1", False), ("*;q=0", False),
    ("br, *;q=0.1", True), ("gzip;q=bad", False), ("deflate", False),
])
def test_accept_encoding_values(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@pytest.mark.parametrize("size", [100, 100_000, 3 << 20])  # inline, in a thread, and at the large-body level
async def test_squeeze_round_trips(size: int) -> None:
    from prober.pages.compression import squeeze

    body = b"".join(b'<rect x="%d" class="u-ok"><title>day %d</title></rect>' % (k, k) for k in range(size // 40))
    packed = await squeeze(body)
    assert gzip.decompress(packed) == body and len(packed) < len(body) and packed == await squeeze(body)
