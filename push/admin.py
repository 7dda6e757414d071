"""Admin HTTP API (admin token): services and their keys, the same operations as the CLI."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

from push import keys, origins
from push.app import ctx, reply, require_admin
from push.bodies import INTEGRAL, Refusal, parse_json, read_limited
from push.keys import DB_TIMEOUT_S

logger = logging.getLogger(__name__)

SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # fullmatch: "shop\n" is no name
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
# An absolute http(s) URL with a host name or IPv4 address, as documented; bracketed IPv6 hosts are accepted
# too (checked by urlsplit), though the document's pattern leaves them out as it cannot tell valid ones.
_URL = r"[Hh][Tt][Tt][Pp][Ss]?://(?:[^/?#@\x00]*@)?(?:[A-Za-z0-9._~-]+{})(?::[0-9]*)?(?:[/?#][^\x00]*)?"
BASE_URL = re.compile(_URL.format(r"|\[[0-9A-Fa-f:.]+\]"))
# What the OpenAPI document promises is accepted: no credentials (replay refuses them), ports 0-65535.
_PORT = r"(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_HOST = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
DOCUMENTED_BASE_URL = rf"^[Hh][Tt][Tt][Pp][Ss]?://{_HOST}(?::{_PORT})?(?:[/?#][^\x00]*)?$"
DOCUMENTED_ALLOWED_HOST = rf"^(?:[Hh][Tt][Tt][Pp][Ss]?://)?{_HOST}(?::{_PORT})?$"
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL


class ServiceIn(BaseModel):
    """A service to create."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[StrictStr, Field(json_schema_extra={"pattern": f"^{SERVICE_NAME.pattern}$"})]
    description: Annotated[StrictStr, Field(max_length=1000, pattern=NO_NUL)] = ""
    base_url: Annotated[StrictStr, Field(json_schema_extra={"pattern": DOCUMENTED_BASE_URL})] | None = None
    privacy_level: Annotated[StrictInt, Field(ge=0, le=2), INTEGRAL] = 0
    retention_days: Annotated[StrictInt, Field(ge=1, le=3650), INTEGRAL] = 30
    allowed_hosts: list[Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=NO_NUL,
                                                   json_schema_extra={"pattern": DOCUMENTED_ALLOWED_HOST})]] = []
    replay_methods: list[Annotated[StrictStr, Field(pattern=r"^[A-Za-z]{1,16}$")]] = []

    @field_validator("allowed_hosts")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for entry in value:
            origins.allowed_entry(entry)  # OriginError is a ValueError: 422 naming allowed_hosts
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SERVICE_NAME.fullmatch(value):
            raise ValueError("must be 1-100 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if not BASE_URL.fullmatch(value) or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an absolute http:// or https:// URL")
            origins.origin_of(value)  # OriginError is a ValueError: 422 naming base_url
        return value


class KeyIn(BaseModel):
    """A key to create."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[StrictStr, Field(max_length=200, pattern=NO_NUL)] = ""


def problems(e: ValidationError) -> Refusal:
    """A pydantic error as a 422 naming each field."""
    details = [{"field": ".".join(str(p) for p in err["loc"]) or "(body)", "reason": err["msg"]}
               for err in e.errors(include_url=False)]
    return Refusal(422, "invalid request body", details)


async def read_model(request: web.Request, model: type[BaseModel], *, optional: bool = False) -> Any:
    """The JSON body validated as `model`, or a Refusal."""
    raw = await read_limited(request, 64 * 1024)
    if isinstance(raw, Refusal):
        return raw
    if optional and not raw.strip():
        return model()
    if request.content_type != "application/json":
        return Refusal(415, "Content-Type must be application/json")
    data = parse_json(raw)
    if isinstance(data, Refusal):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as e:
        return problems(e)


async def list_services(request: web.Request) -> web.Response:
    """GET /services: every service with its active key count."""
    if refused := await require_admin(request):
        return refused.response()
    async with ctx(request).runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        return reply({"items": await keys.list_services(conn)})


async def create_service(request: web.Request) -> web.Response:
    """POST /services: create a service (201), 409 if the name is taken."""
    if refused := await require_admin(request):
        return refused.response()
    body = await read_model(request, ServiceIn)
    if isinstance(body, Refusal):
        return body.response()
    async with ctx(request).runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        try:
            row = await keys.create_service(conn, **body.model_dump())
        except keys.PushError as e:
            return Refusal(409, str(e)).response()
    return reply(row, status=201)


async def get_service(request: web.Request) -> web.Response:
    """GET /services/{name}."""
    if refused := await require_admin(request):
        return refused.response()
    async with ctx(request).runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        row = await keys.get_service(conn, request.match_info["name"])
    return reply(row) if row else Refusal(404, "no such service").response()


async def delete_service(request: web.Request) -> web.Response:
    """DELETE /services/{name}[?purge=true]: 409 while logs remain without purge."""
    if refused := await require_admin(request):
        return refused.response()
    purge = BOOLEANS.get(request.query.get("purge", "false").lower())
    if purge is None:
        return Refusal(422, "invalid query parameters", [{"field": "purge", "reason": "must be true or false"}]
                       ).response()
    name = request.match_info["name"]
    async with ctx(request).runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        if await keys.get_service(conn, name) is None:
            return Refusal(404, "no such service").response()
        try:
            counts = await keys.delete_service(conn, name, purge=purge)
        except keys.PushError as e:
            return Refusal(409, str(e)).response()
    ctx(request).keys.forget()
    return reply({"deleted": name, **counts})


async def list_keys(request: web.Request) -> web.Response:
    """GET /services/{name}/keys: prefixes and dates, never secrets."""
    if refused := await require_admin(request):
        return refused.response()
    async with ctx(request).runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        try:
            return reply({"items": await keys.list_keys(conn, request.match_info["name"])})
        except keys.PushError as e:
            return Refusal(404, str(e)).response()


async def create_key(request: web.Request) -> web.Response:
    """POST /services/{name}/keys: the raw key, shown this once (201)."""
    if refused := await require_admin(request):
        return refused.response()
    body = await read_model(request, KeyIn, optional=True)
    if isinstance(body, Refusal):
        return body.response()
    async with ctx(request).runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        try:
            raw, row = await keys.create_key(conn, request.match_info["name"], body.name)
        except keys.PushError as e:
            return Refusal(404, str(e)).response()
    return reply({**row, "key": raw}, status=201)


async def revoke_key(request: web.Request) -> web.Response:
    """DELETE /keys/{prefix}: revoke now (also in this process's key cache)."""
    if refused := await require_admin(request):
        return refused.response()
    prefix = request.match_info["prefix"]
    async with ctx(request).runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        try:
            revoked_at = await keys.revoke_key(conn, prefix)
        except keys.PushError as e:
            return Refusal(404, str(e)).response()
    ctx(request).keys.forget(prefix)
    return reply({"prefix": prefix, "revoked_at": revoked_at})
