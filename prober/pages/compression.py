"""gzip for the pages and the read API, when the client asks for it (Accept-Encoding, RFC 9110 12.5.3).

gzip only, not deflate: aiohttp would pick deflate first for the usual "gzip, deflate", and "deflate"
has a history of clients reading it as raw DEFLATE rather than zlib. Badges are left alone: they are
a few hundred bytes and their ETag names the uncompressed SVG.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value allows gzip: named (or `*`) with a q-value above 0."""
    explicit: float | None = None
    wildcard: float | None = None
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            explicit = q
        elif coding == "*":
            wildcard = q
    chosen = explicit if explicit is not None else wildcard
    return chosen is not None and chosen > 0


def compressed(handler: Handler) -> Handler:
    """The handler's response gzipped for a client that accepts it, and marked as varying by Accept-Encoding
    (so a shared cache keeps the two apart)."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        vary = response.headers.get(hdrs.VARY)
        response.headers[hdrs.VARY] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"
        if response.status != 304 and accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, "")):
            response.enable_compression(web.ContentCoding.gzip)
        return response

    return wrapped
