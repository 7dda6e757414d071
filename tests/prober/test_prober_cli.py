import asyncio
import importlib.util
import os
import signal
import sys
from pathlib import Path

from tests.prober import targets
from tests.prober.conftest import fetch

REPO = Path(__file__).parents[2]


async def upwatch(*args: str, env: dict[str, str] | None = None,
                  until_killed: float | None = None) -> tuple[int, str, str]:
    """Run the CLI; with `until_killed`, SIGTERM it that many seconds after the daemon says it started
    (not after a fixed time: on a loaded machine the start alone can take longer)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "upwatch.cli", *args, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    early = b""
    if until_killed is not None:
        assert proc.stderr is not None
        early = await _until_started(proc.stderr)
        await asyncio.sleep(until_killed)
        proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), (early + err).decode()


async def _until_started(stream: asyncio.StreamReader, limit_s: float = 30.0) -> bytes:
    seen = b""
    async with asyncio.timeout(limit_s):
        while line := await stream.readline():
            seen += line
            if b"prober started" in line:
                break
    return seen


async def test_probe_url_prints_the_phase_breakdown() -> None:
    async with targets.serve(targets.app()) as base:
        code, out, err = await upwatch("probe", f"{base}/redirect")
    assert code == 0, err
    assert "result      OK" in out and "status      200" in out and f"final url   {base}/ok" in out
    assert "phases      dns" in out and "| ttfb" in out and "| total" in out


async def test_probe_by_name_reports_failures_and_exits_one(tmp_path: Path) -> None:
    async with targets.serve(targets.app()) as base:
        config = tmp_path / "upwatch.yaml"
        config.write_text(f"endpoints:\n  - name: api\n    url: {base}/ok\n    assertions:\n"
                          f"      - '[BODY].status == DOWN'\n      - status: 200\n")
        code, out, err = await upwatch("--config", str(config), "probe", "api")
        missing = await upwatch("--config", str(config), "probe", "apj")
    assert code == 1, err
    assert "result      FAIL  assertion: [BODY].status == DOWN: expected == DOWN, got UP" in out
    assert "pass        status in 200" in out
    assert missing[0] == 2 and "no endpoint named 'apj'" in missing[2] and "did you mean 'api'?" in missing[2]


async def test_prober_daemon_runs_only_its_shard(tmp_path: Path, database_url: str) -> None:
    names = [f"ep{i}" for i in range(12)]
    async with targets.serve(targets.app()) as base:
        config = tmp_path / "upwatch.yaml"
        endpoints = "".join(f"  - name: {n}\n    url: {base}/ok\n    interval: 1s\n" for n in names)
        config.write_text(f"endpoints:\n{endpoints}prober:\n  data_dir: {tmp_path / 'data'}\n"
                          f"push:\n  listen: 127.0.0.1:{targets.closed_port()}\n")
        code, _, err = await upwatch("--config", str(config), "prober", "--shard", "2/3",
                                     env={"UPWATCH_DATABASE_URL": database_url}, until_killed=2.5)
        bad = await upwatch("--config", str(config), "prober", "--shard", "4/3")
    assert code == 0, err
    assert f"loop={'uvloop' if importlib.util.find_spec('uvloop') else 'asyncio'}" in err  # uvloop when installed
    from prober.scheduler import Shard

    probed = {r[0] for r in fetch(database_url, "SELECT DISTINCT e.name FROM probe_results r"
                                                " JOIN endpoints e ON e.id = r.endpoint_id")}
    assert probed == {n for n in names if Shard(2, 3).owns(n)} and probed
    assert bad[0] == 2 and "upwatch: --shard: shard '4/3' must be i/n with 1 <= i <= n, e.g. 2/3" in bad[2]
