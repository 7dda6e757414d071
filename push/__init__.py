"""The push API: other services push request logs and check results; users query and analyse them.

`create_app(runtime, writer)` returns the aiohttp application; `setup` is the
prober listener's extension hook (prober.app.EXTENSIONS) that mounts it at /api/v1.
"""

from __future__ import annotations

from aiohttp import web

from push.app import create_app
from push.context import Writer
from upwatch.runtime import Runtime

__all__ = ["PREFIX", "create_app", "setup"]

PREFIX = "/api/v1"


def setup(app: web.Application, runtime: Runtime, writer: Writer) -> None:
    """Mount the push API at /api/v1 on the prober's listener (an Extension for prober.app)."""
    app.add_subapp(PREFIX, create_app(runtime, writer))
