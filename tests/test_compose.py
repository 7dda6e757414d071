"""docker-compose.yml, .env.example, the Dockerfile, deploy/ and docs/production.md agree with each other.

Docker is not available here, so these read the files the way compose and
Grafana would; the container healthcheck script is run for real.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from upwatch import __version__
from upwatch.config import ENV_OVERRIDES, parse

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
ENV_EXAMPLE = (ROOT / ".env.example").read_text(encoding="utf-8")
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
DOCS = (ROOT / "docs" / "production.md").read_text(encoding="utf-8")
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
# ${VAR}, ${VAR:-default}, ${VAR:?message} (compose, Grafana and upwatch all accept this form)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")
DAEMONS = ("prober", "detector", "alerter")


def assigned() -> dict[str, str]:
    """VAR=value lines of .env.example."""
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE, re.MULTILINE))


def variables(path: Path) -> set[str]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    return set(_VAR.findall("\n".join(lines)))


def test_every_variable_compose_and_upwatch_read_is_in_env_example() -> None:
    documented = assigned()
    used = variables(ROOT / "docker-compose.yml")
    assert used and used <= documented.keys(), used - documented.keys()
    mentioned = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE, re.MULTILINE))
    read_by_upwatch = set(ENV_OVERRIDES) | {"UPWATCH_CONFIG", "UPWATCH_READER_PASSWORD"}
    assert read_by_upwatch <= mentioned, read_by_upwatch - mentioned


def test_every_env_example_variable_has_a_comment_and_is_used() -> None:
    lines = ENV_EXAMPLE.splitlines()
    compose_vars = variables(ROOT / "docker-compose.yml")
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        if m:
            assert i > 0 and lines[i - 1].startswith("# "), f".env.example: {m.group(1)} has no comment above it"
            assert m.group(1) in compose_vars, f".env.example: {m.group(1)} is not used by docker-compose.yml"


def test_env_example_holds_placeholders_not_secrets() -> None:
    for name, value in assigned().items():
        if "PASSWORD" in name and value:
            assert value.startswith("change-me"), name


def test_config_variables_reach_the_containers() -> None:
    environment = SERVICES["prober"]["environment"]
    for name in variables(ROOT / "deploy" / "upwatch.yaml"):
        assert name in environment, f"deploy/upwatch.yaml reads {name} but compose does not pass it"
    grafana_env = SERVICES["grafana"]["environment"]
    for name in variables(ROOT / "grafana" / "provisioning" / "datasources" / "upwatch.yml"):
        assert name in grafana_env, f"the datasource reads {name} but the grafana service does not get it"


def test_deploy_config_is_valid_for_upwatch() -> None:
    environ = {k: str(v) for k, v in SERVICES["alerter"]["environment"].items() if "${" not in str(v)}
    environ.update({k: v for k, v in assigned().items() if v})
    config = parse((ROOT / "deploy" / "upwatch.yaml").read_text(), "deploy/upwatch.yaml", environ)
    assert config.push.listen == "0.0.0.0:8080"
    assert config.alerting.smtp.host == "mailpit" and config.storage.timescaledb == "require"
    hosts = {e.options.connects_to for e in config.endpoints}  # the host of a url, or host:
    assert hosts - {""} <= set(SERVICES), "an example endpoint points outside the compose network"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_and_restart_policy(name: str) -> None:
    service = SERVICES[name]
    assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert service.get("restart") == "unless-stopped"


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    for name in DAEMONS:
        assert SERVICES[name]["image"] == f"upwatch:{__version__}" and SERVICES[name]["build"] == "."
    (base,) = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base


def test_services_wait_for_a_healthy_database() -> None:
    for name in ("grafana", *DAEMONS):
        assert SERVICES[name]["depends_on"]["timescaledb"]["condition"] == "service_healthy", name
    assert "pg_isready" in " ".join(SERVICES["timescaledb"]["healthcheck"]["test"])


def test_daemons_run_their_module_from_the_dockerfile_image() -> None:
    assert re.search(r"^USER\s+(?!root)\w+", DOCKERFILE, re.MULTILINE), "the image must not run as root"
    assert "pip install ." in DOCKERFILE
    for name in DAEMONS:
        assert SERVICES[name]["command"] == ["python", "-m", name]
        assert (ROOT / name / "__main__.py").exists()
    copied = dict(re.findall(r"^COPY\s+(\S+)\s+(\S+)", DOCKERFILE, re.MULTILINE))
    assert copied["deploy/healthcheck.py"] == "/usr/local/lib/upwatch/healthcheck.py"
    for name in DAEMONS:
        test = SERVICES[name]["healthcheck"]["test"]
        assert "/usr/local/lib/upwatch/healthcheck.py" in test
    for source in copied:
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not ignored & {s.split("/")[0] for s in copied}, "the Dockerfile copies something .dockerignore drops"


def _host_path(volume: str) -> Path | None:
    source = volume.split(":")[0]
    return ROOT / source if source.startswith("./") else None


def test_mounted_files_exist_and_provisioning_is_read_only() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            path = _host_path(volume)
            if path is not None:
                assert path.exists(), f"{name} mounts missing {volume}"
                assert volume.endswith(":ro"), f"{name}: {volume} should be read-only"
    (mount,) = [v for v in SERVICES["grafana"]["volumes"] if v.startswith("./grafana/provisioning:")]
    assert mount == "./grafana/provisioning:/etc/grafana/provisioning:ro"
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana" / "provisioning" / home.removeprefix("/etc/grafana/provisioning/")).is_file()
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    inside = provider["providers"][0]["options"]["path"].removeprefix("/etc/grafana/provisioning/")
    assert list((ROOT / "grafana" / "provisioning" / inside).glob("*.json"))


def _published() -> dict[str, tuple[int, int]]:
    """service -> (default host port, container port)."""
    ports = {}
    for name, service in SERVICES.items():
        for spec in service.get("ports", []):
            m = re.fullmatch(r"(?:127\.0\.0\.1:)?\$\{\w+:-(\d+)\}:(\d+)", spec)
            assert m, f"{name}: port {spec} should be ${{VAR:-default}}:port"
            ports[name] = (int(m.group(1)), int(m.group(2)))
    return ports


def test_ports_are_as_documented() -> None:
    documented = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| `(\w+)` \| (\d+) \|", DOCS, re.MULTILINE)}
    published = _published()
    assert documented == {name: host for name, (host, _) in published.items()}
    assert published["grafana"][1] == 3000 and published["prober"][1] == 8080 and published["mailpit"][1] == 8025


def test_docs_cover_running_the_stack() -> None:
    for needed in ("docker compose up -d", "cp .env.example .env", "upwatch alerts test-email", "pg_dump",
                   "docker compose pull", *SERVICES):
        assert needed in DOCS, f"docs/production.md does not mention {needed!r}"
    for name in assigned():
        assert name in DOCS or name.startswith("UPWATCH_SMTP_"), f"docs/production.md does not mention {name}"


async def _healthcheck(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, str(HEALTHCHECK), *args, env=env,
                                                   stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    return process.returncode or 0, stderr.decode()


async def test_db_healthcheck_passes_on_a_migrated_database(database_url: str) -> None:
    assert await _healthcheck("db", env={"UPWATCH_DATABASE_URL": database_url}) == (0, "")


async def test_db_healthcheck_names_the_problem(empty_database_url: str) -> None:
    code, message = await _healthcheck("db", env={"UPWATCH_DATABASE_URL": empty_database_url})
    assert code == 1 and "not migrated" in message
    code, message = await _healthcheck("db", env={"UPWATCH_DATABASE_URL": "postgresql://u@127.0.0.1:1/x"})
    assert code == 1 and "database unreachable" in message
    code, message = await _healthcheck("db", env={})
    assert code == 1 and "UPWATCH_DATABASE_URL is not set" in message


async def test_http_healthcheck_follows_the_status() -> None:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=int(request.query.get("status", "200")))

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    async with TestServer(app, host="127.0.0.1") as server:
        assert await _healthcheck("http", str(server.make_url("/healthz"))) == (0, "")
        code, message = await _healthcheck("http", str(server.make_url("/healthz?status=503")))
        assert code == 1 and "answered 503" in message
    code, message = await _healthcheck("http", "http://127.0.0.1:1/healthz")
    assert code == 1 and "unreachable" in message
