"""The last endpoint ids the database gave this prober, kept on local disk.

Results name their endpoint by the id of its row in the endpoints table. When
the prober starts (or reloads) while the database is away, the config file
still says what to probe, and this file says under which ids: the endpoints
it names are probed and their results spooled, the others wait until the
database is back. The file is replaced atomically and readable only by its
owner; it is tied to the database it came from, so ids from another database
are never used.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

SNAPSHOT_NAME = "endpoint-ids.json"


class Snapshot:
    """`directory`/endpoint-ids.json: {"database", "saved_at", "ids": {name: id}}."""

    def __init__(self, directory: Path, database: str):
        self.path = directory / SNAPSHOT_NAME
        self.database = database  # db.describe(url): host:port/dbname, no credentials
        self._saved: dict[str, int] | None = None

    def save(self, ids: dict[str, int]) -> None:
        """Write `ids` (tmp file, fsync, rename, fsync of the directory); skipped when unchanged."""
        if ids == self._saved:
            return
        record = {"database": self.database, "saved_at": dt.datetime.now(dt.UTC).isoformat(), "ids": ids}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(record, separators=(",", ":")).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._saved = dict(ids)

    def load(self) -> dict[str, int]:
        """The saved ids, or {} (logged) when there are none usable."""
        try:
            record = json.loads(self.path.read_bytes())
            ids = {str(name): int(i) for name, i in record["ids"].items()}
            database = record["database"]
        except FileNotFoundError:
            logger.warning("no endpoint snapshot path=%s", self.path)
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            logger.error("endpoint snapshot unreadable, ignored path=%s error=%r", self.path, str(e))
            return {}
        if database != self.database:
            logger.warning("endpoint snapshot is of another database, ignored path=%s snapshot_database=%s",
                           self.path, database)
            return {}
        self._saved = ids
        return ids
