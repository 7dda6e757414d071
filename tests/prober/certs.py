"""Test certificates made with the openssl command line: a CA, and leaves that are good, expired,
for the wrong host, or self-signed."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
CA_CONFIG = """
[ca]
default_ca = local
[local]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = anything
copy_extensions = copy
[anything]
commonName = supplied
"""


@dataclass
class Certs:
    ca: Path
    good: tuple[Path, Path]
    expired: tuple[Path, Path]
    wrong_host: tuple[Path, Path]
    self_signed: tuple[Path, Path]


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _csr(d: Path, name: str, san: str) -> None:
    _run("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName={san}", cwd=d)


def make(d: Path) -> Certs:
    """Write every certificate into directory d."""
    _run("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=upwatch test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "ca.cnf").write_text(CA_CONFIG.format(dir=d))
    local = "IP:127.0.0.1,DNS:localhost"
    for name, san, dates in (("good", local, ["-days", "90"]),
                             ("expired", local, ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]),
                             ("wrong", "DNS:other.test", ["-days", "90"])):
        _csr(d, name, san)
        _run("ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
             "-in", f"{name}.csr", "-out", f"{name}.pem", *dates, cwd=d)
    _run("req", "-x509", *EC, "-keyout", "self.key", "-out", "self.pem", "-days", "30", "-subj", "/CN=localhost",
         "-addext", f"subjectAltName={local}", cwd=d)

    def pair(name: str) -> tuple[Path, Path]:
        return d / f"{name}.pem", d / f"{name}.key"

    return Certs(d / "ca.pem", pair("good"), pair("expired"), pair("wrong"), pair("self"))
