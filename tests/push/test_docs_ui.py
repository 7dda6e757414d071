"""GET /docs: Swagger UI from the packaged files, over real HTTP, referring to no other host."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from prober.push.docs_ui import CSP, static_dir
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
