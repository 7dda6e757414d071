import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from upwatch.embedded import POSTGRES_BIN_PATH, EmbeddedPostgres
from upwatch.hostdirs import copy_install
from upwatch.migrate import MigrationError, applied_versions, discover, migrate

EXPECTED_TABLES = {
    "endpoints", "probe_results", "probe_rollup_1m", "services", "api_keys", "request_logs", "request_rollup_1m",
    "detector_models", "incidents", "anomalies", "alert_state", "alerts", "maintenance_windows", "schema_migrations",
}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


async def test_migrations_create_the_schema_on_an_empty_database(empty_database_url: str) -> None:
    applied = await migrate(empty_database_url)
    assert applied == [m.name for m in discover()]
    assert tables(empty_database_url) >= EXPECTED_TABLES
    assert await applied_versions(empty_database_url) == [m.version for m in discover()]


async def test_rerunning_migrations_is_a_no_op(database_url: str) -> None:
    before = await applied_versions(database_url)
    assert await migrate(database_url) == []
    assert await applied_versions(database_url) == before


async def test_concurrent_migrate_calls_apply_each_migration_once(empty_database_url: str) -> None:
    results = await asyncio.gather(*(migrate(empty_database_url) for _ in range(4)))
    names = [name for result in results for name in result]
    assert sorted(names) == sorted(m.name for m in discover())
    assert await applied_versions(empty_database_url) == [m.version for m in discover()]


async def test_failed_migration_rolls_back_entirely(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_create_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_create_half.sql").write_text("CREATE TABLE half (id int);\nSELECT no_such_function();")
    with pytest.raises(MigrationError, match="0002_create_half failed and was rolled back"):
        await migrate(empty_database_url, directory=tmp_path)
    assert "good" in tables(empty_database_url)
    assert "half" not in tables(empty_database_url)
    assert await applied_versions(empty_database_url) == [1]


def test_misnamed_or_duplicate_migration_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_create_a.sql").write_text("")
    (tmp_path / "0001_create_b.sql").write_text("")
    with pytest.raises(MigrationError, match="version 1 is also used by"):
        discover(tmp_path)
    (tmp_path / "0001_create_b.sql").rename(tmp_path / "create-b.sql")
    with pytest.raises(MigrationError, match=r"NNNN_verb_object\.sql"):
        discover(tmp_path)


async def test_require_timescaledb_fails_clearly_without_it(empty_database_url: str, database_url: str,
                                                            pg_server) -> None:  # type: ignore[no-untyped-def]
    if pg_server.timescaledb(database_url):
        pytest.skip("server has TimescaleDB (UPWATCH_TEST_DATABASE_URL):"
                    " the plain-PostgreSQL path is not testable here")
    with pytest.raises(MigrationError, match="no timescaledb extension"):
        await migrate(empty_database_url, timescaledb="require")


def test_plain_and_timescale_paths_have_the_same_columns(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        cols = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'probe_results'"
            " ORDER BY ordinal_position"
        ).fetchall()
    assert [c[0] for c in cols][:4] == ["time", "endpoint_id", "id", "location"]


def test_reader_role_can_read_measurements_but_not_key_hashes(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET ROLE upwatch_reader")
        conn.execute("SELECT count(*) FROM probe_results")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT key_hash FROM api_keys")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM endpoints")


def test_timescaledb_path_makes_hypertables_with_compression(database_url: str, pg_server) -> None:  # type: ignore[no-untyped-def]
    if not pg_server.timescaledb(database_url):
        pytest.skip("needs UPWATCH_TEST_DATABASE_URL pointing at a server with the timescaledb extension")
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        ).fetchall()
        jobs = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'"
        ).fetchall()
    assert {r[0]: r[1] for r in rows} == {
        "probe_results": True, "probe_rollup_1m": True, "request_logs": True, "request_rollup_1m": True,
        "anomalies": False,
    }
    assert {j[0] for j in jobs} == {"probe_results", "probe_rollup_1m", "request_logs", "request_rollup_1m"}


# TimescaleDB loaded without shared_preload_libraries answers CREATE EXTENSION with FATAL
# ("extension "timescaledb" must be preloaded"), which ends the session. This stand-in is an
# installed extension whose script ends its own session the same way, on a real server.
FATAL_CONTROL = """\
comment = 'stands in for TimescaleDB installed but not preloaded'
default_version = '0.0'
relocatable = false
superuser = true
"""
FATAL_SCRIPT = "SELECT pg_terminate_backend(pg_backend_pid());\n"


@pytest.fixture
def unpreloaded_timescaledb(server_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A server whose timescaledb extension closes the connection that creates it."""
    bin_dir = copy_install(POSTGRES_BIN_PATH, server_dir / "site-packages")
    extensions = bin_dir.parent / "share" / "extension"
    (extensions / "timescaledb.control").write_text(FATAL_CONTROL)
    (extensions / "timescaledb--0.0.sql").write_text(FATAL_SCRIPT)
    server = EmbeddedPostgres(server_dir / "pg", bin_dir=bin_dir, settings={"fsync": "off"})
    server.start()
    yield server
    server.stop()


async def test_auto_falls_back_to_plain_tables_when_timescaledb_closes_the_connection(
        unpreloaded_timescaledb: EmbeddedPostgres, caplog: pytest.LogCaptureFixture) -> None:
    url = unpreloaded_timescaledb.url
    with caplog.at_level(logging.WARNING, logger="upwatch.migrate"):
        applied = await migrate(url, timescaledb="auto")
    assert applied == [m.name for m in discover()]
    assert tables(url) >= EXPECTED_TABLES
    assert "timescaledb installed but cannot be enabled" in caplog.text
    assert "terminating connection" in caplog.text
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None
    assert await migrate(url, timescaledb="auto") == []  # and again on the next start


async def test_require_reports_a_timescaledb_that_closes_the_connection(
        unpreloaded_timescaledb: EmbeddedPostgres) -> None:
    with pytest.raises(MigrationError, match=r"cannot create the timescaledb extension: .*terminating connection"):
        await migrate(unpreloaded_timescaledb.url, timescaledb="require")
