"""Thin Celery tasks: they take primary keys, and the library code they call does the work.

The database rows are the source of truth (status, progress, results); tasks return nothing.
Django-side code is imported inside each task so that importing this module stays cheap.
"""

from __future__ import annotations

from celery import Task

from worker.celery import app


@app.task(name="worker.tasks.import_dataset")
def import_dataset(*, dataset_pk: int, metadata: str, images_dir: str) -> None:
    """Import the files of an ``importing`` dataset (cpu queue)."""
    from backend.datasets.importing import run_import

    run_import(dataset_pk, metadata, images_dir)


def _execute(task: Task, run_pk: int) -> None:
    from backend.runs.execution import RunHeldElsewhere, execute_run

    try:
        execute_run(run_pk, worker_host=task.request.hostname or "")
    except RunHeldElsewhere as held:
        # A duplicate or early redelivery: look again when the holder's lease would expire.
        raise task.retry(countdown=held.retry_in, max_retries=None) from held


@app.task(name="worker.tasks.execute_run_gpu", bind=True)
def execute_run_gpu(self: Task, *, run_pk: int) -> None:
    """Execute a run that needs the accelerator (gpu queue)."""
    _execute(self, run_pk)


@app.task(name="worker.tasks.execute_run_cpu", bind=True)
def execute_run_cpu(self: Task, *, run_pk: int) -> None:
    """Execute a run that needs no accelerator (cpu queue)."""
    _execute(self, run_pk)


@app.task(name="worker.tasks.execute_shard_gpu", bind=True)
def execute_shard_gpu(self: Task, *, shard_pk: int) -> None:
    """Generate one shard of a run (gpu queue); the last shard to finish gathers the run."""
    from backend.runs.execution import RunHeldElsewhere
    from backend.runs.sharding import execute_shard

    try:
        execute_shard(shard_pk, worker_host=self.request.hostname or "")
    except RunHeldElsewhere as held:
        raise self.retry(countdown=held.retry_in, max_retries=None) from held


@app.task(name="worker.tasks.reap_runs")
def reap_runs() -> None:
    """Requeue or fail runs whose worker stopped heartbeating (cpu queue)."""
    from backend.runs.execution import reap_stale_runs

    reap_stale_runs()
