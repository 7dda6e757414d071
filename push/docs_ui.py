"""GET /docs: Swagger UI for /openapi.json, from the files the swagger-ui-py wheel ships (never a CDN).

Only the page is ours; its scripts and styles are served from the package directory under
/docs/static/. The page has no inline script (the initializer is /docs/init.js), so the CSP can say
'self' for everything: a browser viewing the API docs talks to this server and nothing else. Links
are relative, so the page works wherever the push API is mounted (/api/v1 by the prober).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from aiohttp import web

logger = logging.getLogger(__name__)

# data: only for images: Swagger UI's CSS draws its icons as data: SVGs; no host but this one is allowed.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
       " font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"}
# What the page loads, and nothing else of the package (its editor bundles and source maps stay unserved).
STATIC = {
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>upwatch push API</title>
<link rel="stylesheet" href="docs/static/swagger-ui.css">
<link rel="stylesheet" href="docs/static/index.css">
<link rel="icon" type="image/png" href="docs/static/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="docs/static/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/static/swagger-ui-bundle.js"></script>
<script src="docs/static/swagger-ui-standalone-preset.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""

# validatorUrl null: by default Swagger UI sends the document to validator.swagger.io for a badge.
INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
};
"""


def static_dir() -> Path:
    """The swagger-ui-py package's static/ directory (found without importing the package, which
    would import its framework adapters)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


async def page(request: web.Request) -> web.Response:
    """The Swagger UI page."""
    return web.Response(text=PAGE, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS)


async def init(request: web.Request) -> web.Response:
    """The page's initializer (a file, so the CSP needs no 'unsafe-inline')."""
    return web.Response(text=INIT, content_type="text/javascript", charset="utf-8", headers=SECURITY_HEADERS)


async def static(request: web.Request) -> web.StreamResponse:
    """One of the STATIC files from the package; any other name is 404."""
    name = request.match_info["name"]
    content_type = STATIC.get(name)
    if content_type is None:
        return web.json_response({"error": "Not Found"}, status=404)
    return web.FileResponse(static_dir() / name, headers={
        **SECURITY_HEADERS, "Content-Type": content_type, "Cache-Control": "public, max-age=86400"})


ROUTES = [web.get("/docs", page, allow_head=False), web.get("/docs/init.js", init, allow_head=False),
          web.get("/docs/static/{name}", static, allow_head=False)]
