"""The push API: other services push request logs and check results; users query and analyse them.

`create_app(runtime, writer)` returns the aiohttp application the prober mounts at /api/v1.
"""

from prober.push.app import create_app

__all__ = ["create_app"]
