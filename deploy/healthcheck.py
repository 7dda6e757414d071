"""Container healthchecks of the upwatch image; exit 0 when healthy, else 1 with one line saying why.

    python healthcheck.py http URL   the prober: URL (its /healthz) answers 2xx within 3 s
    python healthcheck.py db         detector and alerter, which have no listener: the database in
                                     $UPWATCH_DATABASE_URL accepts a connection within 3 s and is
                                     migrated. It does not prove the daemon's loop makes progress;
                                     a daemon that crashes exits, and compose's restart policy
                                     starts it again.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3


def check_http(url: str) -> str | None:
    """None when the URL answers 2xx, else the reason."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (fixed local URL)
            return None if 200 <= response.status < 300 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as e:
        return f"{url} answered {e.code}"
    except (urllib.error.URLError, OSError) as e:
        return f"{url} unreachable: {getattr(e, 'reason', e)}"


def check_db(url: str | None) -> str | None:
    """None when the database accepts a connection and has applied migrations, else the reason."""
    if not url:
        return "UPWATCH_DATABASE_URL is not set"
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=TIMEOUT_S) as conn:
            row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
            if not row or not row[0]:
                return "database reachable but not migrated yet"
            count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
            return None if count and count[0] > 0 else "database reachable but not migrated yet"
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"database unreachable: {first}"


def main(argv: list[str]) -> int:
    """Run the check named by argv; print why it failed."""
    if len(argv) == 2 and argv[0] == "http":
        problem = check_http(argv[1])
    elif argv == ["db"]:
        problem = check_db(os.environ.get("UPWATCH_DATABASE_URL"))
    else:
        print("usage: healthcheck.py http URL | healthcheck.py db", file=sys.stderr)
        return 2
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
