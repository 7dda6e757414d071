"""GET /docs: Swagger UI from the packaged files, over real HTTP, referring to no other host."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from push.docs_ui import CSP, static_dir
from tests.push.conftest import Api


class Links(HTMLParser):
    """Every src= and href= of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


async def test_docs_page_and_its_assets_load_from_this_server_only(api: Api) -> None:
    page_url = str(api.client.make_url("/docs"))
    resp = await api.client.get("/docs")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Content-Security-Policy"] == CSP
    assert not re.search(r"https?:|//", html), "the page names another host"
    links = Links()
    links.feed(html)
    assert {"docs/static/swagger-ui-bundle.js", "docs/static/swagger-ui.css", "docs/init.js"} <= set(links.urls)
    for url in links.urls:
        absolute = urljoin(page_url, url)
        assert urlsplit(absolute).netloc == urlsplit(page_url).netloc, url
        asset = await api.client.get(urlsplit(absolute).path)
        body = await asset.read()
        assert asset.status == 200, url
        assert asset.content_type == TYPES[url[url.rindex("."):]], url
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        if "/static/" in url:  # the package's own file, byte for byte
            assert body == (static_dir() / url.rsplit("/", 1)[1]).read_bytes()
    init = await (await api.client.get("/docs/init.js")).text()
    assert "validatorUrl: null" in init and '"openapi.json"' in init and "://" not in init
    # The document the page loads is where its relative URL points.
    document = await api.client.get(urlsplit(urljoin(page_url, "openapi.json")).path)
    assert document.status == 200 and (await document.json())["openapi"].startswith("3.1")


async def test_only_the_pages_assets_are_served(api: Api) -> None:
    for name in ("swagger-editor-bundle.js", "swagger-ui-bundle.js.map", "LICENSE", "..%2F__init__.py",
                 "%2E%2E%2Fcore.py", "index.html"):
        resp = await api.client.get(f"/docs/static/{name}")
        assert resp.status == 404, name
        assert await resp.json() == {"error": "Not Found"}


def test_the_packaged_swagger_ui_renders_openapi_3_1() -> None:
    # Swagger UI 4 (swagger-ui-bundle 1.x ships 4.15.5) says "does not specify a valid version field" for 3.1.
    bundle = (static_dir() / "swagger-ui-bundle.js").read_text(errors="replace")
    assert re.search(r'"5\.[0-9]+\.[0-9]+"', bundle)
    assert "isOAS31" in bundle


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
async def test_a_browser_renders_every_operation_under_the_csp(api: Api, tmp_path: Path) -> None:
    # A real headless browser, kept off every host but 127.0.0.1, renders the page: its DOM then holds
    # the operations, which only happens if the CSP let the packaged scripts run and fetch the document.
    assert CHROMIUM is not None
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=20000", "--dump-dom", str(api.client.make_url("/docs"))]
    done = await asyncio.to_thread(subprocess.run, args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   timeout=50)
    dom = done.stdout.decode(errors="replace")
    assert "upwatch push API" in dom and "opblock-summary-path" in dom, done.stderr.decode(errors="replace")[-2000:]
    doc = await (await api.client.get("/openapi.json")).json()
    for path in doc["paths"]:
        assert f'data-path="{path}"' in dom, path
