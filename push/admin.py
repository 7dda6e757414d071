"""Admin HTTP API (admin token): services and their keys, the same operations as the CLI."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from push import keys, origins
from push.bodies import INTEGRAL, Refusal
from push.context import reply
from push.keys import DB_TIMEOUT_S
from push.operations import Admin, Call

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


class PurgeQuery(BaseModel):
    """The query of DELETE /services/{name}; other parameters are ignored."""

    model_config = ConfigDict(extra="ignore")

    purge: Annotated[bool, Field(description="also delete the service's logs and rollups")] = False

    @field_validator("purge", mode="before")
    @classmethod
    def _boolean(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lower() not in BOOLEANS:
                raise ValueError("must be true or false")
            return BOOLEANS[value.lower()]
        return value


AdminCall = Call[Admin, None, None]


async def list_services(call: AdminCall) -> web.Response:
    """GET /services: every service with its active key count."""
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        return reply({"items": await keys.list_services(conn)})


async def create_service(call: Call[Admin, ServiceIn, None]) -> web.Response:
    """POST /services: create a service (201), 409 if the name is taken."""
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        try:
            row = await keys.create_service(conn, **call.body.model_dump())
        except keys.PushError as e:
            return Refusal(409, str(e)).response()
    return reply(row, status=201)


async def get_service(call: AdminCall) -> web.Response:
    """GET /services/{name}."""
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        row = await keys.get_service(conn, call.request.match_info["name"])
    return reply(row) if row else Refusal(404, "no such service").response()


async def delete_service(call: Call[Admin, None, PurgeQuery]) -> web.Response:
    """DELETE /services/{name}[?purge=true]: 409 while logs remain without purge."""
    name = call.request.match_info["name"]
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        if await keys.get_service(conn, name) is None:
            return Refusal(404, "no such service").response()
        try:
            counts = await keys.delete_service(conn, name, purge=call.query.purge)
        except keys.PushError as e:
            return Refusal(409, str(e)).response()
    call.context.keys.forget()
    return reply({"deleted": name, **counts})


async def list_keys(call: AdminCall) -> web.Response:
    """GET /services/{name}/keys: prefixes and dates, never secrets."""
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        try:
            return reply({"items": await keys.list_keys(conn, call.request.match_info["name"])})
        except keys.PushError as e:
            return Refusal(404, str(e)).response()


async def create_key(call: Call[Admin, KeyIn, None]) -> web.Response:
    """POST /services/{name}/keys: the raw key, shown this once (201)."""
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        try:
            raw, row = await keys.create_key(conn, call.request.match_info["name"], call.body.name)
        except keys.PushError as e:
            return Refusal(404, str(e)).response()
    return reply({**row, "key": raw}, status=201)


async def revoke_key(call: AdminCall) -> web.Response:
    """DELETE /keys/{prefix}: revoke now (also in this process's key cache)."""
    prefix = call.request.match_info["prefix"]
    async with call.context.runtime.pool.connection(timeout=DB_TIMEOUT_S) as conn:
        try:
            revoked_at = await keys.revoke_key(conn, prefix)
        except keys.PushError as e:
            return Refusal(404, str(e)).response()
    call.context.keys.forget(prefix)
    return reply({"prefix": prefix, "revoked_at": revoked_at})
