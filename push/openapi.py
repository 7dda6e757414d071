"""The OpenAPI 3.1 document, built from routes.OPERATIONS (their auth, body and query declarations) so it
cannot drift from the router."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from push.docs_ui import STATIC
from push.operations import REF as _REF
from push.operations import Operation

_PARAM = re.compile(r"\{(\w+)\}")
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "key": [{"apiKey": []}, {"apiKeyHeader": []}],
    "admin": [{"adminToken": []}],
    "key_or_admin": [{"apiKey": []}, {"apiKeyHeader": []}, {"adminToken": []}],
    "none": [],
}
# aiohttp's HTTP parser answers these itself, before any route or middleware, in text/plain.
MALFORMED = "malformed HTTP request (a request line or header over 8190 bytes, a control character in a header)"
ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string"},
    "details": {"type": "array", "items": {"type": "object", "properties": {
        "index": {"type": "integer"}, "field": {"type": "string"}, "reason": {"type": "string"}}}}}}


def _path_params(path: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True,
             "schema": {"type": "integer"} if name == "id" else {"type": "string"}}
            for name in _PARAM.findall(path)]


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    properties = model.model_json_schema(ref_template=_REF)["properties"]
    params = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        params.append({"name": key, "in": "query", "required": info.is_required(), "schema": properties[key]})
    return params


def _operation(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, described in sorted({400: MALFORMED, **op.responses}.items()):
        content: dict[str, Any] = (
            {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}} if status >= 400 else
            {t: {"schema": {"type": "object"} if t == "application/json" else {"type": "string", "format": "binary"}}
             for t in op.success_types})
        description = described
        if status == 400:
            content["text/plain"] = {"schema": {"type": "string"}}
            description = described if described == MALFORMED else f"{described}; or {MALFORMED}"
        responses[str(status)] = {"description": description, "content": content}
    spec: dict[str, Any] = {
        "operationId": (op.method.lower() + op.path.replace("/", "_").replace("{", "").replace("}", "")),
        "summary": op.summary,
        "parameters": (_path_params(op.path) + (_query_params(op.query.model) if op.query.model else [])
                       + list(op.extra_params)),
        "responses": responses,
        "security": _SECURITY[op.auth.scheme],
    }
    if op.body.document is not None:
        spec["requestBody"] = op.body.document
    return spec


def _docs_paths() -> dict[str, Any]:
    """The Swagger UI page and its files (docs_ui.py), which are routes like any other."""
    def get(op_id: str, summary: str, ok: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
            missing: bool = False) -> dict[str, Any]:
        responses: dict[str, Any] = {"200": {"description": summary, "content": ok},
                                     "400": {"description": MALFORMED, "content": {"text/plain": {"schema": {
                                         "type": "string"}}}}}
        if missing:
            responses["404"] = {"description": "not one of the page's files",
                                "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}}}
        return {"get": {"operationId": op_id, "summary": summary, "security": [], "parameters": params or [],
                        "responses": responses}}

    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": sorted(STATIC)}}
    return {
        "/docs": get("get_docs", "Interactive docs (Swagger UI) for this document", {"text/html": {}}),
        "/docs/init.js": get("get_docs_init", "The docs page's initializer", {"text/javascript": {}}),
        "/docs/static/{name}": get("get_docs_static", "A Swagger UI file, from the installed package",
                                   {t: {} for t in sorted(set(STATIC.values()))}, params=[name], missing=True),
    }


def document(operations: tuple[Operation, ...]) -> dict[str, Any]:
    """The whole document for `operations`."""
    models = {model for op in operations for model in op.body.models}
    _, schemas = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                    ref_template=_REF)
    components = {**schemas.get("$defs", {}), "Error": ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    paths["/openapi.json"] = {"get": {"operationId": "get_openapi", "summary": "This document", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1 document",
                                                            "content": {"application/json": {}}}}}}
    paths.update(_docs_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "upwatch push API", "version": "1",
                 "description": "Request logs and external check results pushed by other services."},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "a service key (uwk_...)"},
            "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "adminToken": {"type": "http", "scheme": "bearer", "description": "$UPWATCH_ADMIN_TOKEN"}}},
    }
