"""A task goes through the configured broker (Redis in CI) to a real worker process."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.datasets.models import Dataset
from backend.datasets.services import import_in_background
from tests.conftest import WorkerProcess, wait_for
from tests.datasets.test_importing import row, write_set

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_an_import_task_reaches_a_real_worker_and_changes_the_row(
    celery_worker_process: WorkerProcess, tmp_path: Path
) -> None:
    metadata = write_set(tmp_path, [row(i) for i in range(6)])
    dataset = import_in_background(
        name="via-worker", format="phantom", metadata=metadata, images_dir=tmp_path
    )
    assert dataset.status == Dataset.Status.IMPORTING

    def finished() -> Dataset | None:
        dataset.refresh_from_db()
        return dataset if dataset.status != Dataset.Status.IMPORTING else None

    wait_for(finished, timeout=60, message="the worker to import the dataset")
    assert dataset.status == Dataset.Status.READY, dataset.errors
    assert dataset.images.count() == 6
    log = celery_worker_process.log()
    assert "worker.tasks.import_dataset" in log and "received" in log


def test_a_failing_import_is_recorded_by_the_worker(
    celery_worker_process: WorkerProcess, tmp_path: Path
) -> None:
    dataset = import_in_background(
        name="missing-folder",
        format="phantom",
        metadata=tmp_path / "none.csv",
        images_dir=tmp_path / "none",
    )

    def finished() -> bool:
        dataset.refresh_from_db()
        return dataset.status != Dataset.Status.IMPORTING

    wait_for(finished, timeout=60, message="the worker to fail the import")
    assert dataset.status == Dataset.Status.FAILED
    assert dataset.errors[0]["reason"] == "images folder not found"
