from pathlib import Path

import psycopg

from upwatch.embedded import EmbeddedPostgres


def test_embedded_server_starts_is_reused_and_stops(server_dir: Path) -> None:
    first = EmbeddedPostgres(server_dir / "pgdata", settings={"fsync": "off"})
    url = first.start()
    try:
        assert first.started_here
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("upwatch",)
        second = EmbeddedPostgres(server_dir / "pgdata")
        assert second.start() == url
        assert not second.started_here  # another process's server is reused, never restarted
    finally:
        first.stop()
    assert not first.running()
    # Data survives a restart.
    again = EmbeddedPostgres(server_dir / "pgdata")
    again.start()
    try:
        assert again.started_here
    finally:
        again.stop()


def test_deep_data_dir_gets_a_short_socket_path(server_dir: Path) -> None:
    deep = server_dir.joinpath(*["d" * 20] * 5) / "pgdata"
    server = EmbeddedPostgres(deep, settings={"fsync": "off"})
    url = server.start()
    try:
        assert "host=/tmp/upwatch-pg-" in url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
