"""A replay whose target answers garbage: aiohttp's error quotes the URL, and neither the stored replay
nor the log line keeps the override's secret query value."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from tests.push.conftest import Api
from tests.push.test_masking import reader_rows

MARK = "s3cr3t"


@pytest.fixture
async def garbage() -> AsyncIterator[int]:
    """A real TCP server on 127.0.0.1 that answers every request with a malformed HTTP response."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_a_failed_replay_keeps_no_secret_in_its_error(api: Api, database_url: str, garbage: int,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    base = f"http://127.0.0.1:{garbage}"
    key = await api.service("shop", base_url=base)
    resp = await api.client.post("/logs", json={"method": "GET", "url": f"{base}/x?page=1"}, headers={"X-API-Key": key})
    assert resp.status == 202
    await api.writer.flush()
    ((log_id,),) = await api.rows("SELECT id FROM request_logs")
    resp = await api.client.post(f"/logs/{log_id}/replay", headers=api.admin,
                                 json={"url": f"{base}/x?signature={MARK}u&page=1"})
    assert resp.status == 201, await resp.text()
    answer = await resp.json()
    assert answer["status_code"] is None and "/x?signature=***&page=1" in answer["error"]
    rows = reader_rows(database_url, "request_replays")
    assert len(rows) == 1 and "ClientResponseError" in rows[0] and MARK not in rows[0]
    assert "replay log_id=" in caplog.text and MARK not in caplog.text
