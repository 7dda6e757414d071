"""gzip for the pages and the read API, when the client asks for it (Accept-Encoding, RFC 9110 12.5.3).

gzip only, not deflate: aiohttp would pick deflate first for the usual "gzip, deflate", and "deflate"
has a history of clients reading it as raw DEFLATE rather than zlib. Badges are left alone: they are
a few hundred bytes and their ETag names the uncompressed SVG.

Compressed here with ISA-L's igzip (the `isal` package) rather than aiohttp's enable_compression(), which
has no level and uses zlib: a 500-endpoint page (5.6 MiB of HTML) takes about 14 ms with zlib at level 1
(to 399 KiB) and 3.5 ms with igzip at level 1 (to about 360-380 KiB), on bench/status_page.py's page. Bodies up to
LARGE get igzip's densest level 3 (about 3 ms per MiB, under zlib level 6's 8 ms, a little larger);
bigger ones level 1, where the CPU costs more than the bytes save. Bodies over IN_THREAD are compressed
in a worker thread (igzip releases the GIL), off the event loop. The output is ordinary gzip (RFC 1952).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from isal import igzip

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LARGE = 1 << 20
IN_THREAD = 64 << 10


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
        accepted = accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
        if accepted and isinstance(response, web.Response) and isinstance(response.body, bytes) and response.body:
            response.body = await squeeze(response.body)
            response.headers[hdrs.CONTENT_ENCODING] = "gzip"
        return response

    return wrapped


async def squeeze(body: bytes) -> bytes:
    """`body` as a gzip member (no file name or time in the header, so equal bodies give equal bytes)."""
    level = 3 if len(body) <= LARGE else 1
    if len(body) <= IN_THREAD:
        return igzip.compress(body, compresslevel=level, mtime=0)
    return await asyncio.to_thread(igzip.compress, body, compresslevel=level, mtime=0)
