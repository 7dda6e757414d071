"""The push API: other services push request logs and check results; users query and analyse them.

`create_app(runtime, writer)` returns the aiohttp application; `setup` is the
prober listener's extension hook (prober.app.EXTENSIONS) that mounts it at /api/v1.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from push.app import create_app

__all__ = ["PREFIX", "create_app", "setup"]

PREFIX = "/api/v1"


def setup(app: web.Application, runtime: Any, writer: Any) -> None:
    """Mount the push API at /api/v1 on the prober's listener (an Extension for prober.app)."""
    app.add_subapp(PREFIX, create_app(runtime, writer))
