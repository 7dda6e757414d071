"""External check results: healthchecks.io-style pings into probe_results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.push.conftest import Api

RESULTS = "SELECT ok, latency_ms, error, error_kind, source FROM probe_results ORDER BY time, error NULLS FIRST"


async def test_post_with_result_lands_in_probe_results(api: Api) -> None:
    resp = await api.client.post("/checks/nightly-backup", json={"ok": False, "latency_ms": 1500, "error": "disk full"})
    assert resp.status == 202, await resp.text()
    assert await api.rows(RESULTS) == [(False, 1500.0, "disk full", "reported", "push")]
    (endpoint,), = await api.rows("SELECT e.name FROM probe_results p JOIN endpoints e ON e.id = p.endpoint_id")
    assert endpoint == "nightly-backup"


async def test_get_pings_and_fail_variant(api: Api) -> None:
    assert (await api.client.get("/checks/nightly-backup")).status == 202
    assert (await api.client.get("/checks/nightly-backup/fail")).status == 202
    assert (await api.client.post("/checks/nightly-backup/fail", data="exit code 3",
                                  headers={"Content-Type": "text/plain"})).status == 202
    rows = await api.rows("SELECT ok, error FROM probe_results ORDER BY ok DESC, error")
    assert rows == [(True, None), (False, "exit code 3"), (False, "failure reported by the pushing service")]


async def test_start_then_success_measures_the_run(api: Api) -> None:
    assert (await api.client.post("/checks/nightly-backup/start")).status == 202
    assert await api.rows("SELECT count(*) FROM probe_results") == [(0,)]
    assert (await api.client.post("/checks/nightly-backup")).status == 202
    ((ok, latency),) = await api.rows("SELECT ok, latency_ms FROM probe_results")
    assert ok is True and latency is not None and latency >= 0


async def test_unknown_endpoints_are_404(api: Api) -> None:
    # unknown name, an endpoint of another kind, an unknown action
    for path in ("/checks/nope", "/checks/web", "/checks/nightly-backup/other"):
        assert (await api.client.post(path)).status == 404, path


async def test_bearer_in_endpoint_config_is_required(api: Api) -> None:
    assert (await api.client.get("/checks/guarded-job")).status == 401
    assert (await api.client.get("/checks/guarded-job", headers={"Authorization": "Bearer nope"})).status == 401
    assert (await api.client.get("/checks/guarded-job", headers={"Authorization": "Bearer job-token"})).status == 202
    assert (await api.client.get("/checks/guarded-job?token=job-token")).status == 202


BAD_RESULTS = [
    ({"json": {"ok": "yes"}}, 422), ({"json": {"latency_ms": -5}}, 422), ({"json": {"extra": 1}}, 422),
    ({"data": "{", "headers": {"Content-Type": "application/json"}}, 400),
    ({"data": "x", "headers": {"Content-Type": "image/png"}}, 415),
    ({"json": {"timestamp": "2999-01-01T00:00:00Z"}}, 422), ({"json": {"timestamp": "0001-01-01T00:00:00Z"}}, 422),
]


async def test_bad_check_results_are_refused(api: Api) -> None:
    for kwargs, status in BAD_RESULTS:
        resp = await api.client.post("/checks/nightly-backup", **kwargs)  # type: ignore[arg-type]
        assert resp.status == status, kwargs
    assert await api.rows("SELECT count(*) FROM probe_results") == [(0,)]


async def test_a_pushed_result_is_stored_with_its_time_location_and_prober(api: Api) -> None:
    stamp = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    resp = await api.client.post("/checks/nightly-backup", json={"timestamp": stamp.isoformat()})
    assert resp.status == 202, await resp.text()
    prober = api.runtime.config.prober
    rows = await api.rows("SELECT time, location, prober, ok, error, error_kind FROM probe_results")
    assert rows == [(stamp, prober.location, prober.instance, True, None, None)]
