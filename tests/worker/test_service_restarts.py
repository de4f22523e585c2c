"""A run survives its services restarting: Redis (the broker) and PostgreSQL (the database).

Each test gives a real worker process its own service to lose: a private ``redis-server``
with an append-only file that is stopped and started again mid-run, and a TCP proxy in front
of PostgreSQL that drops every connection and refuses new ones for a while (as a database
restart does), so the suite's shared services stay up. Pass: the run completes, once, with
its result; nothing is left running.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings

from backend.runs.models import Run
from backend.runs.services import launch_run
from tests.conftest import (
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


class FlakyProxy:
    """A TCP proxy to the database that can drop every connection and refuse new ones."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self.up = threading.Event()
        self.up.set()
        self.sockets: list[socket.socket] = []
        self.dropped = 0
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass

    def outage(self, seconds: float) -> None:
        self.up.clear()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    self.dropped += 1
                except OSError:
                    pass
            self.sockets.clear()
        time.sleep(seconds)
        self.up.set()

    def close(self) -> None:
        self.server.close()


def test_a_run_survives_a_database_restart(
    private_redis: PrivateRedis, worker_env: dict[str, str], tmp_path: Path
) -> None:
    from django.db import connection

    params = connection.settings_dict
    if not params["ENGINE"].endswith("postgresql"):
        pytest.skip("the database restart test needs PostgreSQL (CI sets DATABASE_URL)")
    proxy = FlakyProxy((params.get("HOST") or "127.0.0.1", int(params.get("PORT") or 5432)))
    proxied = dict(params, HOST="127.0.0.1", PORT=str(proxy.port))
    env = {
        **worker_env,
        "DATABASE_URL": database_url(proxied),
        "CELERY_BROKER_URL": private_redis.url,
    }
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        run = launch_on(private_redis)

        def training() -> bool:
            run.refresh_from_db()
            return run.status == Run.Status.RUNNING and run.step >= 20

        wait_for(training, 120, message="the training to start")
        proxy.outage(6.0)
        finished = wait_for(lambda: _finished(run), 300, message="the run to finish")
        log = worker.log()
    finally:
        stop_worker(worker)
        proxy.close()
    assert finished.status == Run.Status.SUCCEEDED, finished.error + log[-3000:]
    assert finished.result["final_step"] == 300
    assert proxy.dropped >= 2, "the worker had no open database connection to lose"
    assert os.path.exists(finished.artifacts.get(name="model").absolute_path)
