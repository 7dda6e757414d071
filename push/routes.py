"""Every route of the push API, with what the OpenAPI document says about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from push import admin, analytics, checks, deletion, docs_ui, ingest, query, replay
from push.app import Handler
from push.records import LogRecord


@dataclass(frozen=True)
class Operation:
    """One method + path: its handler and its documentation."""

    method: str
    path: str
    handler: Handler
    summary: str
    auth: str  # "key", "admin", "key_or_admin", "none"
    responses: dict[int, str]
    body: type[BaseModel] | str | None = None  # a model, "logs" (ingest formats) or None
    query: type[BaseModel] | None = None
    extra_params: tuple[dict[str, Any], ...] = field(default_factory=tuple)


_READ = {401: "missing or invalid credentials", 403: "the key belongs to another service",
         404: "unknown service", 422: "invalid query parameters"}
_ADMIN = {401: "missing or invalid admin token"}
_PURGE = ({"name": "purge", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
           "description": "also delete the service's logs and rollups"},)

OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", "/logs", ingest.post_logs, "Push request logs (one object, an array or NDJSON)", "key",
              {202: "accepted, with the count (a repeated Idempotency-Key: the first answer again, with"
                    " Idempotent-Replayed: true, nothing stored)", 400: "invalid JSON (with position)",
               401: "missing, invalid or revoked key", 413: "body or batch too large",
               415: "unsupported content type",
               422: "invalid records (index, field, reason) or Idempotency-Key header; nothing stored",
               429: "rate limit exceeded (Retry-After)", 503: "write queue full (Retry-After)"}, body="logs",
              extra_params=({"name": "Idempotency-Key", "in": "header", "required": False,
                             "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                             "description": "one per batch; a repeat within 24 h is not stored again"},)),
    Operation("GET", "/logs", query.list_logs, "Search logs, newest first, keyset-paginated", "key_or_admin",
              {200: "a page of logs", **_READ}, query=query.LogQuery),
    Operation("DELETE", "/logs", deletion.delete_own_logs, "Delete this key's service's logs in [from, to), or all",
              "key", {200: "deleted, with counts", 401: "missing, invalid or revoked key",
                      403: "the admin token (it purges whole services instead)",
                      422: "invalid range: neither from/to nor all=true, both, or from not before to"},
              query=deletion.DeleteQuery),
    Operation("GET", "/logs/{id}", query.get_log, "One log", "key_or_admin",
              {200: "the log", 401: _READ[401], 404: "no such log"}),
    Operation("POST", "/logs/{id}/replay", replay.replay, "Replay a logged request to an allowed host", "admin",
              {201: "the replay's outcome", **_ADMIN, 400: "invalid JSON", 403: "origin, method or address not allowed for replays",
               404: "no such log", 413: "body too large", 415: "unsupported content type", 422: "invalid overrides"},
              body=replay.ReplayIn),
    Operation("GET", "/logs/{id}/replays", replay.list_replays, "Replays of a log", "admin",
              {200: "the replays", **_ADMIN, 404: "no such log"}),
    Operation("GET", "/analytics", analytics.analytics, "Traffic, errors and latency over a range", "key_or_admin",
              {200: "the aggregates", **_READ}, query=analytics.AnalyticsQuery),
    Operation("GET", "/services", admin.list_services, "List services", "admin", {200: "services", **_ADMIN}),
    Operation("POST", "/services", admin.create_service, "Create a service", "admin",
              {201: "created", **_ADMIN, 400: "invalid JSON", 409: "name taken", 413: "body too large",
               415: "unsupported content type", 422: "invalid fields"}, body=admin.ServiceIn),
    Operation("GET", "/services/{name}", admin.get_service, "One service", "admin",
              {200: "the service", **_ADMIN, 404: "no such service"}),
    Operation("DELETE", "/services/{name}", admin.delete_service, "Delete a service and its keys", "admin",
              {200: "deleted, with counts", **_ADMIN, 404: "no such service",
               409: "logs remain and purge was not requested", 422: "purge is not true or false"},
              extra_params=_PURGE),
    Operation("GET", "/services/{name}/keys", admin.list_keys, "List a service's keys", "admin",
              {200: "keys (never their secrets)", **_ADMIN, 404: "no such service"}),
    Operation("POST", "/services/{name}/keys", admin.create_key, "Create a key (shown once)", "admin",
              {201: "the key", **_ADMIN, 400: "invalid JSON", 404: "no such service", 413: "body too large",
               415: "unsupported content type", 422: "invalid fields"}, body=admin.KeyIn),
    Operation("DELETE", "/keys/{prefix}", admin.revoke_key, "Revoke a key by its prefix", "admin",
              {200: "revoked", **_ADMIN, 404: "no active key with that prefix"}),
    *(
        Operation(method, "/checks/{name}" + suffix, checks.handler(suffix.lstrip("/")), summary, "none",
                  {202: "recorded", 400: "invalid JSON", 401: "the endpoint requires its bearer token",
                   404: "no push endpoint with that name", 413: "body too large",
                   415: "unsupported content type", 422: "invalid result",
                   503: "write queue full or endpoint not registered yet"},
                  body=checks.CheckIn if method == "POST" else None)
        for suffix, summary in (("", "Report a success (or the given result)"), ("/fail", "Report a failure"),
                                ("/start", "Report that a run started"))
        for method in ("POST", "GET")
    ),
)


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3 document of this API."""
    from push.openapi import document

    return web.json_response(document(OPERATIONS, LogRecord))


ROUTES = [*(web.route(op.method, op.path, op.handler) for op in OPERATIONS),
          web.get("/openapi.json", openapi_json, allow_head=False), *docs_ui.ROUTES]
