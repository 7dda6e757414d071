"""A channel type that exists only in the test suite: it appends each notice to a JSON-lines file.

It is written exactly as a channel module in alerter/channels/ would be (Options + send), and
tests register it with one line: monkeypatch.setitem(CHANNELS, "journal", journal_channel).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from alerter.records import Delivery, Notice


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    label: str = Field(default="upwatch", min_length=1)


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


async def send(notice: Notice, options: Options) -> Delivery:
    """Append one line per notice; a missing directory is permanent, other OS errors are retried."""
    line = json.dumps({"label": options.label, "subject": notice.subject, "message_id": notice.message_id,
                       "alerts": [a.payload.to_json() for a in notice.alerts]})
    try:
        await asyncio.to_thread(_append, options.path, line)
    except FileNotFoundError as e:
        return Delivery.failed(f"journal {options.path}: {e.strerror}", permanent=True)
    except OSError as e:
        return Delivery.failed(f"journal {options.path}: {e.strerror or e}")
    return Delivery.sent()
