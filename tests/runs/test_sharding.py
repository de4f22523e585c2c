"""Generation split into shards that any worker takes, gathered by whoever finishes the last one."""

from __future__ import annotations

from typing import Any

import pytest

from backend.datasets.models import Dataset, Origin
from backend.runs import sharding
from backend.runs.execution import execute_run
from backend.runs.models import Run, RunShard
from backend.runs.services import cancel_run, launch_run
from tests.datasets.factories import dataset_with_cells
from tests.runs.factories import TINY_TRAINING

pytestmark = [pytest.mark.django_db(transaction=True)]

TINY = {**TINY_TRAINING, "batch_size": 4, "train_steps": 2, "checkpoint_every": 2}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Keep tasks in the test: record what would be sent to the broker."""
    from backend.runs import services

    calls: dict[str, list[int]] = {"runs": [], "shards": []}
    monkeypatch.setattr(services, "enqueue", lambda run: calls["runs"].append(run.pk))
    monkeypatch.setattr(sharding, "enqueue_shard", lambda shard: calls["shards"].append(shard.pk))
    return calls


@pytest.fixture
def trained(sent: dict, settings: Any) -> Run:
    settings.COMPUTE_DEVICE = "cpu"
    dataset = dataset_with_cells()
    run = launch_run(kind="train-conditional", config=TINY, datasets=[dataset])
    assert execute_run(run.pk, "trainer") == Run.Status.SUCCEEDED
    return run


def launch_sharded(trained: Run, shards: int = 3) -> Run:
    config = {
        "rule": "per_cell",
        "count": 1,
        "num_inference_steps": 2,
        "shards": shards,
        "batch_size": 2,
    }
    return launch_run(kind="generate", config=config, parents=[trained])


def test_shards_generate_every_image_once_and_the_last_one_gathers(
    trained: Run, sent: dict
) -> None:
    run = launch_sharded(trained)
    assert execute_run(run.pk, "coordinator") == "handed-off"
    run.refresh_from_db()
    assert (run.status, run.lease_token, run.total_steps) == (Run.Status.RUNNING, None, 12)
    shards = list(run.shards.order_by("index"))
    assert [s.items_total for s in shards] == [4, 4, 4]
    assert sorted(sent["shards"]) == [s.pk for s in shards]
    for number, shard in enumerate(shards):
        assert sharding.execute_shard(shard.pk, f"worker-{number}") == RunShard.Status.SUCCEEDED
        run.refresh_from_db()
        if number < 2:
            assert run.status == Run.Status.RUNNING
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.worker_host == "worker-2"  # the one that finished the last shard gathered the run
    synthetic = Dataset.objects.get(generated_by=run)
    assert synthetic.origin == Origin.SYNTHETIC and synthetic.image_count == 12
    assert sorted(synthetic.images.values_list("image_id", flat=True)) == [
        f"{i:06d}" for i in range(12)
    ]
    assert {s.worker_host for s in run.shards.all()} == {"worker-0", "worker-1", "worker-2"}
    assert run.result["shards"] == 3 and run.result["tone"]["fidelity"]["overall"]["n"] == 12
    # A late duplicate of a shard task finds nothing to do and changes nothing.
    assert sharding.execute_shard(shards[0].pk, "late") is None
    assert Dataset.objects.get(generated_by=run).image_count == 12


def test_a_failed_shard_fails_the_run_with_its_reason(
    trained: Run, sent: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.runs.executors import generate

    run = launch_sharded(trained, shards=2)
    execute_run(run.pk, "coordinator")
    original = generate.generate_shard

    def broken(run: Run, shard_index: int, *args: Any, **kwargs: Any) -> int:
        if shard_index == 1:
            raise OSError("No space left on device")
        return original(run, shard_index, *args, **kwargs)

    monkeypatch.setattr(generate, "generate_shard", broken)
    for shard in run.shards.order_by("index"):
        sharding.execute_shard(shard.pk, "w")
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert "1 of 2 shards failed" in run.error and "No space left on device" in run.error
    assert not Dataset.objects.filter(generated_by=run).exists()


def test_cancelling_a_sharded_run_cancels_its_waiting_shards(trained: Run, sent: dict) -> None:
    run = launch_sharded(trained, shards=2)
    execute_run(run.pk, "coordinator")
    cancel_run(run)
    for shard in run.shards.all():
        assert sharding.execute_shard(shard.pk, "w") is None
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert set(run.shards.values_list("status", flat=True)) == {RunShard.Status.CANCELLED}


def test_the_reaper_leaves_handed_off_runs_to_their_shards(
    trained: Run, sent: dict, settings: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from backend.runs.execution import reap_stale_runs

    run = launch_sharded(trained, shards=2)
    execute_run(run.pk, "coordinator")
    old = timezone.now() - timedelta(seconds=settings.RUN_LEASE_SECONDS + 5)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=old)
    shard = run.shards.get(index=0)
    sharding.claim_shard(shard.pk, "dead-worker")
    RunShard.objects.filter(pk=shard.pk).update(heartbeat_at=old)
    sent["shards"].clear()
    outcome = reap_stale_runs()
    assert outcome["requeued"] == [] and outcome["shards_requeued"] == [shard.pk]
    assert sent["shards"] == [shard.pk]
    shard.refresh_from_db()
    run.refresh_from_db()
    assert shard.status == RunShard.Status.QUEUED and run.status == Run.Status.RUNNING
