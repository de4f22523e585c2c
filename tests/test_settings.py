"""Settings come from the environment, and a bad value stops start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from backend.env import Env

ROOT = Path(__file__).resolve().parent.parent


def make_env(**values: str) -> Env:
    return Env(values, base_dir=Path("/srv/fairderm"))


@pytest.mark.parametrize(
    ("method", "name", "value", "fragment"),
    [
        ("bool", "DEBUG", "maybe", "expected a boolean"),
        ("int", "CELERY_TASK_TIME_LIMIT", "ten", "expected an integer"),
        ("float", "GPU_PRICE_PER_HOUR", "nan", "finite"),
        ("device", "COMPUTE_DEVICE", "gpu0", "expected auto, cpu, mps, cuda or cuda:N"),
        ("choice", "LOG_LEVEL", "LOUD", "expected one of"),
        ("json_object", "CELERY_BROKER_TRANSPORT_OPTIONS", "[1, 2]", "expected a JSON object"),
        ("json_object", "CELERY_BROKER_TRANSPORT_OPTIONS", "{master: x}", "not valid JSON"),
    ],
)
def test_it_names_the_variable_on_a_bad_value(
    method: str, name: str, value: str, fragment: str
) -> None:
    env = make_env(**{name: value})
    reader = getattr(env, method)
    args: tuple = (name, ["DEBUG", "INFO"]) if method == "choice" else (name,)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        reader(*args)
    assert str(excinfo.value).startswith(f"{name}:")
    assert fragment in str(excinfo.value)


def test_it_parses_good_values() -> None:
    env = make_env(DEBUG="yes", N="7", HOSTS="a.org, b.org", DEVICE="cuda:1", REL="var/x")
    assert env.bool("DEBUG") is True
    assert env.int("N", min_value=1) == 7
    assert env.list("HOSTS") == ["a.org", "b.org"]
    assert env.device("DEVICE") == "cuda:1"
    assert env.path("REL") == Path("/srv/fairderm/var/x")
    assert env.bool("MISSING", False) is False


def test_it_requires_variables_without_default() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^SECRET_KEY: required"):
        make_env().secret("SECRET_KEY")


def test_it_reads_secrets_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    assert make_env(SECRET_KEY_FILE=str(secret)).secret("SECRET_KEY") == "s3cret"


def test_database_urls() -> None:
    env = make_env(
        PG="postgres://postgres@127.0.0.1:5432/fairderm",
        SQ="sqlite:///var/db.sqlite3",
        BAD="mysql://x/y",
    )
    pg = env.database("PG", "")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["NAME"], pg["HOST"], pg["PORT"]) == ("fairderm", "127.0.0.1", 5432)
    assert env.database("SQ", "")["NAME"] == "/srv/fairderm/var/db.sqlite3"
    with pytest.raises(ImproperlyConfigured, match=r"^BAD: unsupported database scheme"):
        env.database("BAD", "")


def test_broker_urls() -> None:
    env = make_env(OK="redis://127.0.0.1:6379/5", BAD="kafka://x")
    assert env.broker("OK", "") == "redis://127.0.0.1:6379/5"
    with pytest.raises(ImproperlyConfigured, match=r"^BAD: unsupported broker scheme"):
        env.broker("BAD", "")


def _manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_bad_value_stops_start_up(tmp_path: Path) -> None:
    result = _manage(
        ["check"], {"DEBUG": "1", "FAIRDERM_VAR_DIR": str(tmp_path), "COMPUTE_DEVICE": "tpu"}
    )
    assert result.returncode != 0
    assert "COMPUTE_DEVICE: expected auto, cpu, mps, cuda or cuda:N, got 'tpu'" in result.stderr


def test_production_needs_a_secret_key(tmp_path: Path) -> None:
    result = _manage(["check"], {"DEBUG": "0", "FAIRDERM_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY: required environment variable is not set" in result.stderr


def test_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    env = {
        "DEBUG": "0",
        "SECRET_KEY": "k" * 20 + "A7#q9Z!mW2$xV5^bN8&cR1*tY4(uI6)oP3-lK0=jH",
        "ALLOWED_HOSTS": "fairderm.example.org",
        "FAIRDERM_VAR_DIR": str(tmp_path),
    }
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_visibility_timeout_must_exceed_the_time_limit(tmp_path: Path) -> None:
    env = {
        "DEBUG": "1",
        "FAIRDERM_VAR_DIR": str(tmp_path),
        "CELERY_TASK_TIME_LIMIT": "3600",
        "CELERY_VISIBILITY_TIMEOUT": "600",
    }
    result = _manage(["check"], env)
    assert result.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT: must exceed CELERY_TASK_TIME_LIMIT" in result.stderr


def test_model_caches_are_exported(tmp_path: Path) -> None:
    env = {
        "DEBUG": "1",
        "FAIRDERM_VAR_DIR": str(tmp_path),
        "TORCH_HOME": str(tmp_path / "torch"),
        "HF_HOME": str(tmp_path / "hf"),
    }
    code = "import os; from django.conf import settings; settings.DEBUG; print(os.environ['TORCH_HOME'], os.environ['HF_HOME'])"
    result = _manage(["shell", "-c", code], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == [
        str(tmp_path / "torch"),
        str(tmp_path / "hf"),
    ]


def test_the_web_process_validates_run_configs_without_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from backend.runs.kinds import get_kind; "
        "kind = get_kind('train-conditional'); kind.parse_config(kind.preset('cpu-demo-32px').to_dict()); "
        "get_kind('generate').parse_config({'count': 3}); "
        "import backend.urls; print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    result = _manage(["shell", "-c", code], {"DEBUG": "1", "FAIRDERM_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
