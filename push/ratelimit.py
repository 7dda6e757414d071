"""Per-key token buckets: `rate` requests per second with a burst of one second's worth."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    """Answers whether a key may make a request now, and if not, how long until it may."""

    def __init__(self, rate_per_s: float, *, clock: Callable[[], float] = time.monotonic):
        self.rate = rate_per_s
        self.burst = max(1.0, rate_per_s)
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}

    def acquire(self, key: int) -> float:
        """0 if allowed (a token is taken), else the seconds to wait before retrying."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """A Retry-After header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))
