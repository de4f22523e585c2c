"""docker-compose.yml describes a real deployment, and Docker Compose accepts it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"POSTGRES_PASSWORD": "example-password", "DJANGO_SECRET_KEY": "example-secret"}


def compose_command() -> list[str] | None:
    """``docker compose`` (v2 plugin) or a v2 ``docker-compose`` binary, if this machine has one."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        result = subprocess.run([*command, "version"], capture_output=True, text=True)
        if result.returncode == 0 and "v2." in result.stdout:
            return command
    return None


@pytest.fixture(scope="module")
def compose_file() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_docker_compose_config_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 client on this machine (`docker compose version` fails)")
    env = {**os.environ, **SECRETS}
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", "config", "--format", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    gpu = config["services"]["worker-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert (
        gpu["environment"]["DATABASE_URL"]
        == "postgres://fairderm:example-password@postgres:5432/fairderm"
    )
    missing = subprocess.run(
        [*command, "-f", "docker-compose.yml", "config", "-q"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in SECRETS},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert "POSTGRES_PASSWORD" in missing.stderr


def test_services_of_a_deployment(compose_file: dict[str, Any]) -> None:
    assert set(compose_file["services"]) == {
        "postgres",
        "redis",
        "web",
        "worker-gpu",
        "worker-cpu",
        "flower",
    }


def test_the_gpu_worker_takes_one_gpu_task_at_a_time(compose_file: dict[str, Any]) -> None:
    command = compose_file["services"]["worker-gpu"]["command"]
    assert command[command.index("--queues") + 1] == "gpu"
    assert command[command.index("--concurrency") + 1] == "1"
    cpu = compose_file["services"]["worker-cpu"]["command"]
    assert cpu[cpu.index("--queues") + 1] == "cpu"


def test_secrets_come_from_the_environment(compose_file: dict[str, Any]) -> None:
    env = compose_file["x-env"]
    assert env["SECRET_KEY_FILE"] == "/run/secrets/django_secret_key"
    assert compose_file["secrets"]["django_secret_key"] == {"environment": "DJANGO_SECRET_KEY"}
    assert env["DEBUG"] == "0"
    assert "${POSTGRES_PASSWORD" in env["DATABASE_URL"]


def test_data_and_model_caches_are_volumes(compose_file: dict[str, Any]) -> None:
    volumes = compose_file["x-app"]["volumes"]
    assert "media:/data/media" in volumes and "artifacts:/data/artifacts" in volumes
    assert "model-cache:/models" in volumes
    env = compose_file["x-env"]
    assert env["TORCH_HOME"].startswith("/models/") and env["HF_HOME"].startswith("/models/")


def test_the_web_service_serves_with_gunicorn(compose_file: dict[str, Any]) -> None:
    web = compose_file["services"]["web"]
    assert "gunicorn backend.wsgi:application" in " ".join(web["command"])
    from django.conf import settings

    assert "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE
