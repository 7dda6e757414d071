"""`upwatch import gatus` end to end: in process through upwatch.cli.main, and once as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from upwatch.cli import main
from upwatch.importers import gatus

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gatus"
SOURCE = FIXTURES / "maintenance.yaml"
SUMMARY = """\
upwatch import gatus: 1 endpoint converted
not converted (5):
  endpoints[0].maintenance-windows[2].duration: 25h: upwatch's weekly windows last 1m to under 24h; not converted
  endpoints[0].maintenance-windows[3]: disabled; not converted
  endpoints[0].maintenance-windows[4]: start '3 pm' is not hh:mm; not converted
  endpoints[0].maintenance-windows[6]: 'Funday' is not a day such as Monday; not converted
  endpoints[0].maintenance-windows[7]: timezone 'Mars/Olympus' is not a time zone like Europe/Amsterdam; not converted
"""


def test_import_writes_a_config_that_check_config_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "upwatch.yaml"
    assert main(["import", "gatus", str(SOURCE), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == SUMMARY + f"check {out} with: upwatch check-config -c {out}\n"
    assert out.read_text() == gatus.render(gatus.convert(gatus.read(SOURCE)), str(SOURCE))
    assert main(["check-config", "-c", str(out)]) == 0
    assert f"{out}: OK, 1 endpoints (1 enabled)" in capsys.readouterr().out


def test_import_without_output_prints_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "gatus", str(SOURCE)]) == 0
    captured = capsys.readouterr()
    assert captured.out == gatus.render(gatus.convert(gatus.read(SOURCE)), str(SOURCE))
    assert captured.err == SUMMARY + "check the output with: upwatch check-config -c FILE\n"


def test_import_keeps_an_existing_file_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "upwatch.yaml"
    out.write_text("# mine\n")
    assert main(["import", "gatus", str(SOURCE), "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"upwatch: {out} exists; pass --force to overwrite it\n"
    assert out.read_text() == "# mine\n"
    assert main(["import", "gatus", str(SOURCE), "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("# Converted from the Gatus configuration")


def test_import_of_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["import", "gatus", str(missing)]) == 2
    assert capsys.readouterr().err == f"upwatch: {missing}: cannot read: No such file or directory\n"


def test_import_and_check_config_as_commands(tmp_path: Path) -> None:
    out = tmp_path / "upwatch.yaml"
    run = subprocess.run([sys.executable, "-m", "upwatch.cli", "import", "gatus", str(FIXTURES / "endpoints.yaml"),
                          "-o", str(out)], capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith("upwatch import gatus: 8 endpoints converted\nnot converted (9):\n")
    check = subprocess.run([sys.executable, "-m", "upwatch.cli", "check-config", "-c", str(out)],
                           capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False)
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines()[1].split()[:3] == ["storefront", "http", "https://shop.example.test/health"]
    assert f"{out}: OK, 8 endpoints (7 enabled)" in check.stdout
