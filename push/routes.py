"""Every operation of the push API: who may call it, its body and query, its handler and what the
OpenAPI document says about it. See operations.py for how a declaration is applied.
"""

from __future__ import annotations

from aiohttp import web

from push import admin, analytics, checks, deletion, docs_ui, ingest, query, replay, reports, rules
from push.openapi import document
from push.operations import (
    ADMIN,
    KEY,
    KEY_OR_ADMIN,
    NO_BODY,
    NO_QUERY,
    Operation,
    json_body,
    key_auth,
    operation,
    query_model,
)

_READ = {401: "missing or invalid credentials", 403: "the key belongs to another service",
         404: "unknown service", 422: "invalid query parameters"}
_ADMIN = {401: "missing or invalid admin token"}
_CHECK = {202: "recorded", 400: "invalid JSON", 401: "the endpoint requires its bearer token",
          404: "no push endpoint with that name", 413: "body too large", 415: "unsupported content type",
          422: "invalid result", 503: "write queue full or endpoint not registered yet"}
_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    "description": "one per batch; a repeat within 24 h is not stored again"}

OPERATIONS: tuple[Operation, ...] = (
    operation("POST", "/logs", ingest.post_logs, "Push request logs (one object, an array or NDJSON)",
              {202: "accepted, with the count (a repeated Idempotency-Key: the first answer again, with"
                    " Idempotent-Replayed: true, nothing stored)", 400: "invalid JSON (with position)",
               401: "missing, invalid or revoked key", 413: "body or batch too large",
               415: "unsupported content type",
               422: "invalid records (index, field, reason) or Idempotency-Key header; nothing stored",
               429: "rate limit exceeded (Retry-After)", 503: "write queue full (Retry-After)"},
              auth=KEY, body=ingest.LOGS, query=NO_QUERY, extra_params=(_IDEMPOTENCY_KEY,)),
    operation("GET", "/logs", query.list_logs, "Search logs, newest first, keyset-paginated",
              {200: "a page of logs", **_READ},
              auth=KEY_OR_ADMIN, body=NO_BODY, query=query_model(query.LogQuery)),
    operation("DELETE", "/logs", deletion.delete_own_logs, "Delete this key's service's logs in [from, to), or all",
              {200: "deleted, with counts", 401: "missing, invalid or revoked key",
               403: "the admin token (it purges whole services instead)",
               422: "invalid range: neither from/to nor all=true, both, or from not before to"},
              auth=key_auth(admin=deletion.ADMIN_REFUSED), body=NO_BODY, query=query_model(deletion.DeleteQuery)),
    operation("GET", "/logs/{id}", query.get_log, "One log", {200: "the log", 401: _READ[401], 404: "no such log"},
              auth=KEY_OR_ADMIN, body=NO_BODY, query=NO_QUERY),
    operation("POST", "/logs/{id}/replay", replay.replay, "Replay a logged request to an allowed host",
              {201: "the replay's outcome", **_ADMIN, 400: "invalid JSON",
               403: "origin, method or address not allowed for replays", 404: "no such log",
               413: "body too large", 415: "unsupported content type", 422: "invalid overrides"},
              auth=ADMIN, body=json_body(replay.ReplayIn, optional=True), query=NO_QUERY),
    operation("GET", "/logs/{id}/replays", replay.list_replays, "Replays of a log",
              {200: "the replays", **_ADMIN, 404: "no such log"}, auth=ADMIN, body=NO_BODY, query=NO_QUERY),
    operation("GET", "/analytics", analytics.analytics, "Traffic, errors and latency over a range",
              {200: "the aggregates", **_READ},
              auth=KEY_OR_ADMIN, body=NO_BODY, query=query_model(analytics.AnalyticsQuery)),
    operation("GET", "/reports", reports.get_report, "A service's report over a range, as JSON or PDF",
              {200: "the report (format=json) or its PDF (format=pdf)", **_READ},
              auth=KEY_OR_ADMIN, body=NO_BODY, query=query_model(reports.ReportQuery),
              success_types=("application/json", "application/pdf")),
    operation("GET", "/services", admin.list_services, "List services", {200: "services", **_ADMIN},
              auth=ADMIN, body=NO_BODY, query=NO_QUERY),
    operation("POST", "/services", admin.create_service, "Create a service",
              {201: "created", **_ADMIN, 400: "invalid JSON", 409: "name taken", 413: "body too large",
               415: "unsupported content type", 422: "invalid fields"},
              auth=ADMIN, body=json_body(admin.ServiceIn), query=NO_QUERY),
    operation("GET", "/services/{name}", admin.get_service, "One service",
              {200: "the service", **_ADMIN, 404: "no such service"}, auth=ADMIN, body=NO_BODY, query=NO_QUERY),
    operation("DELETE", "/services/{name}", admin.delete_service, "Delete a service and its keys",
              {200: "deleted, with counts", **_ADMIN, 404: "no such service",
               409: "logs remain and purge was not requested", 422: "purge is not true or false"},
              auth=ADMIN, body=NO_BODY, query=query_model(admin.PurgeQuery)),
    operation("GET", "/services/{name}/keys", admin.list_keys, "List a service's keys",
              {200: "keys (never their secrets)", **_ADMIN, 404: "no such service"},
              auth=ADMIN, body=NO_BODY, query=NO_QUERY),
    operation("POST", "/services/{name}/keys", admin.create_key, "Create a key (shown once)",
              {201: "the key", **_ADMIN, 400: "invalid JSON", 404: "no such service", 413: "body too large",
               415: "unsupported content type", 422: "invalid fields"},
              auth=ADMIN, body=json_body(admin.KeyIn, optional=True), query=NO_QUERY),
    operation("DELETE", "/keys/{prefix}", admin.revoke_key, "Revoke a key by its prefix",
              {200: "revoked", **_ADMIN, 404: "no active key with that prefix"},
              auth=ADMIN, body=NO_BODY, query=NO_QUERY),
    *rules.OPERATIONS,
    *(
        operation(method, "/checks/{name}" + suffix, checks.handler(suffix.lstrip("/")), summary, _CHECK,
                  auth=checks.ENDPOINT, body=checks.POST_BODY if method == "POST" else checks.GET_BODY,
                  query=NO_QUERY)
        for suffix, summary in (("", "Report a success (or the given result)"), ("/fail", "Report a failure"),
                                ("/start", "Report that a run started"))
        for method in ("POST", "GET")
    ),
)

async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3 document of this API."""
    return web.json_response(document(OPERATIONS))


ROUTES = [*(op.route() for op in OPERATIONS), web.get("/openapi.json", openapi_json, allow_head=False),
          *docs_ui.ROUTES]
