"""Executing runs: the lease makes duplicate deliveries no-ops; progress, cancel and failures land in the row."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from backend.runs import kinds
from backend.runs.execution import (
    RunContext,
    RunHeldElsewhere,
    claim_run,
    execute_run,
    reap_stale_runs,
)
from backend.runs.models import Run
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass(frozen=True)
class ProbeConfig:
    steps: int = 3
    fail: bool = False
    wait_for_stop: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeConfig:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "fail": self.fail, "wait_for_stop": self.wait_for_stop}


def probe_executor(ctx: RunContext, config: ProbeConfig) -> dict[str, Any]:
    for step in range(1, config.steps + 1):
        ctx.progress(step, config.steps, loss=1.0 / step)
        if config.fail and step == 2:
            raise RuntimeError("probe failure at step 2")
    if config.wait_for_stop:
        deadline = time.monotonic() + 20
        while not ctx.should_stop():
            if time.monotonic() > deadline:
                raise TimeoutError("never asked to stop")
            time.sleep(0.05)
        return {"stopped_at": config.steps}
    return {"done": config.steps}


@pytest.fixture(autouse=True)
def probe_kind(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Register a fast CPU kind under the (not yet implemented) 'evaluate' name."""
    settings.RUN_HEARTBEAT_SECONDS = 0.1
    kinds._load_builtin_kinds()
    monkeypatch.setitem(
        kinds._REGISTRY,
        "evaluate",
        kinds.RunKind(
            kind="evaluate",
            config_type=ProbeConfig,
            executor_path=f"{__name__}.probe_executor",
            uses_gpu=False,
            description="probe",
        ),
    )


def probe_run(**config: Any) -> Run:
    return RunFactory(kind=Run.Kind.EVALUATE, config=ProbeConfig(**config).to_dict())


def test_a_run_executes_and_records_progress_and_result() -> None:
    run = probe_run(steps=4)
    assert execute_run(run.pk, "host-a") == Run.Status.SUCCEEDED
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert (run.step, run.total_steps, run.attempts, run.worker_host) == (4, 4, 1, "host-a")
    assert run.loss_history[-1] == [4, 0.25]
    assert run.result == {"done": 4}
    assert run.lease_token is None and run.finished_at is not None
    assert "succeeded" in run.log_tail
    assert run.device == "cpu" and run.gpu_seconds == 0


def test_a_failure_is_recorded_with_its_traceback() -> None:
    run = probe_run(fail=True)
    assert execute_run(run.pk, "host-a") == Run.Status.FAILED
    run.refresh_from_db()
    assert "RuntimeError: probe failure at step 2" in run.error
    assert run.step == 2


def test_a_duplicate_delivery_waits_while_the_lease_is_live(settings: Any) -> None:
    run = probe_run()
    token = claim_run(run.pk, "host-a")
    assert token is not None
    with pytest.raises(RunHeldElsewhere) as held:
        claim_run(run.pk, "host-b")
    assert 0 < held.value.retry_in <= settings.RUN_LEASE_SECONDS + 1
    run.refresh_from_db()
    assert (run.worker_host, run.attempts, run.lease_token) == ("host-a", 1, token)


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_finish(settings: Any) -> None:
    run = probe_run()
    old = claim_run(run.pk, "host-a")
    Run.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.RUN_LEASE_SECONDS + 5)
    )
    new = claim_run(run.pk, "host-b")
    assert new is not None and new != old
    from backend.runs.execution import _finish

    assert _finish(run.pk, old, status=Run.Status.SUCCEEDED) is False
    run.refresh_from_db()
    assert (run.status, run.worker_host, run.attempts) == (Run.Status.RUNNING, "host-b", 2)


def test_the_attempt_cap_fails_the_run(settings: Any) -> None:
    run = probe_run()
    Run.objects.filter(pk=run.pk).update(attempts=settings.RUN_MAX_ATTEMPTS)
    assert claim_run(run.pk, "host-a") is None
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert "gave up after" in run.error


def test_a_running_run_stops_when_cancelled() -> None:
    run = probe_run(wait_for_stop=True)
    outcome: list[str | None] = []
    worker = threading.Thread(target=lambda: outcome.append(execute_run(run.pk, "host-a")))
    worker.start()
    deadline = time.monotonic() + 10
    while Run.objects.get(pk=run.pk).status != Run.Status.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    Run.objects.filter(pk=run.pk).update(cancel_requested=True)
    worker.join(timeout=30)
    assert outcome == [Run.Status.CANCELLED]
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert run.result == {"stopped_at": 3}


def test_the_soft_time_limit_ends_the_run_timed_out() -> None:
    run = probe_run(wait_for_stop=True)
    assert execute_run(run.pk, "host-a", soft_time_limit=0.5) == Run.Status.TIMED_OUT
    run.refresh_from_db()
    assert run.status == Run.Status.TIMED_OUT
    assert "soft time limit" in run.error


def test_the_reaper_requeues_runs_whose_heartbeat_stopped_and_fails_them_at_the_cap(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.runs import services

    sent: list[int] = []
    monkeypatch.setattr(services, "enqueue", lambda run: sent.append(run.pk))
    stale, exhausted, live = probe_run(), probe_run(), probe_run()
    for run in (stale, exhausted, live):
        claim_run(run.pk, "host")
    old = timezone.now() - timedelta(seconds=settings.RUN_LEASE_SECONDS + 1)
    Run.objects.filter(pk__in=[stale.pk, exhausted.pk]).update(heartbeat_at=old)
    Run.objects.filter(pk=exhausted.pk).update(attempts=settings.RUN_MAX_ATTEMPTS)
    outcome = reap_stale_runs()
    assert (outcome["requeued"], outcome["failed"]) == ([stale.pk], [exhausted.pk])
    assert sent == [stale.pk]
    for run in (stale, exhausted, live):
        run.refresh_from_db()
    assert (stale.status, stale.lease_token) == (Run.Status.QUEUED, None)
    assert exhausted.status == Run.Status.FAILED and "gave up" in exhausted.error
    assert live.status == Run.Status.RUNNING and isinstance(live.lease_token, uuid.UUID)
    assert not any(reap_stale_runs().values())
    token = claim_run(stale.pk, "host-c")  # the requeued task takes it over
    assert token is not None
    stale.refresh_from_db()
    assert (stale.status, stale.attempts, stale.worker_host) == (Run.Status.RUNNING, 2, "host-c")
