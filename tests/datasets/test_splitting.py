"""Dataset splits: stored per image, no lesion or patient in two splits, locked external tests."""

from __future__ import annotations

import json
from collections import defaultdict
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from backend.datasets.models import Dataset
from backend.datasets.services import import_now
from backend.datasets.splitting import split_dataset
from backend.runs.executors.common import training_images
from generation.phantom import PhantomConfig, build_phantom_dataset
from tests.datasets.factories import DatasetFactory
from tests.runs.factories import RunFactory
from validation.splits import SplitFractions

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phantom")
    config = PhantomConfig(
        count=240, image_size=32, seed=4, multi_image_probability=0.5, multi_lesion_probability=0.5
    )
    build_phantom_dataset(config, folder)
    return folder


@pytest.fixture
def phantom(phantom_dir: Path) -> Dataset:
    import_now(
        name="phantom",
        format="phantom",
        metadata=phantom_dir / "metadata.csv",
        images_dir=phantom_dir,
    )
    return Dataset.objects.get(name="phantom")


def splits_of(dataset: Dataset, key: str) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for value, split in dataset.images.values_list(key, "split"):
        seen[value].add(split)
    return seen


@pytest.mark.parametrize("level", ["lesion", "patient"])
def test_no_lesion_or_patient_lands_in_two_splits(phantom: Dataset, level: str) -> None:
    assert (
        phantom.images.values("lesion_id").distinct().count() < phantom.image_count
    )  # re-shot lesions exist
    counts = split_dataset(phantom, level=level, fractions=SplitFractions(0.6, 0.2, 0.2), seed=7)
    assert sum(counts.values()) == 240 and all(counts.values())
    assert all(len(splits) == 1 for splits in splits_of(phantom, "lesion_id").values())
    if level == "patient":
        assert all(len(splits) == 1 for splits in splits_of(phantom, "patient_id").values())
    phantom.refresh_from_db()
    assert phantom.split_config["level"] == level and phantom.split_config["seed"] == 7
    assert phantom.counts["split"] == counts
    assert not phantom.images.filter(split="").exists()


def test_splits_are_reproducible(phantom: Dataset) -> None:
    split_dataset(phantom, seed=1)
    first = dict(phantom.images.values_list("image_id", "split"))
    split_dataset(phantom, seed=1)
    assert dict(phantom.images.values_list("image_id", "split")) == first


def test_training_reads_only_the_train_split(phantom: Dataset) -> None:
    counts = split_dataset(phantom, seed=0)
    run = RunFactory()
    run.datasets.set([phantom])
    images = training_images(run)
    assert len(images) == counts["train"]
    assert {image.split for image in images} == {"train"}


def test_external_test_sets_are_locked() -> None:
    ddi = DatasetFactory(name="ddi", role=Dataset.Role.EXTERNAL_TEST)
    with pytest.raises(ValidationError, match="locked as an external test set"):
        split_dataset(ddi)
    run = RunFactory()
    run.datasets.set([ddi])
    with pytest.raises(PermissionError, match="locked as external test sets"):
        training_images(run)


def test_the_command_splits_and_reports(phantom: Dataset) -> None:
    out = StringIO()
    call_command(
        "split_dataset", "phantom", "--level", "patient", "--fractions", "0.8,0.1,0.1", stdout=out
    )
    report = json.loads(out.getvalue())
    assert (
        report["dataset"] == "phantom" and report["train"] + report["val"] + report["test"] == 240
    )
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--fractions: fractions: train"):
        call_command("split_dataset", "phantom", "--fractions", "0.5,0.1,0.1")
