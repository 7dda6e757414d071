"""GET /api/v1/reports over real HTTP: a key reads its own service's report, the admin any; JSON equals
the report data.build makes, the PDF is a PDF; refusals name the field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.push.conftest import Api
from upwatch.reports import data, document

from .conftest import FROM, POPPLER, TO, Seeded, pdf_pages, pdf_text

RANGE = {"from": FROM.isoformat(), "to": TO.isoformat()}


async def get(api: Api, auth: str | None, **params: str) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {auth}"} if auth else {}
    resp = await api.client.get("/reports", params=params, headers=headers)
    body = await resp.read()
    return resp.status, await resp.json() if resp.content_type == "application/json" else body, resp.content_type


def without_generated_at(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "generated_at"}


async def test_a_key_reads_its_own_report_as_json(api: Api, seeded: Seeded) -> None:
    status, body, _ = await get(api, seeded.key, **RANGE)
    assert status == 200, body
    async with api.pool.connection() as conn:
        expected = document.as_dict(await data.build(conn, "shop", FROM, TO))
    assert without_generated_at(body) == without_generated_at(expected)
    assert body["summary"]["requests"] == len(seeded.records)


async def test_the_admin_names_the_service(api: Api, seeded: Seeded) -> None:
    admin = api.admin["Authorization"].removeprefix("Bearer ")
    status, body, _ = await get(api, admin, service="shop", **RANGE)
    assert (status, body["service"], body["summary"]["requests"]) == (200, "shop", len(seeded.records))
    status, body, _ = await get(api, admin, service="other", **RANGE)
    assert (status, body["service"], body["summary"]["requests"]) == (200, "other", 30)
    status, body, _ = await get(api, admin, **RANGE)
    assert (status, body["details"]) == (422, [{"field": "service", "reason": "required with the admin token"}])
    status, body, _ = await get(api, admin, service="nope", **RANGE)
    assert (status, body["error"]) == (404, "no service named 'nope'")


async def test_a_key_cannot_read_another_service(api: Api, seeded: Seeded) -> None:
    status, body, _ = await get(api, seeded.key, service="other", **RANGE)
    assert (status, body["error"]) == (403, "this key may only read its own service")
    status, _, _ = await get(api, None, **RANGE)
    assert status == 401


async def test_pdf_format_answers_a_pdf(api: Api, seeded: Seeded, tmp_path: Any) -> None:
    status, body, content_type = await get(api, seeded.key, format="pdf", **RANGE)
    assert (status, content_type, body[:5]) == (200, "application/pdf", b"%PDF-")
    resp = await api.client.get("/reports", params={"format": "pdf", "from": f"{FROM:%Y-%m-%d}",
                                                    "to": f"{TO - timedelta(days=1):%Y-%m-%d}"},
                                headers={"Authorization": f"Bearer {seeded.key}"})
    assert resp.headers["Content-Disposition"] == (
        f'attachment; filename="report-shop-{FROM:%Y%m%d}T00-{TO:%Y%m%d}T00.pdf"')
    assert await resp.read() != b""
    if POPPLER:  # else the PDF's content is checked by test_report_cli only where poppler is
        out = tmp_path / "api.pdf"
        out.write_bytes(body)
        assert pdf_pages(out) == 4 and "Report: shop" in pdf_text(out, 1)


@pytest.mark.parametrize(("params", "field", "reason"), [
    ({"from": (FROM + timedelta(minutes=5)).isoformat(), "to": TO.isoformat()}, "from", "must be on a whole UTC hour"),
    ({"from": TO.isoformat(), "to": FROM.isoformat()}, "from", "must be before to"),
    ({"from": "last week", "to": TO.isoformat()}, "from", "'last week' is not a date"),
    ({"from": FROM.isoformat()}, "to", "Field required"),
    ({**RANGE, "format": "csv"}, "format", "Input should be 'json' or 'pdf'"),
], ids=["not-whole-hour", "from-after-to", "bad-date", "no-to", "bad-format"])
async def test_bad_queries_are_422_naming_the_field(api: Api, params: dict[str, str], field: str,
                                                    reason: str) -> None:
    key = await api.service("shop")
    status, body, _ = await get(api, key, **params)
    assert status == 422, body
    assert body["details"][0]["field"] == field and reason in body["details"][0]["reason"], body
