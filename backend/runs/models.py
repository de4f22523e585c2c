"""Runs: one training, generation, metric or downstream job, with its lineage and artifacts."""

from __future__ import annotations

import socket
import uuid
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import models
from django.urls import reverse


class Leased(models.Model):
    """A unit of work one worker holds at a time: a lease renewed by heartbeats, and attempts.

    The row is the source of truth; a worker writes to it only while its ``lease_token``
    matches (backend/runs/execution.py).
    """

    worker_host = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_token = models.UUIDField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def grant_lease(
        self, worker_host: str, now: datetime, *, new_attempt: bool = True
    ) -> uuid.UUID:
        """Give this row to ``worker_host`` (the caller saves it under its row lock).

        ``new_attempt=False`` takes the lease without counting an attempt (gathering the
        results of a run's shards is not a retry of the run).
        """
        self.lease_token = uuid.uuid4()
        self.attempts += 1 if new_attempt else 0
        self.heartbeat_at = now
        self.worker_host = worker_host or socket.gethostname()
        self.started_at = self.started_at or now
        return self.lease_token

    LEASE_FIELDS = (
        "status",
        "attempts",
        "lease_token",
        "heartbeat_at",
        "worker_host",
        "started_at",
    )


class Run(Leased):
    class Kind(models.TextChoices):
        TRAIN_CONDITIONAL = "train-conditional", "Train conditional diffusion"
        TRAIN_LORA = "train-lora", "Train Stable Diffusion LoRA"
        TRAIN_TEXTUAL_INVERSION = "train-textual-inversion", "Train textual inversion"
        GENERATE = "generate", "Generate a synthetic set"
        EVALUATE = "evaluate", "Evaluate quality metrics"
        DOWNSTREAM = "downstream", "Downstream classifier experiment"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        TIMED_OUT = "timed-out", "Timed out"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT)

    kind = models.CharField(max_length=32, choices=Kind.choices)
    uid = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, help_text="Names the run's folders."
    )
    name = models.CharField(max_length=200, blank=True)
    config = models.JSONField(help_text="The kind's config dataclass as JSON, validated at launch.")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    cancel_requested = models.BooleanField(default=False)

    # Progress, written by the worker while the run executes.
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss_history = models.JSONField(
        default=list, blank=True, help_text="[[step, loss], ...], thinned."
    )
    eta_seconds = models.FloatField(null=True, blank=True)
    log_tail = models.TextField(blank=True)
    latest_sample = models.CharField(
        max_length=500, blank=True, help_text="Path under ARTIFACTS_ROOT."
    )
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    # Execution bookkeeping: which worker holds the run, for how long, how often it started.
    device = models.CharField(max_length=64, blank=True)
    gpu_seconds = models.FloatField(default=0.0)
    peak_gpu_memory_mb = models.FloatField(
        null=True, blank=True, help_text="Peak allocated GPU memory."
    )

    # Lineage.
    parents = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="children")
    datasets = models.ManyToManyField("datasets.Dataset", blank=True, related_name="runs")
    training_sets = models.ManyToManyField("datasets.TrainingSet", blank=True, related_name="runs")

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("runs:detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress_percent(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 100.0
        return 100.0 * self.step / self.total_steps if self.total_steps else 0.0

    @property
    def workdir(self) -> Path:
        """The run's folder under ARTIFACTS_ROOT (checkpoints, samples, outputs).

        Named by id and uid, so a run can never pick up the files of an older run that had
        the same id in a database since reset.
        """
        return Path(settings.ARTIFACTS_ROOT) / "runs" / self.folder_name

    @property
    def folder_name(self) -> str:
        return f"{self.pk}-{self.uid.hex[:12]}"

    @property
    def gpu_cost(self) -> float:
        return self.gpu_seconds / 3600.0 * settings.GPU_PRICE_PER_HOUR


class Artifact(models.Model):
    """A file or folder a run produced, with its content hash."""

    class Kind(models.TextChoices):
        MODEL = "model", "Model"
        CHECKPOINT = "checkpoint", "Checkpoint"
        IMAGES = "images", "Images"
        SAMPLE_GRID = "sample-grid", "Sample grid"
        REPORT = "report", "Report"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    path = models.CharField(max_length=500, help_text="Path relative to ARTIFACTS_ROOT.")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "name"]
        constraints = [
            models.UniqueConstraint(fields=["run", "name"], name="unique_artifact_name_per_run")
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.name}"

    @property
    def absolute_path(self) -> Path:
        """Where the artifact is on this machine's disk (it may still have to be fetched)."""
        return Path(settings.ARTIFACTS_ROOT) / self.path

    def fetch(self) -> Path:
        """The local path of the artifact (a file or folder), downloaded first when kept remotely.

        A folder's files are checked as a whole against the recorded tree hash.
        """
        from backend.storage import StorageIntegrityError, artifacts
        from validation.files import sha256_tree

        mirror = artifacts()
        if not mirror.remote or mirror.exists(self.path):
            return mirror.fetch(self.path, sha256=self.sha256 or None)
        folder = mirror.fetch_tree(self.path)
        if self.sha256 and sha256_tree(folder) != self.sha256:
            folder = mirror.fetch_tree(self.path, refresh=True)  # a stale cached copy
            if sha256_tree(folder) != self.sha256:
                raise StorageIntegrityError(
                    f"artifacts storage: {self.path} does not match its recorded sha256"
                )
        return folder


class RunShard(Leased):
    """One slice of a run's work that any free worker can take (e.g. every n-th image of a plan).

    A shard has its own lease and heartbeat, like a run; the run stays ``running`` until the
    last shard finishes and gathers the results.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    items_done = models.PositiveIntegerField(default=0)
    items_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="unique_shard_index_per_run")
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} shard {self.index} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED
