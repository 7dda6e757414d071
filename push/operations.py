"""One operation of the push API (a method + path): who may call it, its body and query, its handler.

An operation is declared once, in routes.OPERATIONS, and `Operation.run` applies the declaration
before the handler, in this order: credentials (`auth`: 401, or 403 where an operation says so),
query string (`query`: 422 naming each parameter), body (`body`: 400/413/415/422 naming each field).
The handler receives a `Call` with the caller, body and query already checked and typed, and does
only its own work. openapi.py builds the document from the same declarations, so what is enforced
and what is documented cannot drift. `operation()` type-checks that a handler expects exactly the
caller, body and query its declaration produces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from push.bodies import Refusal, body_problems, parse_json, query_problems, read_limited
from push.context import UNAUTHORIZED, Context, ctx, is_admin, presented_key
from push.keys import Caller, hash_key

P = TypeVar("P")  # who called
B = TypeVar("B")  # the body
Q = TypeVar("Q")  # the query
M = TypeVar("M", bound=BaseModel)

REF = "#/components/schemas/{model}"
MAX_JSON_BYTES = 64 * 1024  # admin and replay bodies; ingest has push.max_body_bytes


@dataclass(frozen=True)
class Admin:
    """The caller presented the admin token."""


ADMIN_CALLER = Admin()


@dataclass(frozen=True)
class Call(Generic[P, B, Q]):
    """One accepted request as its handler sees it: the caller, body and query already checked."""

    request: web.Request
    context: Context
    caller: P
    body: B
    query: Q


@dataclass(frozen=True)
class Auth(Generic[P]):
    """Who may call: `check` returns the caller, or the refusal to answer (a 401 does not say what was
    wrong). `scheme` names the OpenAPI security requirement: "key", "admin", "key_or_admin" or "none"."""

    scheme: str
    check: Callable[[web.Request, Context], Awaitable[P | Refusal]]


@dataclass(frozen=True)
class Body(Generic[B]):
    """How the request body is read: `read` returns it or a Refusal. `document` is the OpenAPI
    requestBody (None: the operation takes no body) and `models` the schemas it refers to."""

    read: Callable[[web.Request, Context], Awaitable[B | Refusal]]
    document: dict[str, Any] | None = None
    models: tuple[type[BaseModel], ...] = ()


@dataclass(frozen=True)
class Query(Generic[Q]):
    """How the query string is read: `read` returns it or a 422 Refusal; `model` documents it."""

    read: Callable[[web.Request], Q | Refusal]
    model: type[BaseModel] | None = None


def key_auth(admin: Refusal = UNAUTHORIZED) -> Auth[Caller]:
    """A service key is required; the admin token gets `admin` (401 unless an operation explains more)."""

    async def check(request: web.Request, context: Context) -> Caller | Refusal:
        who = await _key_or_admin(request, context)
        return admin if isinstance(who, Admin) else who

    return Auth("key", check)


async def _key_or_admin(request: web.Request, context: Context) -> Caller | Admin | Refusal:
    raw = presented_key(request)
    digest = hash_key(raw) if raw else None  # one hash for both comparisons
    if is_admin(context, raw, digest):
        return ADMIN_CALLER
    caller = await context.keys.authenticate(raw, digest)
    return caller if caller is not None else UNAUTHORIZED


async def _admin(request: web.Request, context: Context) -> Admin | Refusal:
    return ADMIN_CALLER if is_admin(context, presented_key(request)) else UNAUTHORIZED


async def _anyone(request: web.Request, context: Context) -> None:
    return None


KEY = key_auth()
KEY_OR_ADMIN: Auth[Caller | Admin] = Auth("key_or_admin", _key_or_admin)
ADMIN: Auth[Admin] = Auth("admin", _admin)
ANYONE: Auth[None] = Auth("none", _anyone)


async def _no_body(request: web.Request, context: Context) -> None:
    return None


NO_BODY: Body[None] = Body(_no_body)


def json_document(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a JSON body validated as `model` (required unless every field has
    a default, since an empty body then means {})."""
    required = any(f.is_required() for f in model.model_fields.values())
    return {"required": required, "content": {"application/json": {"schema": {"$ref": REF.format(
        model=model.__name__)}}}}


def json_body(model: type[M], *, optional: bool = False) -> Body[M]:
    """A JSON body of at most MAX_JSON_BYTES validated as `model`; `optional`: an empty body is model()."""

    async def read(request: web.Request, context: Context) -> M | Refusal:
        raw = await read_limited(request, MAX_JSON_BYTES)
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
            return body_problems(e)

    return Body(read, json_document(model), (model,))


def _no_query(request: web.Request) -> None:
    return None


NO_QUERY: Query[None] = Query(_no_query)


def query_model(model: type[M]) -> Query[M]:
    """The query string validated as `model` (one value per name)."""

    def read(request: web.Request) -> M | Refusal:
        try:
            return model.model_validate(dict(request.query))
        except ValidationError as e:
            return query_problems(e)

    return Query(read, model)


Handler = Callable[[Call[Any, Any, Any]], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    """One method + path: its declaration, its handler and its documentation."""

    method: str
    path: str
    handler: Handler
    summary: str
    responses: dict[int, str]
    auth: Auth[Any]
    body: Body[Any]
    query: Query[Any]
    extra_params: tuple[dict[str, Any], ...] = ()
    # What a success (status < 400) may be answered as, for the document; errors are always JSON.
    success_types: tuple[str, ...] = ("application/json",)

    async def run(self, request: web.Request) -> web.StreamResponse:
        """Check the caller, then the query, then the body; the first refusal answers, else the handler."""
        context = ctx(request)
        caller = await self.auth.check(request, context)
        if isinstance(caller, Refusal):
            return caller.response()
        query = self.query.read(request)
        if isinstance(query, Refusal):
            return query.response()
        body = await self.body.read(request, context)
        if isinstance(body, Refusal):
            return body.response()
        return await self.handler(Call(request, context, caller, body, query))

    def route(self) -> web.RouteDef:
        """The aiohttp route of this operation."""
        return web.route(self.method, self.path, self.run)


def operation(method: str, path: str, handler: Callable[[Call[P, B, Q]], Awaitable[web.StreamResponse]],
              summary: str, responses: dict[int, str], *, auth: Auth[P], body: Body[B], query: Query[Q],
              extra_params: tuple[dict[str, Any], ...] = (),
              success_types: tuple[str, ...] = ("application/json",)) -> Operation:
    """An Operation whose handler takes the Call its auth, body and query produce (checked by mypy)."""
    return Operation(method, path, handler, summary, responses, auth, body, query, extra_params, success_types)
