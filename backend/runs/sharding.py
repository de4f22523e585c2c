"""Shards: a run's work split into slices that any free worker takes, gathered at the end.

A generate run with ``shards > 1`` is first prepared by one worker (the plan is fixed in the
run folder), which creates one ``RunShard`` row per slice, sends one task per shard to the
gpu queue and hands the run off (``HandedOff``: the run stays ``running`` without a lease).
Each shard task takes the shard's own lease, generates its images and records its outcome.
The worker that finishes the last shard takes the run's lease again and runs the executor
once more, which now finds every shard done and gathers the results (the tone gate and the
dataset over all images). Image files are unique per plan index, so two workers can never
write the same image twice, and a retried shard skips the images already on disk.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from backend.runs.execution import (
    HandedOff,
    Heartbeat,
    RunContext,
    RunHeldElsewhere,
    RunStopped,
    resolve_device,
    run_under_lease,
)
from backend.runs.kinds import get_kind
from backend.runs.models import Run, RunShard

logger = logging.getLogger(__name__)


def enqueue_shard(shard: RunShard) -> None:
    from worker.tasks import execute_shard_gpu

    execute_shard_gpu.apply_async(kwargs={"shard_pk": shard.pk})


def coordinate(ctx: RunContext, total_items: int, shards: int) -> None:
    """Inside the run's executor: start the shards, or return once all of them are done.

    Raises ``HandedOff`` while shards are outstanding, ``RunStopped`` if the run was
    cancelled, and ``RuntimeError`` if a shard failed for good.
    """
    run = ctx.run
    rows = {shard.index: shard for shard in run.shards.all()}
    for index in range(shards):
        if index not in rows:
            rows[index] = RunShard.objects.create(
                run=run, index=index, items_total=len(range(index, total_items, shards))
            )
    pending = [shard for shard in rows.values() if not shard.is_finished]
    if pending:
        for shard in pending:
            enqueue_shard(shard)
        ctx.progress(sum(s.items_done for s in rows.values()), total_items)
        ctx.log(
            f"handed off to {len(pending)} shard task(s) of {shards}; any free worker takes them"
        )
        raise HandedOff
    failed = [s for s in rows.values() if s.status == RunShard.Status.FAILED]
    if failed:
        details = "; ".join(
            f"shard {s.index}: {s.error.strip().splitlines()[-1] if s.error else 'failed'}"
            for s in failed
        )
        raise RuntimeError(f"{len(failed)} of {shards} shards failed ({details})")
    if any(s.status == RunShard.Status.CANCELLED for s in rows.values()):
        raise RunStopped
    ctx.log(f"all {shards} shards done; gathering")


def claim_shard(shard_pk: int, worker_host: str) -> uuid.UUID | None:
    """Take a shard's lease (None: nothing to do; RunHeldElsewhere: try again later)."""
    now = timezone.now()
    lease = timedelta(seconds=settings.RUN_LEASE_SECONDS)
    with transaction.atomic():
        shard = RunShard.objects.select_for_update().select_related("run").get(pk=shard_pk)
        if shard.is_finished:
            return None
        if shard.run.cancel_requested or shard.run.is_finished:
            shard.status, shard.finished_at = RunShard.Status.CANCELLED, now
            shard.save(update_fields=["status", "finished_at"])
            return None
        if (
            shard.status == RunShard.Status.RUNNING
            and shard.heartbeat_at
            and now - shard.heartbeat_at < lease
        ):
            raise RunHeldElsewhere(
                shard.run_id,
                shard.worker_host,
                (shard.heartbeat_at + lease - now).total_seconds() + 1,
            )
        if shard.attempts >= settings.RUN_MAX_ATTEMPTS:
            shard.status, shard.finished_at = RunShard.Status.FAILED, now
            shard.error = f"gave up after {shard.attempts} attempts"
            shard.save(update_fields=["status", "finished_at", "error"])
            return None
        shard.status = RunShard.Status.RUNNING
        token = shard.grant_lease(worker_host, now)
        shard.save(update_fields=list(RunShard.LEASE_FIELDS))
    return token


def execute_shard(shard_pk: int, worker_host: str = "") -> str | None:
    """Claim and generate one shard, then gather the run if it was the last; return its status."""
    from backend.runs.executors.generate import generate_shard

    token = claim_shard(shard_pk, worker_host)
    if token is None:
        finalize_if_done(RunShard.objects.get(pk=shard_pk).run_id, worker_host)
        return None
    shard = RunShard.objects.select_related("run").get(pk=shard_pk)
    run = shard.run
    rows = RunShard.objects.filter(pk=shard_pk)
    heartbeat = Heartbeat(
        rows,
        token,
        settings.RUN_HEARTBEAT_SECONDS,
        lambda: Run.objects.filter(pk=run.pk, cancel_requested=True).exists(),
        name=f"run-{run.pk}-shard-{shard.index}",
    )
    heartbeat.start()

    def on_progress(done: int, total: int) -> None:
        rows.filter(lease_token=token).update(items_done=done)
        step = run.shards.aggregate(n=Sum("items_done"))["n"] or 0
        Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(step=step)

    fields: dict[str, object] = {}
    try:
        made = generate_shard(
            run,
            shard.index,
            resolve_device(settings.COMPUTE_DEVICE),
            on_progress=on_progress,
            should_stop=heartbeat.stop_requested.is_set,
        )
        if made < shard.items_total:
            status = RunShard.Status.CANCELLED
        else:
            status = RunShard.Status.SUCCEEDED
        fields["items_done"] = made
    except Exception as exc:
        logger.exception("run %s shard %s failed", run.pk, shard.index)
        status, fields["error"] = (
            RunShard.Status.FAILED,
            "".join(traceback.format_exception(exc))[-5000:],
        )
    finally:
        heartbeat.finish()
    rows.filter(lease_token=token).update(
        status=status, lease_token=None, finished_at=timezone.now(), **fields
    )
    finalize_if_done(run.pk, worker_host)
    return status


def finalize_if_done(run_pk: int, worker_host: str = "") -> str | None:
    """If every shard of the run is finished, take the run's lease and gather its results."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_pk)
        if run.is_finished or run.status != Run.Status.RUNNING or run.lease_token is not None:
            return None
        if not run.shards.exists() or run.shards.exclude(status__in=RunShard.FINISHED).exists():
            return None
        token = run.grant_lease(worker_host, timezone.now(), new_attempt=False)
        run.save(update_fields=list(Run.LEASE_FIELDS))
    spec = get_kind(run.kind)
    return run_under_lease(
        run,
        token,
        lambda ctx: spec.executor()(ctx, spec.parse_config(run.config)),
        uses_gpu=spec.uses_gpu,
    )
