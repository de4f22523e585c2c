"""Training sets: saved selections across datasets, usable wherever a dataset is, never with a locked test set."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from backend.datasets.models import Dataset, TrainingSet
from backend.runs.executors.common import training_images
from backend.runs.services import launch_run
from tests.datasets.factories import DatasetFactory, ImageFactory
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_sources() -> tuple[Dataset, Dataset]:
    f17k, pad = DatasetFactory(name="fitzpatrick17k"), DatasetFactory(name="pad-ufes-20")
    for dataset in (f17k, pad):
        for fst in (1, 2, 5, 6):
            for dx in ("nevus", "melanoma"):
                ImageFactory(dataset=dataset, fst=fst, diagnosis=dx, split="train")
        ImageFactory(dataset=dataset, fst=6, diagnosis="nevus", split="test")
    return f17k, pad


def test_a_selection_across_datasets(two_sources: tuple[Dataset, Dataset]) -> None:
    dark = TrainingSet.objects.create(name="dark training images", fsts=[5, 6])
    dark.datasets.set(two_sources)
    images = list(dark.images())
    assert len(images) == 8  # 2 FSTs x 2 diagnoses x 2 datasets, train split only
    assert {i.fst for i in images} == {5, 6} and {i.split for i in images} == {"train"}
    melanoma = TrainingSet.objects.create(
        name="melanoma", diagnoses=["melanoma"], splits=["train", "test"]
    )
    melanoma.datasets.set([two_sources[0]])
    assert melanoma.images().count() == 4


def test_training_runs_read_training_sets(two_sources: tuple[Dataset, Dataset]) -> None:
    dark = TrainingSet.objects.create(name="dark", fsts=[5, 6])
    dark.datasets.set(two_sources)
    run = RunFactory()
    run.training_sets.set([dark])
    assert sorted(i.pk for i in training_images(run)) == sorted(i.pk for i in dark.images())


def test_launch_accepts_a_training_set_instead_of_datasets(
    two_sources: tuple[Dataset, Dataset], monkeypatch: Any
) -> None:
    from worker import tasks

    monkeypatch.setattr(tasks.execute_run_gpu, "apply_async", lambda **kw: None)
    dark = TrainingSet.objects.create(name="dark", fsts=[5, 6])
    dark.datasets.set(two_sources)
    run = launch_run(kind="train-conditional", training_sets=[dark.pk])
    assert list(run.training_sets.all()) == [dark]


def test_a_locked_external_test_set_can_never_join(two_sources: tuple[Dataset, Dataset]) -> None:
    ddi = DatasetFactory(name="ddi", role=Dataset.Role.EXTERNAL_TEST)
    selection = TrainingSet.objects.create(name="mixed")
    with (
        pytest.raises(ValidationError, match="ddi is locked as an external test set"),
        transaction.atomic(),
    ):
        selection.datasets.add(ddi)
    with pytest.raises(ValidationError, match="is locked"), transaction.atomic():
        ddi.training_sets.add(selection)
    assert not selection.datasets.exists()
    selection.datasets.add(two_sources[0])
    source = two_sources[0]
    source.role = Dataset.Role.EXTERNAL_TEST
    with pytest.raises(ValidationError, match="belongs to training sets"):
        source.save()


def test_filters_are_validated() -> None:
    selection = TrainingSet(
        name="bad", fsts=[7], diagnoses=["wart"], origins=["imagined"], splits=["holdout"]
    )
    with pytest.raises(ValidationError) as excinfo:
        selection.full_clean()
    assert set(excinfo.value.message_dict) == {"fsts", "diagnoses", "origins", "splits"}


def _client(user: Any) -> Any:
    from django.test import Client

    from tests.accounts.factories import PASSWORD

    client = Client()
    client.login(username=user.username, password=PASSWORD)
    return client


def test_the_api_creates_training_sets_for_ml_engineers_only(
    two_sources: tuple[Dataset, Dataset], ml_engineer: Any, lead: Any
) -> None:
    payload = {"name": "dark", "datasets": [d.pk for d in two_sources], "fsts": [5, 6]}
    assert (
        _client(lead)
        .post("/api/training-sets/", payload, content_type="application/json")
        .status_code
        == 403
    )
    response = _client(ml_engineer).post(
        "/api/training-sets/", payload, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["image_count"] == 8
    assert TrainingSet.objects.get(name="dark").created_by == ml_engineer
    assert _client(lead).get("/api/training-sets/").json()["results"][0]["name"] == "dark"
    ddi = DatasetFactory(name="ddi-api", role=Dataset.Role.EXTERNAL_TEST)
    bad = _client(ml_engineer).post(
        "/api/training-sets/",
        {"name": "x", "datasets": [ddi.pk], "fsts": [9]},
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert "locked" in bad.json()["datasets"][0]


def test_the_admin_refuses_a_locked_dataset_in_a_training_set(ml_engineer: Any) -> None:
    ml_engineer.is_superuser = True
    ml_engineer.save()
    ddi = DatasetFactory(name="ddi-admin", role=Dataset.Role.EXTERNAL_TEST)
    response = _client(ml_engineer).post(
        "/admin/datasets/trainingset/add/",
        {
            "name": "mixed",
            "datasets": [ddi.pk],
            "fsts": "[]",
            "diagnoses": "[]",
            "origins": "[]",
            "splits": "[]",
        },
    )
    assert response.status_code == 200
    assert "is locked as an external test set" in response.content.decode()
    assert not TrainingSet.objects.exists()
