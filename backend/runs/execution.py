"""Executing a run inside a worker: lease, heartbeat, progress, cancellation and the outcome.

The run's database row is the source of truth. ``execute_run`` first claims the run under a
row lock: a run that is finished, cancelled, or held by a live lease elsewhere (a duplicate
delivery of the same task) is left alone. While the executor works, a heartbeat thread
renews the lease and picks up cancel requests; the executor polls ``RunContext.should_stop``
(training writes a checkpoint and returns). Progress goes to the row through a throttled
``ProgressReporter``. Every final write is conditional on still holding the lease, so a
worker that lost its lease cannot overwrite the outcome of the one that took over.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import F
from django.utils import timezone

from backend.runs.kinds import get_kind
from backend.runs.models import Run
from backend.storage import artifacts
from validation.files import atomic_path

logger = logging.getLogger(__name__)

#: At most this many points are kept in Run.loss_history (older points are thinned).
MAX_LOSS_POINTS = 500
LOG_TAIL_LINES = 200


def resolve_device(preference: str) -> str:
    """Turn COMPUTE_DEVICE (auto, cpu, mps, cuda, cuda:N) into a torch device string."""
    if preference != "auto":
        return preference
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class RunHeldElsewhere(Exception):
    """Another worker holds the run's live lease; try this delivery again after ``retry_in`` s."""

    def __init__(self, run_pk: int, holder: str, retry_in: float):
        super().__init__(f"run {run_pk} is held by {holder}; retry in {retry_in:.0f} s")
        self.retry_in = retry_in


class HandedOff(Exception):
    """Raised by an executor whose work goes on elsewhere (shard tasks): the run stays
    ``running`` without a lease, and whoever finishes the work records the outcome."""


class RunStopped(Exception):
    """Raised by executors that cannot return early themselves when a stop is requested."""


class ProgressReporter:
    """Collects progress in memory and writes it to the run's row at most every ``interval`` s."""

    def __init__(self, run_pk: int, lease_token: uuid.UUID, interval: float = 2.0):
        self.run_pk = run_pk
        self.lease_token = lease_token
        self.interval = interval
        self._step = 0
        self._total = 0
        self._losses: list[list[float]] = []
        self._log: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._started = time.monotonic()
        self._last_flush = 0.0
        self._eta: float | None = None
        self._gpu_memory_mb: float | None = None
        self._first_step: int | None = None  # a resumed run starts counting from here
        self._lock = threading.Lock()

    def update(
        self, step: int, total: int, loss: float | None = None, gpu_memory_mb: float | None = None
    ) -> None:
        with self._lock:
            if gpu_memory_mb is not None:
                self._gpu_memory_mb = gpu_memory_mb
            self._step, self._total = step, total
            if loss is not None:
                self._losses.append([step, round(float(loss), 6)])
                if len(self._losses) > MAX_LOSS_POINTS:
                    self._losses = self._losses[::2]
            if self._first_step is None:
                self._first_step = max(0, step - 1)
            done = step - self._first_step
            elapsed = time.monotonic() - self._started
            self._eta = elapsed / done * (total - step) if done > 0 and total else None
        self.flush()

    def log(self, message: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        with self._lock:
            self._log.append(f"{stamp} {message}")
        logger.info("run %s: %s", self.run_pk, message)
        self.flush()

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < self.interval:
            return
        with self._lock:
            fields = {
                "step": self._step,
                "total_steps": self._total,
                "loss_history": list(self._losses),
                "eta_seconds": self._eta,
                "log_tail": "\n".join(self._log),
            }
            if self._gpu_memory_mb is not None:
                fields["peak_gpu_memory_mb"] = self._gpu_memory_mb
        if self._write(**fields):
            self._last_flush = now

    def set_latest_sample(self, relative_path: str) -> None:
        self._write(latest_sample=relative_path)

    def _write(self, **fields: Any) -> bool:
        """Write progress to the row; a database outage is logged and the next flush retries
        (progress is worth less than the job: a restarting database must not stop training)."""
        try:
            Run.objects.filter(pk=self.run_pk, lease_token=self.lease_token).update(**fields)
        except DatabaseError:
            logger.warning("run %s: progress not saved (database unavailable)", self.run_pk)
            close_old_connections()
            return False
        return True


class Heartbeat(threading.Thread):
    """Renews a lease every few seconds and notices cancel requests and lost leases.

    ``rows`` selects the leased row (a run, or a shard of one); ``cancelled`` says whether the
    run was asked to stop.
    """

    def __init__(
        self,
        rows: Any,
        lease_token: uuid.UUID,
        interval: float,
        cancelled: Callable[[], bool],
        name: str,
    ):
        super().__init__(name=f"heartbeat-{name}", daemon=True)
        self.rows = rows
        self.lease_token = lease_token
        self.interval = interval
        self.cancelled = cancelled
        self.stop_requested = threading.Event()
        self.lease_lost = threading.Event()
        self._finished = threading.Event()

    @classmethod
    def for_run(cls, run_pk: int, lease_token: uuid.UUID, interval: float) -> Heartbeat:
        return cls(
            Run.objects.filter(pk=run_pk),
            lease_token,
            interval,
            lambda: Run.objects.filter(pk=run_pk, cancel_requested=True).exists(),
            name=f"run-{run_pk}",
        )

    def beat(self) -> None:
        updated = self.rows.filter(lease_token=self.lease_token).update(heartbeat_at=timezone.now())
        if not updated:
            self.lease_lost.set()
            self.stop_requested.set()
            return
        if self.cancelled():
            self.stop_requested.set()

    def run(self) -> None:
        try:
            while not self._finished.wait(self.interval):
                try:
                    self.beat()
                except Exception:  # a database blip must not kill the job; the next beat retries
                    logger.exception("%s failed", self.name)
                    close_old_connections()
        finally:
            connection.close()

    def finish(self) -> None:
        self._finished.set()
        self.join(timeout=self.interval + 5)


@dataclass
class RunContext:
    """What an executor gets: the run row, its folder, the device and progress hooks."""

    run: Run
    workdir: Path
    device: str
    reporter: ProgressReporter
    heartbeat: Heartbeat
    deadline: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def should_stop(self) -> bool:
        """True once the run is cancelled, its lease is lost or its soft time limit is near."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.extra["timed_out"] = True
            return True
        return self.heartbeat.stop_requested.is_set()

    def log(self, message: str) -> None:
        self.reporter.log(message)

    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        self.reporter.update(step, total, loss, gpu_memory_mb=self._gpu_memory_mb())

    def _gpu_memory_mb(self) -> float | None:
        if not self.device.startswith("cuda"):
            return None
        import torch

        return round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)

    def save_sample_grid(self, image: Any, step: int) -> str:
        """Save a PIL sample grid as the run's latest sample; return its path under ARTIFACTS_ROOT."""
        target = self.workdir / "samples" / f"step-{step:07d}.png"
        with atomic_path(target) as tmp:
            image.save(tmp, format="PNG")
        relative = artifacts().publish(target)
        self.reporter.set_latest_sample(relative)
        return relative


def claim_run(run_pk: int, worker_host: str) -> uuid.UUID | None:
    """Take the run's lease, or return None when this delivery must not execute it.

    Raises ``RunHeldElsewhere`` while another worker's lease is live.
    """
    now = timezone.now()
    lease = timedelta(seconds=settings.RUN_LEASE_SECONDS)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_pk)
        if run.is_finished:
            logger.info("run %s is already %s; ignoring this delivery", run_pk, run.status)
            return None
        if run.cancel_requested:
            run.status = Run.Status.CANCELLED
            run.finished_at = now
            run.save(update_fields=["status", "finished_at"])
            return None
        if run.status == Run.Status.RUNNING and run.heartbeat_at and now - run.heartbeat_at < lease:
            # Either a duplicate delivery while the holder works, or a redelivery after the
            # holder died (its last heartbeat is still fresh). Come back once the lease would
            # have expired: then the run is finished (a no-op) or free to take over.
            remaining = (run.heartbeat_at + lease - now).total_seconds()
            logger.warning(
                "run %s is held by %s (live lease); retrying in %.0f s",
                run_pk,
                run.worker_host,
                remaining,
            )
            raise RunHeldElsewhere(run_pk, run.worker_host, remaining + 1.0)
        if run.attempts >= settings.RUN_MAX_ATTEMPTS:
            run.status = Run.Status.FAILED
            run.error = f"gave up after {run.attempts} attempts (the worker died or lost its lease each time)"
            run.finished_at = now
            run.save(update_fields=["status", "error", "finished_at"])
            return None
        run.status = Run.Status.RUNNING
        token = run.grant_lease(worker_host, now)
        run.save(update_fields=list(Run.LEASE_FIELDS))
    return token


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is ENOSPC; libraries such as safetensors report it
    as their own error type with the OS message inside."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


#: How long the final status write keeps trying through a database outage (seconds).
FINISH_RETRY_SECONDS = 120.0


def _finish(run_pk: int, token: uuid.UUID, **fields: Any) -> bool:
    """Record the outcome (and give the lease up); retried while the database restarts."""
    fields.setdefault("finished_at", timezone.now())
    fields["lease_token"] = None
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            return bool(Run.objects.filter(pk=run_pk, lease_token=token).update(**fields))
        except (OperationalError, InterfaceError):
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("run %s: outcome not saved yet (database unavailable); retrying", run_pk)
            close_old_connections()
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def execute_run(
    run_pk: int, worker_host: str = "", *, soft_time_limit: float | None = None
) -> str | None:
    """Claim and execute run ``run_pk``; return its final status (None if not executed here)."""
    token = claim_run(run_pk, worker_host)
    if token is None:
        return None
    run = Run.objects.get(pk=run_pk)
    spec = get_kind(run.kind)

    def body(ctx: RunContext) -> dict[str, Any]:
        return spec.executor()(ctx, spec.parse_config(run.config))

    return run_under_lease(
        run, token, body, uses_gpu=spec.uses_gpu, soft_time_limit=soft_time_limit
    )


def run_under_lease(
    run: Run,
    token: uuid.UUID,
    body: Callable[[RunContext], dict[str, Any]],
    *,
    uses_gpu: bool,
    soft_time_limit: float | None = None,
) -> str | None:
    """Run ``body`` while holding the run's lease, and record its outcome on the row.

    The heartbeat renews the lease and turns cancel requests into ``should_stop``; a result
    returned after a stop request means cancelled, after the soft deadline timed out.
    Returns the final status, ``"handed-off"`` when the body raised ``HandedOff``, or None
    when the lease was lost before the outcome could be written.
    """
    device = resolve_device(settings.COMPUTE_DEVICE) if uses_gpu else "cpu"
    Run.objects.filter(pk=run.pk).update(device=device)
    reporter = ProgressReporter(run.pk, token)
    heartbeat = Heartbeat.for_run(run.pk, token, interval=settings.RUN_HEARTBEAT_SECONDS)
    limit = soft_time_limit if soft_time_limit is not None else settings.CELERY_TASK_SOFT_TIME_LIMIT
    # Stop a little before Celery's soft limit, so the executor can write its checkpoint.
    deadline = time.monotonic() + max(1.0, limit - min(60.0, 0.05 * limit))
    ctx = RunContext(
        run=run,
        workdir=run.workdir,
        device=device,
        reporter=reporter,
        heartbeat=heartbeat,
        deadline=deadline,
    )
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    heartbeat.start()
    started = time.monotonic()
    reporter.log(f"attempt {run.attempts} on {run.worker_host} ({device})")
    status: str
    fields: dict[str, Any] = {}
    try:
        result = body(ctx)
        if ctx.extra.get("timed_out"):
            status, fields = (
                Run.Status.TIMED_OUT,
                {"result": result or {}, "error": "stopped at the soft time limit"},
            )
        elif heartbeat.stop_requested.is_set():
            status, fields = Run.Status.CANCELLED, {"result": result or {}}
        else:
            status, fields = Run.Status.SUCCEEDED, {"result": result or {}}
    except HandedOff:
        heartbeat.finish()
        reporter.flush(force=True)
        Run.objects.filter(pk=run.pk, lease_token=token).update(
            lease_token=None, heartbeat_at=timezone.now()
        )
        return "handed-off"
    except SoftTimeLimitExceeded:
        status, fields = Run.Status.TIMED_OUT, {"error": "soft time limit exceeded"}
    except RunStopped:
        status = Run.Status.TIMED_OUT if ctx.extra.get("timed_out") else Run.Status.CANCELLED
    except Exception as exc:
        logger.exception("run %s failed", run.pk)
        reporter.log(f"failed: {exc.__class__.__name__}: {exc}")
        error = "".join(traceback.format_exception(exc))[-5000:]
        if _disk_full(exc):
            # Said first, in words: the traceback alone reads like a bug.
            error = f"disk full (ENOSPC): no space left on the device\n\n{error}"
        status, fields = Run.Status.FAILED, {"error": error}
    finally:
        heartbeat.finish()
    elapsed = time.monotonic() - started
    reporter.log(f"{status} after {elapsed:.1f} s")
    reporter.flush(force=True)
    gpu_seconds = F("gpu_seconds") + (elapsed if device.startswith("cuda") else 0.0)
    if not _finish(
        run.pk, token, status=status, gpu_seconds=gpu_seconds, eta_seconds=None, **fields
    ):
        logger.warning(
            "run %s: lease lost before the outcome (%s) could be recorded", run.pk, status
        )
        return None
    return status


def reap_stale_runs(*, now: Any = None) -> dict[str, list[int]]:
    """Requeue runs and shards whose worker stopped heartbeating; fail those out of attempts.

    A run (or shard) is stale when it is ``running`` and its last heartbeat is older than the
    lease (RUN_LEASE_SECONDS): its worker died, and the broker may not hand the task back for
    a long time (Redis waits for the visibility timeout). A stale one with attempts left goes
    back to ``queued`` with a fresh task and resumes from its last checkpoint or image; one
    without is failed. A run handed off to shards is left alone while any shard is unfinished.
    Each change is one conditional UPDATE, so when several workers reap at once, exactly one
    of them acts.
    """
    from backend.runs.models import RunShard
    from backend.runs.services import enqueue
    from backend.runs.sharding import enqueue_shard, finalize_if_done

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.RUN_LEASE_SECONDS)
    outcome: dict[str, list[int]] = {
        "requeued": [],
        "failed": [],
        "shards_requeued": [],
        "shards_failed": [],
    }
    for shard in RunShard.objects.filter(status=RunShard.Status.RUNNING, heartbeat_at__lt=cutoff):
        same = RunShard.objects.filter(
            pk=shard.pk, status=RunShard.Status.RUNNING, heartbeat_at=shard.heartbeat_at
        )
        if shard.attempts < settings.RUN_MAX_ATTEMPTS:
            if same.update(status=RunShard.Status.QUEUED, lease_token=None):
                outcome["shards_requeued"].append(shard.pk)
                enqueue_shard(shard)
        elif same.update(
            status=RunShard.Status.FAILED,
            lease_token=None,
            finished_at=now,
            error=f"the worker stopped sending heartbeats on each of {shard.attempts} attempts; gave up",
        ):
            outcome["shards_failed"].append(shard.pk)
            finalize_if_done(shard.run_id)
    stale = Run.objects.filter(status=Run.Status.RUNNING, heartbeat_at__lt=cutoff)
    for run in stale.only("pk", "attempts", "heartbeat_at", "lease_token"):
        if run.lease_token is None and run.shards.exclude(status__in=RunShard.FINISHED).exists():
            continue  # handed off: its shards have leases of their own
        same = Run.objects.filter(
            pk=run.pk, status=Run.Status.RUNNING, heartbeat_at=run.heartbeat_at
        )
        if run.attempts < settings.RUN_MAX_ATTEMPTS:
            if same.update(status=Run.Status.QUEUED, lease_token=None):
                outcome["requeued"].append(run.pk)
                enqueue(Run.objects.get(pk=run.pk))
        elif same.update(
            status=Run.Status.FAILED,
            lease_token=None,
            finished_at=now,
            error=f"the worker stopped sending heartbeats on each of {run.attempts} attempts; gave up",
        ):
            outcome["failed"].append(run.pk)
    if any(outcome.values()):
        logger.warning("reaper: %s", outcome)
    return outcome
