"""`upwatch check-config` lists every problem of a file in one run."""

from pathlib import Path

import pytest

from upwatch import cli

FIXTURE = Path(__file__).parent.parent / "fixtures" / "config" / "bad-url-with-other-problems.yaml"


def test_check_config_reports_a_url_without_scheme_with_the_other_problems(capsys: pytest.CaptureFixture[str],
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    assert cli.main(["--config", str(FIXTURE), "check-config"]) == 1
    printed = capsys.readouterr().err.strip().replace(f"{FIXTURE.parent}/", "")
    assert printed == FIXTURE.with_suffix(".txt").read_text().strip()
