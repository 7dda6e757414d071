"""OpenAPI 3.1 documents of the pages' two JSON APIs, each served as openapi.json under its own prefix (as the
push API's is under /api/v1): the read API (/api/read/v1) and the operators' incident writes (/api/status/v1).

Two documents rather than one because each has one base URL (`servers`), which is what clients and
schemathesis join paths to; per-path servers are not widely honoured. The write bodies come from the
pydantic models the handlers validate with, so the document cannot drift from what is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic.json_schema import models_json_schema

from prober.pages.api import MAX_RESULTS, PREFIX
from prober.pages.incidents import NewIncident, NewUpdate

WRITE_PREFIX = "/api/status/v1"
_REF = "#/components/schemas/{model}"
# status_incidents.id is a bigint: a larger id names no incident (a 404, not a database error).
MAX_ID = 2**63 - 1
ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string", "description": "the field, a colon, and what is wrong with it"}}}
# aiohttp's HTTP parser answers these itself, before any route, in text/plain (as in push/openapi.py).
MALFORMED = "malformed HTTP request (a request line or header over 8190 bytes, a control character in a header)"

_FIG = {"type": "object", "properties": {"uptime": {"type": ["number", "null"]}, "checks": {"type": "integer"},
                                         "ok": {"type": "integer"}, "response_ms": {"type": ["number", "null"]}}}
_ENDPOINT = {"type": "object", "required": ["name", "state", "windows"], "properties": {
    "name": {"type": "string"}, "state": {"enum": ["up", "degraded", "down", "maintenance", "unknown"]},
    "locations": {"type": "object", "description": "each prober location's own state (empty with one location)",
                  "additionalProperties": {"enum": ["up", "degraded", "down"]}},
    "last_check_at": {"type": ["string", "null"], "format": "date-time"}, "last_error": {"type": ["string", "null"]},
    "windows": {"type": "object", "additionalProperties": _FIG}, "unusual": {"type": ["string", "null"]},
    "degraded_by": {"type": ["string", "null"]},
    "incidents": {"type": "array", "items": {"type": "object"}},
    "maintenance": {"type": "array", "items": {"type": "object"}},
    "days": {"type": "array", "items": _FIG}, "hours": {"type": "array", "items": _FIG}}}
_NOTICE = {"type": "object", "required": ["title", "state", "source", "active", "updates"], "properties": {
    "id": {"type": ["integer", "null"]}, "title": {"type": "string"}, "state": {"type": "string"},
    "source": {"enum": ["operator", "alerter"]}, "active": {"type": "boolean"},
    "started_at": {"type": "string", "format": "date-time"}, "resolved_at": {"type": ["string", "null"]},
    "endpoints": {"type": "array", "items": {"type": "string"}},
    "updates": {"type": "array", "items": {"type": "object"}}}}
_ERROR = {"description": "error", "content": {"application/json": {"schema": ERROR}}}


def _op(summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params or [], "security": [{}, {"bearer": []}, {"basic": []}],
                    "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}},
                                  "400": _ERROR, "401": _ERROR, "404": _ERROR}}}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


READ: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "upwatch read API", "version": "1",
             "description": "Endpoints on public status pages are readable by anyone; those on private pages with "
                            "that page's token (bearer, or the password of basic auth). Incidents are posted "
                            f"through the status API, described at {WRITE_PREFIX}/openapi.json."},
    "servers": [{"url": PREFIX}],
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                       "basic": {"type": "http", "scheme": "basic"}}},
    "paths": {
        "/pages": _op("Status pages you may read", {"type": "array", "items": {"type": "object"}}),
        "/pages/{slug}": _op("A status page's data", {"type": "object"}, [_path("slug")]),
        "/endpoints": _op("Endpoints you may read, with state and uptime per window",
                          {"type": "array", "items": _ENDPOINT}),
        "/endpoints/{name}": _op("One endpoint, with 90 days of history", _ENDPOINT, [_path("name")]),
        "/endpoints/{name}/results": _op(
            "Recent checks, newest first", {"type": "array", "items": {"type": "object"}},
            [_path("name"), {"name": "limit", "in": "query", "schema": {
                "type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "default": 100}}]),
        "/incidents": _op("Detector incidents of the last 7 days", {"type": "array", "items": {"type": "object"}}),
        "/status-incidents": _op("Operator incidents (and firing DOWN alerts) that are open or resolved in the"
                                 " last 7 days, on endpoints you may read", {"type": "array", "items": _NOTICE}),
    },
}


def _post(op_id: str, summary: str, model: str, *, missing: bool) -> dict[str, Any]:
    json_error = {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}}
    responses: dict[str, Any] = {
        "201": {"description": "posted", "content": {"application/json": {"schema": {
            "type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}}}},
        "400": {"description": f"a field is not valid (the error names it); or {MALFORMED}",
                "content": {**json_error, "text/plain": {"schema": {"type": "string"}}}},
        "401": {"description": "no admin token, or a wrong one", "content": json_error},
        "403": {"description": "UPWATCH_ADMIN_TOKEN is not set on the server: nobody may post", "content": json_error},
    }
    if missing:
        responses["404"] = {"description": "no incident with this id", "content": json_error}
    return {"post": {
        "operationId": op_id, "summary": summary, "security": [{"adminToken": []}],
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}] if missing else [],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model)}}}},
        "responses": responses}}


def write(endpoints: Sequence[str]) -> dict[str, Any]:
    """The incident write API's document; `endpoints` (the config's names) are the only ones an incident may name."""
    _, schemas = models_json_schema([(NewIncident, "validation"), (NewUpdate, "validation")], ref_template=_REF)
    defs: dict[str, Any] = schemas["$defs"]
    names = defs["NewIncident"]["properties"]["endpoints"]
    names["items"] = {"enum": sorted(endpoints)} if endpoints else {"type": "string"}
    if not endpoints:
        names["maxItems"] = 0
    return {
        "openapi": "3.1.0",
        "info": {"title": "upwatch status API", "version": "1",
                 "description": "Operators post incidents on the status pages, with the admin token "
                                "($UPWATCH_ADMIN_TOKEN) as a bearer token. Reading them: the read API, "
                                f"{PREFIX}/openapi.json."},
        "servers": [{"url": WRITE_PREFIX}],
        "paths": {
            "/incidents": _post("post_incidents", "Post an incident, with its first update", "NewIncident",
                                missing=False),
            "/incidents/{id}/updates": _post("post_incidents_id_updates",
                                             "Add an update to an incident (resolve it with state: resolved)",
                                             "NewUpdate", missing=True),
        },
        "components": {"schemas": {**defs, "Error": ERROR}, "securitySchemes": {
            "adminToken": {"type": "http", "scheme": "bearer", "description": "$UPWATCH_ADMIN_TOKEN"}}},
    }
