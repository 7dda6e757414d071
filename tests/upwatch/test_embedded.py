from pathlib import Path

import psycopg

from upwatch.embedded import EmbeddedPostgres


def test_embedded_server_starts_is_reused_and_stops(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "pgdata", settings={"fsync": "off"})
    url = first.start()
    try:
        assert first.started_here
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("upwatch",)
        second = EmbeddedPostgres(tmp_path / "pgdata")
        assert second.start() == url
        assert not second.started_here  # another process's server is reused, never restarted
    finally:
        first.stop()
    assert not first.running()
    # Data survives a restart.
    again = EmbeddedPostgres(tmp_path / "pgdata")
    again.start()
    try:
        assert again.started_here
    finally:
        again.stop()


def test_deep_data_dir_gets_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d" * 20] * 5) / "pgdata"
    server = EmbeddedPostgres(deep, settings={"fsync": "off"})
    url = server.start()
    try:
        assert "host=/tmp/upwatch-pg-" in url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
