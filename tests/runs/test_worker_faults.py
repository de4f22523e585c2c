"""Real worker processes under faults: a training whose worker is SIGKILLed resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from backend.runs.models import Run
from backend.runs.services import launch_run
from tests.conftest import WorkerProcess, wait_for
from tests.datasets.factories import dataset_with_cells
from tests.runs.factories import TINY_TRAINING

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def pool_children(worker: WorkerProcess) -> list[int]:
    """PIDs of the prefork pool processes of a worker (the processes that execute tasks)."""
    pid = worker.process.pid
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(child) for child in text)
    return children


def complete_checkpoints(run: Run) -> list[Path]:
    root = run.workdir / "checkpoints"
    return (
        sorted(p for p in root.glob("step-*") if (p / "COMPLETE.json").exists())
        if root.exists()
        else []
    )


def test_a_sigkilled_training_is_redelivered_and_resumes_from_its_last_checkpoint(
    celery_worker_process: WorkerProcess,
) -> None:
    dataset = dataset_with_cells()
    config = {**TINY_TRAINING, "train_steps": 300, "checkpoint_every": 20}
    run = launch_run(kind="train-conditional", config=config, datasets=[dataset])

    def checkpointed() -> bool:
        run.refresh_from_db()
        return (
            run.status == Run.Status.RUNNING and run.step >= 45 and bool(complete_checkpoints(run))
        )

    wait_for(
        checkpointed, 180, interval=0.05, message="a running training with a complete checkpoint"
    )
    killed_at = run.step
    assert killed_at < 300, "the training finished before it could be killed; make it longer"
    children = pool_children(celery_worker_process)
    assert children, "no pool process to kill"
    for pid in children:
        os.kill(pid, signal.SIGKILL)

    def finished() -> Run | None:
        run.refresh_from_db()
        return run if run.is_finished else None

    wait_for(finished, 240, message="the redelivered training to finish")
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.attempts == 2
    assert run.result["final_step"] == 300
    resumed_from = run.result["resumed_from"]
    assert resumed_from is not None and 20 <= resumed_from <= killed_at
    assert resumed_from % 20 == 0
    log = celery_worker_process.log()
    assert "WorkerLostError" in log or "exited prematurely" in log
    assert celery_worker_process.alive()


def test_two_workers_share_the_shards_of_one_generation(
    celery_worker_process: WorkerProcess,
    worker_env: dict[str, str],
    tmp_path: Path,
    settings: object,
) -> None:
    from backend.datasets.models import Dataset
    from backend.runs.execution import execute_run
    from tests.conftest import start_worker, stop_worker

    settings.COMPUTE_DEVICE = "cpu"  # type: ignore[attr-defined]
    dataset = dataset_with_cells()
    tiny = {**TINY_TRAINING, "batch_size": 4, "train_steps": 2, "checkpoint_every": 2}
    from unittest import mock

    with mock.patch("backend.runs.services.enqueue"):  # train here, in the test process
        train = launch_run(kind="train-conditional", config=tiny, datasets=[dataset])
    assert execute_run(train.pk, "test-process") == Run.Status.SUCCEEDED
    second = start_worker(worker_env, tmp_path / "second-worker.log")
    try:
        config = {
            "rule": "per_cell",
            "count": 4,
            "num_inference_steps": 4,
            "shards": 6,
            "batch_size": 2,
        }
        run = launch_run(kind="generate", config=config, parents=[train])

        def finished() -> Run | None:
            run.refresh_from_db()
            return run if run.is_finished else None

        wait_for(finished, 240, message="the sharded generation")
    finally:
        stop_worker(second)
    assert run.status == Run.Status.SUCCEEDED, run.error
    hosts = {shard.worker_host.split("@")[0] for shard in run.shards.all()}
    assert hosts == {celery_worker_process.hostname.split("@")[0], second.hostname.split("@")[0]}
    synthetic = Dataset.objects.get(generated_by=run)
    ids = list(synthetic.images.values_list("image_id", flat=True))
    assert len(ids) == len(set(ids)) == 48
    assert sorted(run.shards.values_list("items_done", flat=True)) == [8] * 6


def test_a_running_training_stops_within_a_minute_of_cancel_and_keeps_its_checkpoint(
    celery_worker_process: WorkerProcess,
) -> None:
    import time

    from backend.runs.services import cancel_run

    run = launch_run(
        kind="train-conditional",
        config={**TINY_TRAINING, "train_steps": 5000},
        datasets=[dataset_with_cells()],
    )

    def running() -> bool:
        run.refresh_from_db()
        return run.status == Run.Status.RUNNING and run.step >= 5

    wait_for(running, 180, interval=0.1, message="the training to start")
    cancel_run(run)
    asked = time.monotonic()

    def finished() -> Run | None:
        run.refresh_from_db()
        return run if run.is_finished else None

    wait_for(finished, 60, interval=0.1, message="the cancelled training to stop")
    assert time.monotonic() - asked < 60
    assert run.status == Run.Status.CANCELLED
    assert run.result["stopped"] is True and run.result["final_step"] < 5000
    checkpoints = complete_checkpoints(run)
    assert checkpoints and checkpoints[-1].name == f"step-{run.result['final_step']:07d}"


def test_launch_wait_json_completes_a_real_run_from_the_command_line(
    celery_worker_process: WorkerProcess, worker_env: dict[str, str], tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    dataset = dataset_with_cells()
    config = tmp_path / "train.json"
    config.write_text(json.dumps({**TINY_TRAINING, "train_steps": 4}))
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "launch",
            "train-conditional",
            "--config",
            str(config),
            "--dataset",
            str(dataset.pk),
            "--wait",
            "--json",
            "--timeout",
            "240",
        ],  # fmt: skip
        cwd=Path(__file__).resolve().parents[2],
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)
    assert payload["status"] == "succeeded" and payload["kind"] == "train-conditional"
    assert payload["result"]["final_step"] == 4 and payload["result"]["model_sha256"]
    assert Run.objects.get(pk=payload["id"]).artifacts.filter(name="model").exists()


def test_a_duplicate_delivery_under_a_short_visibility_timeout_does_the_work_once(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    """Redis hands an unacknowledged task to another worker after the visibility timeout; the
    run's lease makes that second delivery wait and then do nothing."""
    import json

    from tests.conftest import start_worker, stop_worker

    if not worker_env["CELERY_BROKER_URL"].startswith("redis"):
        pytest.skip("visibility timeouts are a Redis broker behaviour (CI runs this on Redis)")
    env = {
        **worker_env,
        "CELERY_VISIBILITY_TIMEOUT": "3",
        "CELERY_TASK_TIME_LIMIT": "600",
        "CELERY_ALLOW_SHORT_VISIBILITY": "1",
        "CELERY_BROKER_TRANSPORT_OPTIONS": json.dumps(
            {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
        ),
    }
    workers = [start_worker(env, tmp_path / f"worker-{i}.log", queues="gpu") for i in range(2)]
    try:
        run = launch_run(
            kind="train-conditional",
            config={**TINY_TRAINING, "train_steps": 400},
            datasets=[dataset_with_cells()],
        )

        def finished() -> Run | None:
            run.refresh_from_db()
            return run if run.is_finished else None

        wait_for(finished, 300, message="the training")
        logs = "".join(worker.log() for worker in workers)
    finally:
        for worker in workers:
            stop_worker(worker)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.attempts == 1, "the duplicate delivery must not start the run a second time"
    assert run.result["resumed_from"] is None
    assert "live lease" in logs, (
        "no duplicate delivery happened; the test did not exercise the lease"
    )
