"""`make test` runs two pytest-xdist processes: each gets its own var folder and Redis database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import settings as test_settings


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """A private copy of os.environ for _isolate_xdist_worker to rewrite."""
    env = {"FAIRDERM_VAR_DIR": str(tmp_path / "var")}
    monkeypatch.setattr(os, "environ", env)
    return env


def test_a_worker_gets_its_own_var_folder_and_redis_database(
    environ: dict[str, str], tmp_path: Path
) -> None:
    environ["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/5"
    test_settings._isolate_xdist_worker("gw1")
    assert environ["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/6"
    assert environ["FAIRDERM_VAR_DIR"] == str(tmp_path / "var" / "gw1")


def test_a_subprocess_that_inherits_the_rewrite_does_not_shift_it_again(
    environ: dict[str, str], tmp_path: Path
) -> None:
    environ["CELERY_BROKER_URL"] = "redis://:secret@127.0.0.1:6379"
    test_settings._isolate_xdist_worker("gw2")
    inherited = dict(environ)
    test_settings._isolate_xdist_worker("gw2")
    assert environ == inherited
    assert environ["CELERY_BROKER_URL"] == "redis://:secret@127.0.0.1:6379/2"
    assert environ["FAIRDERM_VAR_DIR"] == str(tmp_path / "var" / "gw2")


def test_the_filesystem_broker_follows_the_var_folder(environ: dict[str, str]) -> None:
    environ["CELERY_BROKER_URL"] = "filesystem://localhost//"
    test_settings._isolate_xdist_worker("gw1")
    assert environ["CELERY_BROKER_URL"] == "filesystem://localhost//"
    assert environ["FAIRDERM_VAR_DIR"].endswith("gw1")
    environ["FAIRDERM_BROKER_DIR"] = "/srv/broker"
    test_settings._isolate_xdist_worker("gw0")
    assert environ["FAIRDERM_BROKER_DIR"] == "/srv/broker/gw0"


def test_a_database_number_past_redis_default_range_is_refused(environ: dict[str, str]) -> None:
    environ["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/15"
    with pytest.raises(RuntimeError, match="needs Redis database 16"):
        test_settings._isolate_xdist_worker("gw1")
