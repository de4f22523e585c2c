"""The Celery configuration that keeps long GPU jobs safe (reliability plan, section 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction

from worker.celery import (
    GPU_QUEUE,
    WorkerConfigurationError,
    app,
    celery_settings,
    check_worker_options,
)

ROOT = Path(__file__).resolve().parents[2]


def test_late_acknowledgement_and_prefetch_one() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_ignore_result is True


def test_visibility_timeout_exceeds_the_time_limit_everywhere() -> None:
    conf = app.conf
    limit = conf.task_time_limit
    assert conf.task_soft_time_limit < limit
    for value in (
        conf.broker_transport_options["visibility_timeout"],
        conf.result_backend_transport_options["visibility_timeout"],
        conf.visibility_timeout,
    ):
        assert value == settings.CELERY_VISIBILITY_TIMEOUT
        assert value > limit


def test_gpu_tasks_route_to_the_gpu_queue_and_the_rest_to_cpu() -> None:
    router = app.amqp.router
    gpu = router.route({}, "worker.tasks.execute_run_gpu", args=(), kwargs={})
    cpu = router.route({}, "worker.tasks.execute_run_cpu", args=(), kwargs={})
    imp = router.route({}, "worker.tasks.import_dataset", args=(), kwargs={})
    assert gpu["queue"].name == "gpu"
    assert cpu["queue"].name == "cpu"
    assert imp["queue"].name == "cpu"
    assert {q.name for q in app.conf.task_queues} == {"gpu", "cpu"}


def test_filesystem_broker_folders_come_from_settings(tmp_path: Path) -> None:
    class Fake:
        CELERY_BROKER_URL = "filesystem://"
        CELERY_VISIBILITY_TIMEOUT = 100
        CELERY_TASK_TIME_LIMIT = 90
        CELERY_TASK_SOFT_TIME_LIMIT = 81
        BROKER_DIR = tmp_path

    config = celery_settings(Fake)
    options = config["broker_transport_options"]
    assert options["data_folder_in"] == options["data_folder_out"] == str(tmp_path / "queue")
    assert options["control_folder"] == str(tmp_path / "control")


@pytest.mark.parametrize(("queues", "concurrency", "prefetch", "ok"), [
    (["gpu"], 1, 1, True),
    (["gpu", "cpu"], 1, 1, True),
    (["cpu"], 8, 4, True),
    (["gpu"], 2, 1, False),
    (["gpu"], None, 1, False),
    (["gpu"], 1, 4, False),
])  # fmt: skip
def test_a_gpu_worker_runs_one_task_at_a_time(
    queues: list[str], concurrency: Any, prefetch: int, ok: bool
) -> None:
    if ok:
        check_worker_options(queues, concurrency, prefetch)
    else:
        with pytest.raises(WorkerConfigurationError, match=GPU_QUEUE):
            check_worker_options(queues, concurrency, prefetch)


@pytest.mark.integration
def test_a_real_gpu_worker_with_concurrency_two_refuses_to_start() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "-Q",
            "gpu",
            "--concurrency",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "needs --concurrency 1" in result.stdout + result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_sends_no_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.datasets.services import import_in_background
    from worker import tasks

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.import_dataset, "apply_async", lambda **kw: sent.append(kw))

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        import_in_background(
            name="rolled-back", format="phantom", metadata=tmp_path / "m.csv", images_dir=tmp_path
        )
        raise Boom
    assert sent == []
    import_in_background(
        name="committed", format="phantom", metadata=tmp_path / "m.csv", images_dir=tmp_path
    )
    assert len(sent) == 1 and sent[0]["kwargs"]["metadata"] == str(tmp_path / "m.csv")


def test_pool_processes_get_private_progress_locks() -> None:
    """Celery's prefork pool sends worker_process_init in each forked process; after it, tqdm's
    lock there is private (see tests/generation/test_forking.py for why)."""
    code = (
        "import django; django.setup()\n"
        "import threading\n"
        "from celery.signals import worker_process_init\n"
        "from tqdm.auto import tqdm\n"
        "from worker.celery import _private_progress_lock\n"
        "assert _private_progress_lock in [r() for _, r in worker_process_init.receivers]\n"
        "_private_progress_lock()\n"
        "print(type(tqdm.get_lock()) is type(threading.RLock()))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "True"
