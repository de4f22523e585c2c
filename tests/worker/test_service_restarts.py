"""A run survives its services restarting: Redis (the broker) and PostgreSQL (the database).

Each test gives a real worker process services of its own to lose, so the suite's shared
services stay up: a private ``redis-server`` with an append-only file, stopped and started
again mid-run; and a private PostgreSQL cluster (``initdb`` into a temporary folder, a free
port) that is shut down, which ends every session, left down for 5 s, in which it refuses
connections, and started again. Pass: the run completes, once, with its result; nothing is
left running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings

from backend.runs.models import Run
from backend.runs.services import launch_run
from tests.conftest import (
    ROOT,
    database_url,
    free_port,
    services_required,
    start_worker,
    stop_worker,
    wait_for,
)
from tests.datasets.factories import dataset_with_cells
from tests.runs.factories import TINY_TRAINING

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TRAINING = {**TINY_TRAINING, "train_steps": 300, "checkpoint_every": 50}


def _finished(run: Run) -> Run | None:
    run.refresh_from_db()
    return run if run.is_finished else None


# --- Redis ------------------------------------------------------------------------------------


class PrivateRedis:
    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # a clean shutdown writes the AOF
            self.process.wait(timeout=20)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if services_required():
            raise RuntimeError("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


def launch_on(redis: PrivateRedis) -> Run:
    """A training run, queued on ``redis`` only (no other worker of the suite can take it)."""
    from celery import Celery

    from worker.celery import celery_settings

    with mock.patch("backend.runs.services.enqueue"):
        run = launch_run(kind="train-conditional", config=TRAINING, datasets=[dataset_with_cells()])
    sender = Celery("sender")
    sender.conf.update(celery_settings(settings))
    # An explicit connection: Celery prefers the CELERY_BROKER_URL variable to broker_url.
    with sender.connection_for_write(redis.url) as connection:
        sender.send_task(
            "worker.tasks.execute_run_gpu", kwargs={"run_pk": run.pk}, connection=connection
        )
    return run


def test_a_run_survives_a_broker_restart(
    private_redis: PrivateRedis, worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**worker_env, "CELERY_BROKER_URL": private_redis.url}
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        run = launch_on(private_redis)

        def training() -> bool:
            run.refresh_from_db()
            return run.status == Run.Status.RUNNING and run.step >= 20

        wait_for(
            training, 120, message=f"the training to start; worker log:\n{worker.log()[-2000:]}"
        )
        private_redis.stop()
        time.sleep(3)
        private_redis.start()
        finished = wait_for(lambda: _finished(run), 300, message="the run to finish")
    finally:
        stop_worker(worker)
    assert finished.status == Run.Status.SUCCEEDED, finished.error
    assert finished.result["final_step"] == 300
    assert finished.artifacts.filter(name="model").count() == 1


# --- PostgreSQL -------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The folder with ``initdb``, ``pg_ctl`` and ``postgres``: from PATH, else Debian's newest
    ``/usr/lib/postgresql/<version>/bin`` (Debian keeps them off PATH)."""
    candidates = []
    if found := shutil.which("pg_ctl"):
        candidates.append(Path(found).parent)
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    candidates += sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


class PrivatePostgres:
    """A PostgreSQL server of the test's own: a fresh cluster in ``folder``, TCP on a free port
    of 127.0.0.1, trust authentication, no Unix socket.

    ``initdb`` and the server refuse to run as root; under root they run as the ``postgres``
    user, and ``folder`` must belong to it.
    """

    def __init__(self, bindir: Path, folder: Path):
        self.bindir = bindir
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = free_port()

    @property
    def settings_dict(self) -> dict[str, str]:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "fairderm",
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }

    def _pg(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{done.stderr}{log}")

    def create(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                 "--no-sync")  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                # Speed only: a fast shutdown writes everything out before the server stops,
                # and the machine itself does not crash in this test.
                "fsync = off\n"
            )
        self.start()
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as admin:
            admin.execute("CREATE DATABASE fairderm")

    def start(self) -> None:
        self._pg("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = postgres_bindir()
    reason = None
    if bindir is None:
        reason = "PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed"
    elif os.geteuid() == 0 and shutil.which("runuser") is None:
        reason = "running as root, and runuser is missing to start PostgreSQL as postgres"
    if reason is not None:
        if services_required():
            raise RuntimeError(reason)
        pytest.skip(reason)
    assert bindir is not None
    # Not under tmp_path: pytest's temporary folders are private to the user running the tests.
    folder = Path(tempfile.mkdtemp(prefix="fairderm-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    server = PrivatePostgres(bindir, folder)
    try:
        server.create()
        yield server
    finally:
        if server.running():
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def default_database(settings_dict: dict[str, str]) -> Iterator[None]:
    """Point this thread's ``default`` database connection at another database meanwhile.

    The suite's own test database stays as it is (pytest-django flushes it afterwards); the
    content-type cache, which holds ids of one database, is cleared on the way in and out.
    """
    from django.contrib.contenttypes.models import ContentType
    from django.db import connections
    from django.db.utils import load_backend

    original = connections["default"]
    merged = {**original.settings_dict, **settings_dict, "OPTIONS": {}}
    wrapper = load_backend(merged["ENGINE"]).DatabaseWrapper(merged, "default")
    ContentType.objects.clear_cache()
    connections["default"] = wrapper
    try:
        yield
    finally:
        wrapper.close()
        connections["default"] = original
        ContentType.objects.clear_cache()


def test_a_run_survives_a_database_restart(
    private_postgres: PrivatePostgres,
    private_redis: PrivateRedis,
    worker_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """A real PostgreSQL server is stopped (fast shutdown: it ends every session) and, after
    5 s in which it refuses connections, started again, while a worker trains on it."""
    from django.db import connection

    url = database_url(private_postgres.settings_dict)
    env = {**worker_env, "DATABASE_URL": url, "CELERY_BROKER_URL": private_redis.url}
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with default_database(private_postgres.settings_dict):
            run = launch_on(private_redis)

            def training() -> bool:
                run.refresh_from_db()
                return run.status == Run.Status.RUNNING and run.step >= 20

            wait_for(training, 120, message=f"the training to start:\n{worker.log()[-2000:]}")
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                (worker_sessions,) = cursor.fetchone()
            assert worker_sessions >= 1, "the worker had no open database session to lose"
            step_at_restart = run.step
            private_postgres.stop("fast")
            time.sleep(5)
            private_postgres.start()
            connection.close()  # this process's session ended with the server too
            finished = wait_for(lambda: _finished(run), 300, message="the run to finish")
            running = Run.objects.filter(status=Run.Status.RUNNING).count()
            models = list(finished.artifacts.filter(name="model"))
        log = worker.log()
    finally:
        stop_worker(worker)
    assert finished.status == Run.Status.SUCCEEDED, finished.error + log[-3000:]
    assert step_at_restart < 300, "the run ended before the restart; restart it earlier"
    assert finished.result["final_step"] == 300
    assert finished.attempts == 1, "the restart made the run start again"
    assert running == 0
    assert len(models) == 1 and os.path.exists(models[0].absolute_path)
