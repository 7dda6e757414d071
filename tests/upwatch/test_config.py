import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from prober.checks import dns, http, push, tcp
from upwatch import config
from upwatch.config import ConfigError
from upwatch.config.endpoints import Endpoint

CONFIG_DIR = Path(__file__).parent.parent / "fixtures" / "config"
BAD = sorted(CONFIG_DIR.glob("bad-*.yaml"))


def load_bad(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    return str(caught.value).replace(f"{CONFIG_DIR}/", "")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_is_reported_with_file_line_and_key(path: Path) -> None:
    expected = path.with_suffix(".txt").read_text().strip()
    assert load_bad(path) == expected


def test_good_config_loads_with_defaults_and_substitution() -> None:
    cfg = config.load(CONFIG_DIR / "good.yaml", environ={"API_TOKEN": "s3cret"})
    api, web, db, cron, price = cfg.endpoints
    assert api.interval == timedelta(seconds=30)  # from defaults
    assert web.interval == timedelta(minutes=1)  # endpoint wins over defaults
    assert api.options == http.Options(url="https://api.example.test/health", expected_status="200-299",
                                       headers={"User-Agent": "upwatch-test", "Authorization": "Bearer s3cret"})
    assert web.options.method == "HEAD" and web.depends_on == ["api"]
    assert db.kind == "tcp" and db.target == "127.0.0.1:5432" and db.options == tcp.Options(host="127.0.0.1", port=5432)
    assert cron.options == push.Options(period=timedelta(hours=1), grace=timedelta(minutes=5))
    assert price.target == "http://shop.example.test/price?currency=$USD&region=eu"
    assert cfg.alerting.smtp.host == "localhost"
    assert cfg.storage.retention.probe_results == timedelta(days=30)
    assert cfg.storage.retention.request_logs == timedelta(days=30)


def test_env_default_is_used_only_when_variable_is_unset_or_empty() -> None:
    text = "alerting:\n  smtp:\n    host: ${H:-fallback}\n"
    assert config.parse(text, "x.yaml", {"H": "mail.test"}).alerting.smtp.host == "mail.test"
    assert config.parse(text, "x.yaml", {"H": ""}).alerting.smtp.host == "fallback"
    assert config.parse(text, "x.yaml", {}).alerting.smtp.host == "fallback"


def test_environment_overrides_the_file() -> None:
    text = "alerting:\n  smtp:\n    host: file.test\n    port: 25\n"
    env = {"UPWATCH_SMTP_HOST": "env.test", "UPWATCH_SMTP_PORT": "2525", "UPWATCH_SMTP_TO": "a@x.test, b@x.test",
           "UPWATCH_SMTP_TLS": "starttls", "UPWATCH_DATABASE_URL": "postgresql://u@db/upwatch",
           "UPWATCH_LOG_LEVEL": "debug"}
    cfg = config.parse(text, "x.yaml", env)
    assert (cfg.alerting.smtp.host, cfg.alerting.smtp.port) == ("env.test", 2525)
    assert cfg.alerting.smtp.recipients == ["a@x.test", "b@x.test"]
    assert cfg.alerting.smtp.tls == "starttls"
    assert cfg.storage.database_url == "postgresql://u@db/upwatch"
    assert cfg.log_level == "DEBUG"


def test_bad_environment_override_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse("{}", "x.yaml", {"UPWATCH_SMTP_PORT": "lots"})
    assert str(caught.value) == ("$UPWATCH_SMTP_PORT: alerting.smtp.port: Input should be a valid integer, "
                                 "unable to parse string as an integer (got 'lots')")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path / "missing.yaml", environ={})
    assert str(caught.value) == f"{tmp_path}/missing.yaml: cannot read config file: No such file or directory"


def test_config_path_comes_from_argument_then_env_then_default() -> None:
    assert config.resolve_path("a.yaml", {"UPWATCH_CONFIG": "b.yaml"}) == Path("a.yaml")
    assert config.resolve_path(None, {"UPWATCH_CONFIG": "b.yaml"}) == Path("b.yaml")
    assert config.resolve_path(None, {}) == Path("upwatch.yaml")


def test_empty_file_gives_defaults() -> None:
    cfg = config.parse("", "empty.yaml", {})
    assert cfg.endpoints == [] and cfg.push.listen == "127.0.0.1:8080"


def test_example_config_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "upwatch.yaml"
    cfg = config.load(example, environ={})
    assert len(cfg.endpoints) >= 3


def test_a_kind_default_is_given_only_to_endpoints_of_a_kind_that_has_the_key() -> None:
    text = ("defaults:\n  timeout: 3s\n  record_type: AAAA\n  headers: {User-Agent: upwatch}\n  grace: 2m\n"
            "endpoints:\n  - {name: web, url: 'http://web.test/', headers: {X-Own: '1'}}\n"
            "  - {name: resolver, kind: dns, host: example.test}\n"
            "  - {name: db, kind: tcp, host: db.test, port: 5432}\n"
            "  - {name: cron, kind: push, period: 1h}\n")
    web, resolver, db, cron = config.parse(text, "x.yaml", {}).endpoints
    assert web.options.headers == {"User-Agent": "upwatch", "X-Own": "1"}  # merged, as before
    assert resolver.options == dns.Options(host="example.test", record_type="AAAA")
    assert db.options == tcp.Options(host="db.test", port=5432)
    assert cron.options == push.Options(period=timedelta(hours=1), grace=timedelta(minutes=2))
    assert {e.timeout for e in (web, resolver, db, cron)} == {timedelta(seconds=3)}  # common keys go to every kind


def test_an_endpoint_dumps_flat_and_validates_back_from_its_dump() -> None:
    cfg = config.load(CONFIG_DIR / "good.yaml", environ={"API_TOKEN": "s3cret"})
    for endpoint in cfg.endpoints:
        dumped = endpoint.model_dump(mode="json", by_alias=True)
        assert "options" not in dumped and dumped["kind"] == endpoint.kind
        assert Endpoint.model_validate(dumped) == endpoint
    assert cfg.endpoints[2].model_dump(mode="json")["port"] == 5432


def test_the_check_kinds_do_not_import_the_http_client_until_a_check_runs() -> None:
    # upwatch.config imports the check kinds for their Options; aiohttp loads only where a check runs.
    # (The channel registry, which config imports too, does load it: the webhook channel is built on it.)
    code = "import sys, prober.checks; print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'yarl')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parents[2])
    assert done.stdout.strip() == "[]"


def test_the_documented_endpoints_example_is_valid() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "prober.md").read_text()
    example = doc.split("## Endpoints\n\n```yaml\n", 1)[1].split("```", 1)[0]
    example = example.replace("/etc/ssl/private-ca.pem", str(CONFIG_DIR / "good.yaml"))  # any file that exists
    cfg = config.parse(example, "docs/prober.md", {"API_TOKEN": "t"})
    assert [e.kind for e in cfg.endpoints] == ["http", "tcp", "dns", "push"]
    assert [e.target for e in cfg.endpoints[1:]] == ["db.internal:5432", "api.example.com A", "push"]
