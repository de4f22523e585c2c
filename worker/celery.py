"""The Celery app shared by every FairDerm worker and by the web process that enqueues.

Queues: ``gpu`` for training, generation and metric jobs (one task at a time per GPU worker)
and ``cpu`` for imports and bookkeeping. Delivery is at-least-once: tasks are acknowledged
after they finish (``acks_late``) and handed back when the worker process dies
(``reject_on_worker_lost``); each run's database lease turns a duplicate delivery into a
no-op (backend/runs/execution.py). Start a worker with::

    celery -A worker worker -Q gpu --concurrency 1      # one per GPU
    celery -A worker worker -Q cpu --concurrency 4
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import (
    celeryd_init,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
)
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
# OpenMP threads that wait by sleeping instead of spinning. Must be set before torch loads.
# On a small machine shared with the web server or another job, spinning threads slowed a
# training step from 0.7 s to 4 s on 2 cores; with PASSIVE it stayed at 1.2 s (and cost
# about 10% when the machine was otherwise idle). Override by setting the variable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

logger = logging.getLogger(__name__)

GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"
#: Tasks that need the accelerator. Everything else runs on the cpu queue.
GPU_TASKS = ("worker.tasks.execute_run_gpu", "worker.tasks.execute_shard_gpu")


def celery_settings(django_settings: Any) -> dict[str, Any]:
    """The Celery configuration derived from Django settings (also checked by the tests)."""
    visibility = django_settings.CELERY_VISIBILITY_TIMEOUT
    transport_options: dict[str, Any] = {
        **getattr(django_settings, "CELERY_EXTRA_TRANSPORT_OPTIONS", {}),
        "visibility_timeout": visibility,
    }
    broker_url: str = django_settings.CELERY_BROKER_URL
    if broker_url.startswith("filesystem://"):
        # The embedded broker of the demo: one folder that producers and workers share.
        queue_dir = django_settings.BROKER_DIR / "queue"
        transport_options.update(
            {
                "data_folder_in": str(queue_dir),
                "data_folder_out": str(queue_dir),
                "control_folder": str(django_settings.BROKER_DIR / "control"),
                "processed_folder": str(django_settings.BROKER_DIR / "processed"),
            }
        )
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "result_backend": None,
        "result_backend_transport_options": {"visibility_timeout": visibility},
        "visibility_timeout": visibility,
        "task_ignore_result": True,
        "task_queues": tuple(
            Queue(name, Exchange(name, type="direct"), routing_key=name)
            for name in (GPU_QUEUE, CPU_QUEUE)
        ),
        "task_default_exchange": CPU_QUEUE,
        "task_default_queue": CPU_QUEUE,
        "task_default_routing_key": CPU_QUEUE,
        "task_routes": {
            name: {"queue": GPU_QUEUE, "exchange": GPU_QUEUE, "routing_key": GPU_QUEUE}
            for name in GPU_TASKS
        },
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_track_started": True,
        "task_time_limit": django_settings.CELERY_TASK_TIME_LIMIT,
        "task_soft_time_limit": django_settings.CELERY_TASK_SOFT_TIME_LIMIT,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
    }


def make_broker_folders(config: dict[str, Any]) -> None:
    options = config["broker_transport_options"]
    for key in ("data_folder_in", "control_folder", "processed_folder"):
        if key in options:
            os.makedirs(options[key], exist_ok=True)


app = Celery("fairderm", include=["worker.tasks"])


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    from django.conf import settings

    config = celery_settings(settings)
    make_broker_folders(config)
    sender.conf.update(config)


class WorkerConfigurationError(RuntimeError):
    pass


def check_worker_options(
    queues: list[str], concurrency: int | None, prefetch_multiplier: int
) -> None:
    """A worker that consumes the gpu queue must run one task at a time with prefetch 1.

    Otherwise two trainings would share one GPU's memory, or a second task would sit
    reserved behind a long training while another GPU is idle.
    """
    if GPU_QUEUE in queues:
        if concurrency != 1:
            raise WorkerConfigurationError(
                f"a worker consuming the {GPU_QUEUE!r} queue needs --concurrency 1, got {concurrency}"
            )
        if prefetch_multiplier != 1:
            raise WorkerConfigurationError(
                f"a worker consuming the {GPU_QUEUE!r} queue needs worker_prefetch_multiplier 1, "
                f"got {prefetch_multiplier}"
            )


@celeryd_init.connect
def _check_worker(
    sender: str | None = None, instance: Any = None, conf: Any = None, options: Any = None, **_: Any
) -> None:
    options = options or {}
    queues_option = options.get("queues") or []
    if isinstance(queues_option, str):
        queues_option = queues_option.split(",")
    queues = [q.strip() for q in queues_option if q.strip()] or [CPU_QUEUE]
    try:
        check_worker_options(queues, options.get("concurrency"), conf.worker_prefetch_multiplier)
    except WorkerConfigurationError as exc:
        # Celery logs and swallows exceptions raised by signal handlers; SystemExit is not
        # swallowed, so the misconfigured worker stops before it takes any task.
        raise SystemExit(f"FairDerm worker refused to start: {exc}") from exc


@task_prerun.connect
def _close_stale_connections_before(**_: Any) -> None:
    from django.db import close_old_connections

    close_old_connections()


@task_postrun.connect
def _close_stale_connections_after(**_: Any) -> None:
    from django.db import close_old_connections

    close_old_connections()


#: Temporary files older than this are leftovers of a crashed write, not writes in progress.
STARTUP_SWEEP_MIN_AGE = 3600.0


def sweep_leftovers(roots: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Remove what interrupted atomic writes left under ``roots``: only temporary files older
    than ``STARTUP_SWEEP_MIN_AGE``, as other workers may share the folders. Returns them."""
    from validation.files import sweep_temp_files

    removed: list[Path] = []
    for root in roots:
        try:
            found = sweep_temp_files(root, min_age=STARTUP_SWEEP_MIN_AGE)
        except OSError:
            logger.exception("sweeping %s failed", root)
            continue
        if found:
            logger.info("removed %d leftover temporary files under %s", len(found), root)
        removed += found
    return removed


@worker_process_init.connect
def _private_progress_lock(**_: Any) -> None:
    """Each pool process draws diffusers' progress bars under tqdm locks of its own, so one
    killed on a time limit mid-bar cannot hang the others (see ``generation.forking``)."""
    from generation.forking import private_progress_lock

    private_progress_lock()


@worker_ready.connect
def _sweep_leftovers(**_: Any) -> None:
    """Sweep this machine's file roots at start, in the background (see sweep_leftovers)."""
    from django.conf import settings

    threading.Thread(
        target=sweep_leftovers,
        args=([settings.MEDIA_ROOT, settings.ARTIFACTS_ROOT],),
        name="fairderm-sweep",
        daemon=True,
    ).start()


@worker_ready.connect
def _start_reaper(**_: Any) -> None:
    """Every worker looks for runs whose worker died, once per lease period (see reap_stale_runs)."""
    from django.conf import settings

    if not settings.RUN_REAPER:
        return
    thread = threading.Thread(
        target=_reap_forever,
        args=(float(settings.RUN_LEASE_SECONDS),),
        name="fairderm-reaper",
        daemon=True,
    )
    thread.start()


def _reap_forever(interval: float) -> None:
    from django.db import close_old_connections

    from backend.runs.execution import reap_stale_runs

    while True:
        time.sleep(interval)
        try:
            reap_stale_runs()
        except Exception:  # a database blip must not kill the reaper; try again next period
            logger.exception("the run reaper failed")
        finally:
            close_old_connections()
