"""Thin Celery tasks: they take primary keys, and the library code they call does the work.

The database rows are the source of truth (status, progress, results); tasks return nothing.
Django-side code is imported inside each task so that importing this module stays cheap.
"""

from __future__ import annotations

from worker.celery import app


@app.task(name="worker.tasks.import_dataset")
def import_dataset(*, dataset_pk: int, metadata: str, images_dir: str) -> None:
    """Import the files of an ``importing`` dataset (cpu queue)."""
    from backend.datasets.importing import run_import

    run_import(dataset_pk, metadata, images_dir)


@app.task(name="worker.tasks.execute_run_gpu", bind=True)
def execute_run_gpu(self, *, run_pk: int) -> None:  # type: ignore[no-untyped-def]
    """Execute a run that needs the accelerator (gpu queue)."""
    from backend.runs.execution import execute_run

    execute_run(run_pk, worker_host=self.request.hostname or "")


@app.task(name="worker.tasks.execute_run_cpu", bind=True)
def execute_run_cpu(self, *, run_pk: int) -> None:  # type: ignore[no-untyped-def]
    """Execute a run that needs no accelerator (cpu queue)."""
    from backend.runs.execution import execute_run

    execute_run(run_pk, worker_host=self.request.hostname or "")
