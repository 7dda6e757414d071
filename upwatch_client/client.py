"""The buffer and background sender shared by the middlewares.

`record()` only appends to a bounded buffer (drops are counted when it is
full), so the host app is never slowed or broken. A daemon thread sends
batches every `flush_interval_s` or as soon as `batch_size` records wait,
backing off exponentially while the server is unreachable or busy.

Each batch carries its own `Idempotency-Key` and is retried as it was, with
the same key: when an answer is lost after the server stored the batch (a
dropped connection, a timeout), the retry is recognised and not stored again.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class Client:
    """Buffers request records and pushes them to `{base_url}/logs` with `api_key`."""

    def __init__(self, base_url: str, api_key: str, *, flush_interval_s: float = 5.0, batch_size: int = 500,
                 max_buffer: int = 10_000, timeout_s: float = 5.0, max_backoff_s: float = 60.0) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url must be an http:// or https:// URL, not {base_url!r}")
        self.url = base_url.rstrip("/") + "/logs"
        self.api_key = api_key
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.dropped = 0  # records refused because the buffer was full
        self.rejected = 0  # records the server refused for good (4xx other than 429)
        self.sent = 0
        self._buffer: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._retry: tuple[str, list[dict[str, Any]]] | None = None  # (key, batch) to send again as it was
        self._closed = False
        self._thread: threading.Thread | None = None
        self._backoff_s = 0.0

    def record(self, entry: dict[str, Any]) -> bool:
        """Queue one record (timestamp added if missing); False if the buffer is full. Never blocks on I/O."""
        entry.setdefault("timestamp", datetime.now(UTC).isoformat())
        with self._lock:
            if self._closed or len(self._buffer) >= self.max_buffer:
                self.dropped += 1
                return False
            self._buffer.append(entry)
            size = len(self._buffer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="upwatch-client", daemon=True)
                self._thread.start()
        if size >= self.batch_size:
            self._wake.set()
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until everything recorded so far is sent (or given up); False on timeout.

        In an asyncio app call it through a thread (`await asyncio.to_thread(client.flush)`).
        """
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._idle:
            while self._buffer or self._in_flight or self._retry:
                if self._thread is None or not self._thread.is_alive():
                    return not self._buffer and not self._retry
                left = deadline - time.monotonic()
                if (left <= 0 or not self._idle.wait(min(left, 0.1))) and time.monotonic() >= deadline:
                    return False
                self._wake.set()
        return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush, then stop the sender; later records are dropped. False if records were left unsent."""
        done = self.flush(timeout_s)
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        return done

    def _run(self) -> None:
        while True:
            if self._backoff_s:
                self._stop.wait(self._backoff_s)
            else:
                self._wake.wait(timeout=self.flush_interval_s)
            self._wake.clear()
            with self._lock:
                if self._retry is not None:
                    key, batch = self._retry
                    self._retry = None
                else:
                    key = uuid.uuid4().hex
                    batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                self._in_flight = len(batch)
                if not batch and self._closed:
                    return
            if batch:
                self._deliver(key, batch)
            with self._idle:
                self._in_flight = 0
                self._idle.notify_all()
                if len(self._buffer) >= self.batch_size or (self._closed and (self._buffer or self._retry)):
                    self._wake.set()

    def _deliver(self, key: str, batch: list[dict[str, Any]]) -> None:
        status = self._post(key, batch)
        if status == 202:
            self.sent += len(batch)
            self._backoff_s = 0.0
        elif status is not None and status not in _RETRYABLE:
            self.rejected += len(batch)
            logger.warning("upwatch refused a batch status=%d records=%d", status, len(batch))
        elif self._closed:
            self.rejected += len(batch)  # shutting down and the server is away: give up, counted
        else:
            self._backoff_s = min(self.max_backoff_s, max(0.5, self._backoff_s * 2))
            with self._lock:  # sent next, whole and with the same key, so a repeat is recognised
                self._retry = (key, batch)
            self._wake.set()

    def _post(self, key: str, batch: list[dict[str, Any]]) -> int | None:
        body = json.dumps(batch, default=str).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={  # noqa: S310 - http(s) only, checked in __init__
            "Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}", "Idempotency-Key": key})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # noqa: S310 - http(s) only, checked in __init__
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except (urllib.error.URLError, OSError, ValueError) as e:
            logger.debug("upwatch unreachable error=%r", e)
            return None


def client_ip(peer: str | None, forwarded: str | None) -> str | None:
    """The first address of a forwarded-for header when one is configured and present, else the peer;
    None when that is not an IP address (the server would refuse the record)."""
    candidate = forwarded.split(",")[0].strip() if forwarded else peer
    if not candidate:
        return None
    try:
        return str(ipaddress.ip_address(candidate.strip("[]")))
    except ValueError:
        return None


def make_record(*, method: str, path: str, route: str | None, status: int, started: float,
                ip: str | None, user_agent: str | None, user_id: Any = None, query: str = "",
                error: str | None = None) -> dict[str, Any]:
    """A record the push API accepts, with every field within its limits."""
    entry: dict[str, Any] = {
        "method": method[:16] if method.isalpha() else None, "path": path[:16384],
        "status_code": status if 100 <= status <= 599 else None,
        "latency_ms": max(0.0, (time.perf_counter() - started) * 1000),
    }
    optional = {"route": route and route[:1024], "source_ip": ip, "user_agent": user_agent and user_agent[:1024],
                "user_id": None if user_id is None else str(user_id)[:1024], "error": error and error[:16384]}
    entry.update({k: v for k, v in optional.items() if v})
    if query:
        entry["url"] = f"{path}?{query}"[:16384]
    return entry
