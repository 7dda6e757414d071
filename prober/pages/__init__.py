"""Status pages, badges and the read API, served by the prober's listener (an extension of prober.app).

Served there rather than by a separate web service because the listener already runs in every
deployment shape (alone, under `upwatch up`, in compose), already has the database pool, and is
what operators expose; a page is a few rollup queries, far from competing with the push API.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import psycopg
from aiohttp import web
from markupsafe import escape
from pydantic import BaseModel, ValidationError

from prober.pages import api, auth, badges, compression, data, incidents, openapi, render, uptime
from upwatch.config import Config
from upwatch.config.pages import StatusPage
from upwatch.runtime import Runtime

__all__ = ["setup"]

logger = logging.getLogger(__name__)

RUNTIME = web.AppKey("pages_runtime", Runtime)
WRITE_DOC = web.AppKey("pages_write_openapi", dict)
ADMIN = web.AppKey("pages_admin_token", str)
# The operator's credential for posting incidents: the same admin token the push API takes.
ADMIN_TOKEN_ENV = "UPWATCH_ADMIN_TOKEN"  # noqa: S105 -- the variable's name, not a token
WRITE_PREFIX = openapi.WRITE_PREFIX
M = TypeVar("M", bound=BaseModel)
DAYS = web.AppKey("pages_days", uptime.DayCache)
DAILY_REFRESH_S = 60.0
BADGE_MAX_AGE_S = 60
_HTML_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"}


def setup(app: web.Application, runtime: Runtime, writer: Any) -> None:
    """Add /status/{slug}, /badge/... and /api/read/v1/... to the listener (an Extension for prober.app)."""
    app[RUNTIME] = runtime
    app[DAYS] = uptime.DayCache()
    app[ADMIN] = os.environ.get(ADMIN_TOKEN_ENV, "")
    app[WRITE_DOC] = openapi.write([e.name for e in runtime.config.endpoints])
    gz = compression.compressed
    app.router.add_get("/status", gz(index))
    app.router.add_get("/status/{slug}", gz(status_page))
    app.router.add_get("/badge/{endpoint}/status.svg", badge)
    app.router.add_get("/badge/{endpoint}/{kind:uptime|response}/{window:24h|7d|30d|90d}.svg", badge)
    app.router.add_get(f"{api.PREFIX}/openapi.json", gz(read_openapi))
    app.router.add_get(f"{api.PREFIX}/pages", gz(read_pages))
    app.router.add_get(f"{api.PREFIX}/pages/{{slug}}", gz(read_page))
    app.router.add_get(f"{api.PREFIX}/endpoints", gz(read_endpoints))
    app.router.add_get(f"{api.PREFIX}/endpoints/{{name}}", gz(read_endpoint))
    app.router.add_get(f"{api.PREFIX}/endpoints/{{name}}/results", gz(read_results))
    app.router.add_get(f"{api.PREFIX}/incidents", gz(read_incidents))
    app.router.add_get(f"{api.PREFIX}/status-incidents", gz(read_status_incidents))
    app.router.add_get(f"{WRITE_PREFIX}/openapi.json", gz(write_openapi))
    app.router.add_post(f"{WRITE_PREFIX}/incidents", post_incident)
    app.router.add_post(f"{WRITE_PREFIX}/incidents/{{id}}/updates", post_update)
    app.cleanup_ctx.append(_daily_rollups)
    for page in runtime.config.status_pages:
        logger.info("status page slug=%s public=%s path=/status/%s", page.slug, page.public, page.slug)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _config(request: web.Request) -> Config:
    return request.app[RUNTIME].config


async def _page(request: web.Request) -> data.PageData:
    """The page named in the URL, if the caller may read it (401 with a basic-auth challenge if not)."""
    cfg = _config(request)
    page = next((p for p in cfg.status_pages if p.slug == request.match_info["slug"]), None)
    if page is None:
        raise api.error(web.HTTPNotFound, f"slug: no status page {request.match_info['slug']!r}")
    if not auth.allowed(page, auth.presented(request)):
        raise auth.challenge(page)
    async with request.app[RUNTIME].pool.connection(timeout=5.0) as conn:
        return await data.load(conn, page, cfg, _now(), request.app[DAYS])


def _readable(request: web.Request) -> list[str]:
    """Endpoint names on the pages the caller may read, in page order."""
    cfg = _config(request)
    names = [n for p in auth.readable_pages(cfg, request) for _, members in data.layout(p, cfg) for n in members]
    return list(dict.fromkeys(names))


async def _endpoints(request: web.Request, names: list[str]) -> dict[str, data.EndpointData]:
    async with request.app[RUNTIME].pool.connection(timeout=5.0) as conn:
        return await data.load_endpoints(conn, names, _config(request), _now(), request.app[DAYS])


def _one(request: web.Request, key: str) -> str:
    """The endpoint named in the URL; 404 alike for unknown and unreadable, so private names do not leak."""
    name = request.match_info[key]
    if name not in _readable(request):
        raise api.error(web.HTTPNotFound, f"{key}: no endpoint {name!r} on a status page you may read")
    return name


def _visibility(request: web.Request, name: str) -> str:
    cfg = _config(request)
    public = any(name in m for p in cfg.status_pages if p.public for _, m in data.layout(p, cfg))
    return "public" if public else "private"


async def index(request: web.Request) -> web.Response:
    pages: list[StatusPage] = auth.readable_pages(_config(request), request)
    items = "".join(f'<li><a href="/status/{p.slug}">{escape(p.title)}</a></li>' for p in pages)
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Status pages</title></head>'
            f"<body><main><h1>Status pages</h1><ul>{items}</ul></main></body></html>")
    return web.Response(text=body, content_type="text/html", headers=_HTML_HEADERS)


async def status_page(request: web.Request) -> web.Response:
    page_data = await _page(request)
    cache = "public, max-age=30" if page_data.page.public else "private, no-store"
    return web.Response(body=render.page(page_data, request.app[DAYS]), content_type="text/html", charset="utf-8",
                        headers={**_HTML_HEADERS, "Cache-Control": cache})


async def badge(request: web.Request) -> web.Response:
    name = _one(request, "endpoint")
    e = (await _endpoints(request, [name]))[name]
    kind, window = request.match_info.get("kind", "status"), request.match_info.get("window", "24h")
    svg = badges.status(e) if kind == "status" else getattr(badges, kind)(e, window)
    etag = '"' + hashlib.sha256(svg.encode()).hexdigest()[:32] + '"'
    scope = "public" if _visibility(request, name) == "public" else "private"
    headers = {"Cache-Control": f"{scope}, max-age={BADGE_MAX_AGE_S}", "ETag": etag,
               "X-Content-Type-Options": "nosniff"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(text=svg, content_type="image/svg+xml", headers=headers)


async def read_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi.READ)


async def write_openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[WRITE_DOC])


async def read_pages(request: web.Request) -> web.Response:
    pages = auth.readable_pages(_config(request), request)
    return web.json_response([{"slug": p.slug, "title": p.title, "public": p.public, "url": f"/status/{p.slug}"}
                              for p in pages])


async def read_page(request: web.Request) -> web.Response:
    return web.json_response(api.page(await _page(request)), headers={"Cache-Control": "no-store"})


async def read_endpoints(request: web.Request) -> web.Response:
    found = await _endpoints(request, _readable(request))
    return web.json_response([api.endpoint(e, history=False) for e in found.values()])


async def read_endpoint(request: web.Request) -> web.Response:
    name = _one(request, "name")
    return web.json_response(api.endpoint((await _endpoints(request, [name]))[name], history=True))


async def read_results(request: web.Request) -> web.Response:
    name, limit = _one(request, "name"), api.limit(request)
    async with request.app[RUNTIME].pool.connection(timeout=5.0) as conn:
        cur = await conn.execute(
            "SELECT p.time, p.location, p.ok, p.status_code, p.latency_ms, p.error_kind, p.error"
            " FROM probe_results p JOIN endpoints e ON e.id = p.endpoint_id"
            " WHERE e.name = %s ORDER BY p.time DESC LIMIT %s", (name, limit))
        rows = await cur.fetchall()
    keys = ("time", "location", "ok", "status_code", "latency_ms", "error_kind", "error")
    return web.json_response([{k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                               for k, v in zip(keys, r, strict=True)} for r in rows])


async def read_incidents(request: web.Request) -> web.Response:
    found = await _endpoints(request, _readable(request))
    incidents = [{"endpoint": e.name, **i} for e in found.values() for i in api.endpoint(e, history=False)["incidents"]]
    return web.json_response(sorted(incidents, key=lambda i: i["started_at"], reverse=True))


async def read_status_incidents(request: web.Request) -> web.Response:
    names = _readable(request)
    any_page = bool(auth.readable_pages(_config(request), request))
    async with request.app[RUNTIME].pool.connection(timeout=5.0) as conn:
        found = await incidents.recent(conn, _now(), alerts=True)
    shown = [api.notice(n) for n in found if (n.endpoints and set(n.endpoints) & set(names)) or
             (not n.endpoints and any_page)]
    return web.json_response(shown, headers={"Cache-Control": "no-store"})


def _operator(request: web.Request) -> None:
    """Only the operator (the admin token, compared in constant time) posts incidents."""
    token = request.app[ADMIN]
    if not token:
        raise api.error(web.HTTPForbidden,
                        f"authorization: posting incidents needs {ADMIN_TOKEN_ENV} set on the server")
    given = auth.presented(request) or ""
    if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest()):
        raise api.error(web.HTTPUnauthorized, "authorization: send the admin token as a bearer token")


async def _body(request: web.Request, model: type[M]) -> M:
    """The JSON body as `model`; a 400 naming the first bad field."""
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise api.error(web.HTTPBadRequest, f"{where}: {first['msg']}") from None


async def post_incident(request: web.Request) -> web.Response:
    _operator(request)
    new = await _body(request, incidents.NewIncident)
    known = {e.name for e in _config(request).endpoints}
    for k, name in enumerate(new.endpoints):
        if name not in known:
            raise api.error(web.HTTPBadRequest, f"endpoints.{k}: no endpoint {name!r} in the config")
    async with request.app[RUNTIME].pool.connection(timeout=5.0) as conn:
        incident_id = await incidents.create(conn, new.title, new.message, new.endpoints, new.state)
    logger.info("status incident posted id=%d state=%s endpoints=%d", incident_id, new.state, len(new.endpoints))
    return web.json_response({"id": incident_id}, status=201)


def _incident_id(raw: str) -> int | None:
    """The id in the URL; None for anything that cannot name an incident (not digits, 0, beyond bigint), which
    is a JSON 404 like an unknown id rather than the router's plain-text one or a database error."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 0 < int(raw) <= openapi.MAX_ID:
        return None
    return int(raw)


async def post_update(request: web.Request) -> web.Response:
    _operator(request)
    new = await _body(request, incidents.NewUpdate)
    incident_id = _incident_id(request.match_info["id"])
    async with request.app[RUNTIME].pool.connection(timeout=5.0) as conn:
        if incident_id is None or not await incidents.update(conn, incident_id, new.message, new.state):
            raise api.error(web.HTTPNotFound, f"id: no incident {request.match_info['id']}")
    logger.info("status incident updated id=%d state=%s", incident_id, new.state or "-")
    return web.json_response({"id": incident_id}, status=201)


async def _daily_rollups(app: web.Application) -> AsyncIterator[None]:
    """Keep probe_rollup_1d up to date while the listener runs (sql/0120)."""
    task = asyncio.create_task(_refresh_daily(app[RUNTIME]))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _refresh_daily(runtime: Runtime) -> None:
    while True:
        try:
            async with runtime.pool.connection(timeout=5.0) as conn:
                cur = await conn.execute("SELECT refresh_daily_rollups()")
                row = await cur.fetchone()
            logger.debug("daily rollups refreshed rows=%s", row[0] if row else 0)
        except (psycopg.Error, TimeoutError) as e:
            summary = str(e).splitlines()[0] if str(e) else type(e).__name__
            logger.warning("daily rollups not refreshed error=%r", summary)
        await asyncio.sleep(DAILY_REFRESH_S)
