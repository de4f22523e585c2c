"""Shared fixtures: file roots, the named personas and a real Celery worker subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def services_required() -> bool:
    """In CI (FAIRDERM_REQUIRE_SERVICES=1) a missing service or browser fails instead of skipping."""
    return os.environ.get("FAIRDERM_REQUIRE_SERVICES", "") == "1"


@pytest.fixture(scope="session")
def file_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MEDIA_ROOT and ARTIFACTS_ROOT for the session, shared with worker subprocesses."""
    base = tmp_path_factory.mktemp("fairderm-files")
    return {"MEDIA_ROOT": base / "media", "ARTIFACTS_ROOT": base / "artifacts"}


@pytest.fixture(autouse=True)
def _file_roots(settings: Any, file_roots: dict[str, Path]) -> None:
    settings.MEDIA_ROOT = file_roots["MEDIA_ROOT"]
    settings.ARTIFACTS_ROOT = file_roots["ARTIFACTS_ROOT"]


# --- Personas -------------------------------------------------------------------------------


@pytest.fixture
def ml_engineer(db: None) -> Any:
    from tests.accounts.factories import UserFactory

    return UserFactory(username="ml-engineer", role="ML engineers", is_staff=True)


@pytest.fixture
def reader_a(db: None) -> Any:
    from tests.accounts.factories import UserFactory

    return UserFactory(username="reader-a", role="Dermatologists")


@pytest.fixture
def reader_b(db: None) -> Any:
    from tests.accounts.factories import UserFactory

    return UserFactory(username="reader-b", role="Dermatologists")


@pytest.fixture
def lead(db: None) -> Any:
    from tests.accounts.factories import UserFactory

    return UserFactory(username="lead", role="Leads")


# --- A real worker process --------------------------------------------------------------------


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for the database Django is connected to (the test database)."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{auth}{settings_dict.get('HOST') or ''}{port}/{settings_dict['NAME']}"


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    hostname: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None


def start_worker(
    env: dict[str, str], log_path: Path, queues: str = "gpu,cpu", timeout: float = 90
) -> WorkerProcess:
    hostname = f"pytest-{uuid.uuid4().hex[:8]}@%h"
    command = [
        sys.executable, "-m", "celery", "-A", "worker", "worker",
        "-Q", queues, "--concurrency", "1", "--pool", "prefork",
        "-n", hostname, "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip
    handle = log_path.open("wb")
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    handle.close()
    worker = WorkerProcess(process, log_path, hostname)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if " ready." in worker.log():
            return worker
        if not worker.alive():
            raise RuntimeError(
                f"the worker exited with {process.returncode}:\n{worker.log()[-4000:]}"
            )
        time.sleep(0.2)
    stop_worker(worker)
    raise RuntimeError(f"the worker did not become ready in {timeout} s:\n{worker.log()[-4000:]}")


def stop_worker(worker: WorkerProcess) -> None:
    if worker.alive():
        os.killpg(worker.process.pid, signal.SIGTERM)
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(timeout=10)


@pytest.fixture(scope="session")
def worker_env(
    django_db_setup: Any, django_db_blocker: Any, file_roots: dict[str, Path]
) -> dict[str, str]:
    """Environment for worker subprocesses: the test database, the same broker and file roots."""
    from django.conf import settings
    from django.db import connection

    from worker.celery import app

    if settings.CELERY_BROKER_URL.startswith("redis"):
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
        except Exception as exc:
            if services_required():
                raise
            pytest.skip(f"Redis is not reachable at {settings.CELERY_BROKER_URL}: {exc}")
    with django_db_blocker.unblock():
        url = database_url(connection.settings_dict)
    app.control.purge()
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "FAIRDERM_BROKER_DIR": str(settings.BROKER_DIR),
            "MEDIA_ROOT": str(file_roots["MEDIA_ROOT"]),
            "ARTIFACTS_ROOT": str(file_roots["ARTIFACTS_ROOT"]),
            "COMPUTE_DEVICE": "cpu",
            "RUN_HEARTBEAT_SECONDS": os.environ["RUN_HEARTBEAT_SECONDS"],
            "RUN_LEASE_SECONDS": os.environ["RUN_LEASE_SECONDS"],
            "RUN_REAPER": os.environ["RUN_REAPER"],
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="session")
def celery_worker_process(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One real ``celery worker`` process (prefork, concurrency 1) on both queues, for the session."""
    log_dir = tmp_path_factory.mktemp("worker-logs")
    worker = start_worker(worker_env, log_dir / "worker.log")
    yield worker
    stop_worker(worker)
    from django.conf import settings

    kept = Path(settings.VAR_DIR) / "last-worker.log"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(worker.log_path, kept)


def wait_for(
    predicate: Any, timeout: float = 60, interval: float = 0.25, message: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {message}")


def wait_for_js(page: Any, expression: str, timeout: float = 15) -> Any:
    """Poll a JavaScript expression in ``page`` until it is truthy.

    Playwright's ``wait_for_function`` evaluates its predicate with ``eval`` inside the page,
    which the site's Content-Security-Policy (no ``unsafe-eval``) rightly refuses; ``evaluate``
    goes through the DevTools protocol instead.
    """
    return wait_for(lambda: page.evaluate(expression), timeout, 0.1, f"`{expression}` in the page")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
