"""Who may see what: public pages to anyone, private ones with their token (bearer, or basic auth password)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from aiohttp import web

from upwatch.config import Config
from upwatch.config.pages import StatusPage


def presented(request: web.Request) -> str | None:
    """The token in the Authorization header: `Bearer <token>` or basic auth with it as the password."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def allowed(page: StatusPage, token: str | None) -> bool:
    """Compared as digests in constant time, so neither the token nor its length leaks through timing."""
    if page.public:
        return True
    if token is None or page.token is None:
        return False
    return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), hashlib.sha256(page.token.encode()).digest())


def readable_pages(config: Config, request: web.Request) -> list[StatusPage]:
    token = presented(request)
    return [p for p in config.status_pages if allowed(p, token)]


def challenge(page: StatusPage) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text='{"error": "this status page is private: send its token as a bearer token or basic auth password"}',
        content_type="application/json",
        headers={"WWW-Authenticate": f'Basic realm="upwatch status {page.slug}", charset="UTF-8"'})
