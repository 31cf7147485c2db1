"""The Compose deployment's structure: what `docker compose up` would run, without Docker."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadscore.app import create_app
from leadscore.core.config import ServiceSettings

from .proxy import ROOT, proxy_config

DEPLOY = ROOT / "deploy"


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = load("compose.yaml")
    found: dict[str, Any] = compose["services"]
    return found


@pytest.fixture(scope="module")
def routes() -> set[str]:
    """Every HTTP path the API serves, from its OpenAPI schema (the app built, never started)."""
    return set(create_app(ServiceSettings(demo=True)).openapi()["paths"])


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → host path (or volume name) of a service's volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def env_files(service: dict[str, Any]) -> list[str]:
    return [e["path"] if isinstance(e, dict) else e for e in service.get("env_file", [])]


def test_every_service_is_there_and_observability_is_optional(services: dict[str, Any]) -> None:
    assert {"api", "migrate", "nginx", "postgres", "redis"} <= services.keys()
    for optional in ("prometheus", "grafana"):
        assert services[optional]["profiles"] == ["observability"]
    for always in ("api", "migrate", "nginx", "postgres", "redis"):
        assert "profiles" not in services[always]


def test_replicas_wait_for_a_one_shot_migration(services: dict[str, Any]) -> None:
    api, migrate = services["api"], services["migrate"]
    assert api["deploy"]["replicas"] >= 2
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"  # runs once; a restart would hide a failed migration
    assert migrate["image"] == api["image"]  # the migrations of the release that will serve
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, Any], routes: set[str]
) -> None:
    for name, service in services.items():
        if name != "migrate":
            assert service["healthcheck"]["test"], name
    probe = " ".join(services["api"]["healthcheck"]["test"])
    [path] = re.findall(r"http://127\.0\.0\.1:8000(/\S+?)['\"]", probe)
    assert path in routes
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_secrets_come_from_env_files_never_from_the_compose_file(services: dict[str, Any]) -> None:
    for name in ("api", "migrate", "postgres"):
        assert env_files(services[name]) == ["leadscore.env"], name
    assert env_files(services["grafana"]) == ["grafana.env"]
    example = (DEPLOY / "leadscore.env.example").read_text()
    variables = dict(re.findall(r"^([A-Z_]+)=(.*)$", example, re.M))
    for needed in ("LEADSCORE_JWT_SECRET", "LEADSCORE_SECRET_KEY", "LEADSCORE_DATABASE_URL",
                   "LEADSCORE_REDIS_URL", "POSTGRES_PASSWORD"):  # fmt: skip
        assert needed in variables, needed
    assert variables["LEADSCORE_JWT_SECRET"] == "CHANGE-ME"  # a placeholder, not a secret
    assert "@postgres:5432/" in variables["LEADSCORE_DATABASE_URL"]
    assert variables["LEADSCORE_REDIS_URL"].startswith("redis://redis:6379")
    text = (DEPLOY / "compose.yaml").read_text()
    assert not re.search(r"(SECRET|PASSWORD|API_KEY)[A-Z_]*\s*[:=]", text)
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert {"leadscore.env", "grafana.env"} <= set(ignored)


def test_replicas_share_one_home_volume(services: dict[str, Any]) -> None:
    home = services["api"]["environment"]["LEADSCORE_HOME"]
    assert mounts(services["api"])[home] == mounts(services["migrate"])[home] == "leadscore-home"
    assert "leadscore-home" in load("compose.yaml")["volumes"]
    assert mounts(services["postgres"])["/var/lib/postgresql/data"] == "postgres-data"


def test_nginx_runs_the_shipped_config_in_front_of_the_api_service(
    services: dict[str, Any],
) -> None:
    nginx = services["nginx"]
    assert mounts(nginx)["/etc/nginx/nginx.conf"] == "./nginx.conf"
    command = nginx["command"]
    assert command[command.index("-c") + 1] == "/etc/nginx/nginx.conf"
    assert "-p" in command  # the config's relative paths live under the prefix
    conf = (DEPLOY / "nginx.conf").read_text()
    [upstream] = re.findall(r"^\s*server\s+(\S+)\s.*;", conf, re.M)
    api_command = services["api"]["command"]
    port = api_command[api_command.index("--port") + 1]
    assert upstream == f"api:{port}"
    [published] = nginx["ports"]
    listen = re.search(r"^\s*listen\s+(\d+);", conf, re.M)
    assert listen is not None
    assert published.endswith(f":{listen.group(1)}")
    # The test's rewrite keeps every server parameter but the DNS one.
    rewritten = proxy_config(conf, ["127.0.0.1:1", "127.0.0.1:2"], "127.0.0.1:3")
    assert "server 127.0.0.1:2 max_fails=3 fail_timeout=10s;" in rewritten
    assert "api:" not in rewritten


def test_prometheus_scrapes_every_replica(services: dict[str, Any], routes: set[str]) -> None:
    assert mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"] == "./prometheus.yml"
    [job] = [
        j for j in load("prometheus.yml")["scrape_configs"] if j["job_name"] == "leadscore-api"
    ]
    assert job["metrics_path"] in routes
    [discovery] = job["dns_sd_configs"]
    assert discovery["names"] == ["api"]  # every address of the scaled service
    assert discovery["type"] == "A"
    api_command = services["api"]["command"]
    assert str(discovery["port"]) == api_command[api_command.index("--port") + 1]


def test_grafana_is_provisioned_from_the_shipped_files(services: dict[str, Any]) -> None:
    grafana = mounts(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == "./grafana/provisioning"
    [source] = load("grafana/provisioning/datasources/prometheus.yaml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    [provider] = load("grafana/provisioning/dashboards/leadscore.yaml")["providers"]
    assert grafana[provider["options"]["path"]] == "./grafana/dashboards"


def dockerfile() -> list[list[str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [line.split(None, 1) for line in lines if line and not line.startswith("#")]


def test_the_image_is_built_from_the_lock_and_runs_unprivileged(routes: set[str]) -> None:
    instructions = dockerfile()
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) == 2
    assert all(s.startswith("python:${PYTHON_VERSION}-slim") for s in stages)
    args = [rest for word, rest in instructions if word == "ARG"]
    assert "PYTHON_VERSION=3.11" in args
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert runs.count("uv sync --frozen --no-dev") == 2
    assert "libgomp1" in runs
    [user] = [rest for word, rest in instructions if word == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    [health] = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    [path] = re.findall(r"http://127\.0\.0\.1:8000(/\S+?)'", health)
    assert path in routes
    env = " ".join(rest for word, rest in instructions if word == "ENV")
    home = re.search(r"LEADSCORE_HOME=(\S+)", env)
    assert home is not None
    [volume] = [rest for word, rest in instructions if word == "VOLUME"]
    assert home.group(1) in volume
    assert not re.search(r"SECRET|PASSWORD|API_KEY", env)
    [entry] = [json.loads(rest) for word, rest in instructions if word == "ENTRYPOINT"]
    assert entry == ["leadscore"]


def test_only_the_build_inputs_reach_the_image() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    assert {"!pyproject.toml", "!uv.lock", "!README.md", "!src/"} <= set(ignore)
    assert all(Path(ROOT, p.lstrip("!")).exists() for p in ignore if p.startswith("!"))
