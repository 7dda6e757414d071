"""The push API: other services push request logs and check results; users query and analyse them.

`create_app(runtime, writer)` returns the aiohttp application and `mount(root, app)` serves it at
PREFIX; `setup` is the prober listener's extension hook (prober.app.EXTENSIONS) that does both.
"""

from __future__ import annotations

from aiohttp import web

from push.app import PREFIX, create_app, mount
from push.context import Writer
from upwatch.runtime import Runtime

__all__ = ["PREFIX", "create_app", "mount", "setup"]


def setup(app: web.Application, runtime: Runtime, writer: Writer) -> None:
    """Mount the push API at /api/v1 on the prober's listener (an Extension for prober.app)."""
    mount(app, create_app(runtime, writer))
