"""The read API (/api/read/v1): what the status pages show, as JSON, for the endpoints a caller may read."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from prober.pages.data import EndpointData, PageData
from prober.pages.incidents import Notice
from prober.pages.uptime import Figures

PREFIX = "/api/read/v1"
MAX_RESULTS = 1000


def figures(f: Figures) -> dict[str, Any]:
    return {"uptime": f.uptime, "checks": f.checks, "ok": f.ok, "response_ms": f.latency_ms}


def _time(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def endpoint(e: EndpointData, *, history: bool) -> dict[str, Any]:
    """An endpoint as the read API shows it; `history` adds the 90 days and the 24 hourly points."""
    body: dict[str, Any] = {
        "name": e.name, "state": e.state, "last_check_at": _time(e.last_at), "last_error": e.last_error,
        "windows": {w: figures(f) for w, f in e.uptime.items()},
        "unusual": e.unusual.reason if e.unusual else None, "degraded_by": e.degraded_by,
        "locations": dict(e.locations),
        "incidents": [{"started_at": _time(i.started_at), "ended_at": _time(i.ended_at), "severity": i.severity,
                       "reason": i.reason, "active": i.active} for i in e.incidents],
        "maintenance": [{"name": w.name, "starts_at": _time(w.starts_at), "ends_at": _time(w.ends_at),
                         "active": w.active} for w in e.maintenance],
    }
    if history:
        body["days"] = [{"date": d.isoformat(), **figures(f)} for d, f in e.days]
        body["hours"] = [{"hour": _time(h), **figures(f)} for h, f in e.hours]
    return body


def notice(n: Notice) -> dict[str, Any]:
    """An operator's (or the alerter's) incident, its updates newest first."""
    return {"id": n.id, "title": n.title, "state": n.state, "source": n.source, "active": n.active,
            "started_at": _time(n.started_at), "resolved_at": _time(n.resolved_at), "endpoints": list(n.endpoints),
            "updates": [{"at": _time(u.at), "state": u.state, "message": u.message} for u in n.updates]}


def page(data: PageData) -> dict[str, Any]:
    return {"slug": data.page.slug, "title": data.page.title, "description": data.page.description,
            "public": data.page.public, "state": data.state, "generated_at": data.now.isoformat(),
            "incidents": [notice(n) for n in data.notices],
            "groups": [{"name": g.name, "endpoints": [endpoint(e, history=True) for e in g.endpoints]}
                       for g in data.groups]}


def error(status: type[web.HTTPError], message: str) -> web.HTTPError:
    return status(text=web.json_response({"error": message}).text, content_type="application/json")


def limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_RESULTS:
        raise error(web.HTTPBadRequest, f"limit: must be an integer from 1 to {MAX_RESULTS} (got {raw!r})")
    return int(raw)
