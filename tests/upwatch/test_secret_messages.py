"""Config errors and the `upwatch check-config` listing say what is wrong without quoting a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.upwatch.test_cli import upwatch
from upwatch import config
from upwatch.config import ConfigError

MARK = "s3cr3t"

BAD = f"""
endpoints:
  - name: a
    url: "ftp://bob:{MARK}u@api.test/x?token={MARK}q&page=2"
    auth: {{basic: {{username: u, password: 90210}}}}  # a number: no longer echoed as (got 90210)
  - name: b
    url: https://api.test/
    timeout: "${{PROBE_TIMEOUT}}"
    headers: {{Authorization: ["Bearer {MARK}h"]}}
  - name: c
    kind: push
    period: 1m
    auth: {{bearer: [{MARK}b]}}
alerting:
  smtp: {{host: mail.test, password: ["{MARK}p"]}}
"""


def test_config_errors_name_file_line_and_key_but_no_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(BAD, "upwatch.yaml", {"PROBE_TIMEOUT": f"{MARK}env"})
    assert str(caught.value).splitlines() == [
        "upwatch.yaml:4: endpoints[0].url: 'ftp://***@api.test/x?token=***&page=2' must be an absolute http:// "
        "or https:// URL",
        "upwatch.yaml:5: endpoints[0].auth.basic.password: Input should be a valid string",
        "upwatch.yaml:8: endpoints[1].timeout: *** is not a duration (use e.g. 15s, 5m, 1h, 7d)",
        "upwatch.yaml:9: endpoints[1].headers.Authorization: Input should be a valid string",
        "upwatch.yaml:13: endpoints[2].auth.bearer: Input should be a valid string",
        "upwatch.yaml:15: alerting.smtp.password: Input should be a valid string",
    ]
    assert MARK not in str(caught.value)


def test_other_errors_still_quote_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse("push: {rate_limit_per_key: 0}\nendpoints: [{name: a, url: 'http://h/', timeout: soon}]\n",
                     "upwatch.yaml", {})
    assert str(caught.value).splitlines() == [
        "upwatch.yaml:1: push.rate_limit_per_key: Input should be greater than 0 (got 0)",
        "upwatch.yaml:2: endpoints[0].timeout: 'soon' is not a duration (use e.g. 15s, 5m, 1h, 7d)",
    ]


def test_check_config_lists_and_reports_without_secrets(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(f"endpoints:\n  - {{name: api, url: 'https://bob:{MARK}u@api.test/x?api_key={MARK}q&page=2'}}\n"
                    f"  - {{name: tenant, url: 'https://api.test/t?tenant_ref={MARK}t'}}\n"
                    "push: {secret_names: [tenant-ref]}\n")
    listed = upwatch("--config", str(good), "check-config")
    assert listed.returncode == 0, listed.stderr
    assert "https://***@api.test/x?api_key=***&page=2" in listed.stdout and "tenant_ref=***" in listed.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    reported = upwatch("--config", str(bad), "check-config", env={"PROBE_TIMEOUT": f"{MARK}env"})
    assert reported.returncode == 1 and "endpoints[0].auth.basic.password" in reported.stderr
    assert "90210" not in reported.stderr
    assert MARK not in listed.stdout + listed.stderr + reported.stdout + reported.stderr
