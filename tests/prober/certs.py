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


@dataclass
class Chain:
    """A root CA, an intermediate that expires before the leaf it signed, the leaf (for 127.0.0.1 and
    localhost), and a client certificate signed by the root."""

    root: Path
    intermediate: Path
    leaf: tuple[Path, Path]  # the leaf certificate then the intermediate, and the leaf's key
    client: tuple[Path, Path]


INTERMEDIATE_DAYS = 20
LEAF_DAYS = 60


def _sign(d: Path, name: str, issuer: str, days: int, *extensions: str) -> None:
    """Sign name.csr with issuer.pem/issuer.key into name.pem."""
    (d / f"{name}.ext").write_text("\n".join(extensions) + "\n")
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
         "-CAcreateserial", "-days", str(days), "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


def make_chain(d: Path) -> Chain:
    """Write a root -> intermediate -> leaf chain and a client certificate into directory d."""
    _run("req", "-x509", *EC, "-keyout", "root.key", "-out", "root.pem", "-days", "365",
         "-subj", "/CN=upwatch test root", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    _run("req", *EC, "-keyout", "intermediate.key", "-out", "intermediate.csr",
         "-subj", "/CN=upwatch test intermediate", cwd=d)
    _sign(d, "intermediate", "root", INTERMEDIATE_DAYS, "basicConstraints=critical,CA:TRUE,pathlen:0",
          "keyUsage=critical,keyCertSign")
    _run("req", *EC, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost", cwd=d)
    _sign(d, "leaf", "intermediate", LEAF_DAYS, "subjectAltName=IP:127.0.0.1,DNS:localhost",
          "extendedKeyUsage=serverAuth")
    (d / "leaf-chain.pem").write_text((d / "leaf.pem").read_text() + (d / "intermediate.pem").read_text())
    _run("req", *EC, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=upwatch test client", cwd=d)
    _sign(d, "client", "root", 30, "extendedKeyUsage=clientAuth")
    return Chain(d / "root.pem", d / "intermediate.pem", (d / "leaf-chain.pem", d / "leaf.key"),
                 (d / "client.pem", d / "client.key"))
