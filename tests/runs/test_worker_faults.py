"""Real worker processes under faults: a training whose worker is SIGKILLed resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from backend.runs.models import Run
from backend.runs.services import launch_run
from tests.conftest import WorkerProcess, wait_for
from tests.datasets.factories import DatasetFactory, ImageFactory

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
    dataset = DatasetFactory()
    for fst in range(1, 7):
        for diagnosis in ("nevus", "melanoma"):
            ImageFactory(dataset=dataset, fst=fst, diagnosis=diagnosis)
    config = {
        "image_size": 16,
        "block_out_channels": [16, 32],
        "diagnoses": ["nevus", "melanoma"],
        "batch_size": 8,
        "train_steps": 300,
        "checkpoint_every": 20,
        "keep_checkpoints": 2,
        "sample_every": 0,
        "log_every": 5,
    }
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
    dataset = DatasetFactory()
    for fst in range(1, 7):
        for diagnosis in ("nevus", "melanoma"):
            ImageFactory(dataset=dataset, fst=fst, diagnosis=diagnosis)
    tiny = {
        "image_size": 16, "block_out_channels": [16, 32], "diagnoses": ["nevus", "melanoma"],
        "batch_size": 4, "train_steps": 2, "checkpoint_every": 2, "sample_every": 0,
    }  # fmt: skip
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
