"""FairDerm's job layer: the Celery app, its queues and thin tasks."""

from worker.celery import app

__all__ = ["app"]
