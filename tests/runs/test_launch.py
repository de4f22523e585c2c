"""Launching runs: config validated against the kind's dataclass, inputs checked, enqueued on commit."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from backend.datasets.models import Dataset
from backend.runs.models import Run
from backend.runs.services import cancel_run, launch_run
from tests.accounts.factories import PASSWORD
from tests.datasets.factories import DatasetFactory
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    """Record what would go to each queue instead of sending it."""
    from worker import tasks

    calls: dict[str, list[dict[str, Any]]] = {"gpu": [], "cpu": []}
    monkeypatch.setattr(tasks.execute_run_gpu, "apply_async", lambda **kw: calls["gpu"].append(kw))
    monkeypatch.setattr(tasks.execute_run_cpu, "apply_async", lambda **kw: calls["cpu"].append(kw))
    return calls


def test_a_training_run_is_stored_and_sent_to_the_gpu_queue_on_commit(
    sent: dict, django_capture_on_commit_callbacks: Any
) -> None:
    dataset = DatasetFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = launch_run(
            kind="train-conditional",
            preset="cpu-demo-32px",
            config={"train_steps": 50},
            datasets=[dataset],
        )
        assert sent["gpu"] == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert sent["gpu"] == [{"kwargs": {"run_pk": run.pk}}]
    assert sent["cpu"] == []
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED
    assert run.config["train_steps"] == 50
    assert run.config["image_size"] == 32  # from the preset
    assert run.config["balancing"]["dark_fst_factor"] == 5.0
    assert list(run.datasets.all()) == [dataset]


def test_a_kind_without_an_executor_yet_is_refused(
    sent: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.runs import kinds

    monkeypatch.delitem(kinds._REGISTRY, "train-lora")  # a Run.Kind choice nobody registered
    with pytest.raises(ValidationError) as excinfo:
        launch_run(kind="train-lora")
    assert "not available yet" in " ".join(excinfo.value.message_dict["kind"])
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"kind": "train-everything"}, "kind", "unknown run kind"),
        ({"kind": "train-conditional", "config": {"image_size": 7}}, "config", "image_size"),
        ({"kind": "train-conditional", "config": {"learning_rte": 1e-3}}, "config", "learning_rte"),
        ({"kind": "train-conditional", "preset": "huge"}, "preset", "unknown preset"),
        (
            {"kind": "train-conditional", "datasets": [999999]},
            "datasets",
            "no dataset with id 999999",
        ),
        ({"kind": "generate", "config": {"count": 0}}, "config", "count"),
        ({"kind": "generate", "config": {"rule": "per_patient"}}, "config", "rule"),
        ({"kind": "generate", "config": {"sampler": "euler"}}, "config", "sampler"),
    ],
)
def test_bad_launches_name_the_field(sent: dict, kwargs: dict, field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        launch_run(**kwargs)
    assert fragment in " ".join(excinfo.value.message_dict[field])
    assert Run.objects.count() == 0


def test_training_needs_ready_non_external_datasets(sent: dict) -> None:
    with pytest.raises(ValidationError, match="at least one dataset"):
        launch_run(kind="train-conditional")
    importing = DatasetFactory(status=Dataset.Status.IMPORTING)
    with pytest.raises(ValidationError, match="not ready"):
        launch_run(kind="train-conditional", datasets=[importing])
    locked = DatasetFactory(name="ddi", role=Dataset.Role.EXTERNAL_TEST)
    with pytest.raises(ValidationError, match="ddi is locked as an external test set"):
        launch_run(kind="train-conditional", datasets=[locked])
    assert Run.objects.count() == 0


def test_generation_needs_a_trained_parent(sent: dict) -> None:
    with pytest.raises(
        ValidationError, match="exactly one model: a train-conditional or train-lora parent"
    ):
        launch_run(kind="generate")
    unfinished = RunFactory(kind=Run.Kind.TRAIN_CONDITIONAL, status=Run.Status.RUNNING)
    with pytest.raises(ValidationError, match="has no trained model yet"):
        launch_run(kind="generate", parents=[unfinished])


def test_cancelling_a_queued_run_means_it_never_starts(sent: dict) -> None:
    from backend.runs.execution import execute_run

    run = RunFactory()
    cancel_run(run)
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert execute_run(run.pk, "test-host") is None
    run.refresh_from_db()
    assert (run.status, run.attempts, run.started_at) == (Run.Status.CANCELLED, 0, None)


def _api(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_the_api_launches_for_ml_engineers_only(
    sent: dict, ml_engineer: Any, lead: Any, reader_a: Any
) -> None:
    dataset = DatasetFactory()
    payload = {
        "kind": "train-conditional",
        "preset": "cpu-demo-32px",
        "config": {"train_steps": 10},
        "datasets": [dataset.pk],
    }
    assert (
        _api(reader_a).post("/api/runs/", payload, content_type="application/json").status_code
        == 403
    )
    assert (
        _api(lead).post("/api/runs/", payload, content_type="application/json").status_code == 403
    )
    response = _api(ml_engineer).post("/api/runs/", payload, content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued" and body["config"]["train_steps"] == 10
    run = Run.objects.get(pk=body["id"])
    assert run.created_by == ml_engineer
    bad = _api(ml_engineer).post(
        "/api/runs/", {**payload, "config": {"batch_size": -1}}, content_type="application/json"
    )
    assert bad.status_code == 400
    assert "batch_size" in bad.json()["config"][0]


def test_the_api_cancels(sent: dict, ml_engineer: Any) -> None:
    run = RunFactory()
    response = _api(ml_engineer).post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_a_run_folder_never_reuses_the_files_of_an_older_run_with_the_same_id() -> None:
    first = RunFactory()
    old_folder, pk = first.workdir, first.pk
    first.delete()  # e.g. a database reset that kept var/artifacts
    second = RunFactory(pk=pk)
    assert second.workdir != old_folder
    assert second.workdir.name.startswith(f"{pk}-")
