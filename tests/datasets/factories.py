from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import factory
import PIL.Image
from django.conf import settings

from backend.datasets.importing import store_image_bytes
from backend.datasets.models import Dataset, Image, Origin


def png_bytes(color: tuple[int, int, int] = (200, 150, 130), size: int = 16) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    name = factory.Sequence(lambda n: f"dataset-{n}")
    format = Dataset.Format.PHANTOM
    role = Dataset.Role.TRAINING
    origin = Origin.REAL
    status = Dataset.Status.READY


class ImageFactory(factory.django.DjangoModelFactory):
    """An image row whose file exists under MEDIA_ROOT (a small solid-colour PNG)."""

    class Meta:
        model = Image

    dataset = factory.SubFactory(DatasetFactory)
    image_id = factory.Sequence(lambda n: f"img-{n:05d}")
    diagnosis = "nevus"
    malignant = False
    fst = 2
    fst_source = Image.FstSource.LABEL
    width = 16
    height = 16

    @classmethod
    def _create(cls, model_class: type[Image], *args: Any, **kwargs: Any) -> Image:
        if "file" not in kwargs:
            color = (40 * kwargs.get("fst", 2), 120, 100 + len(kwargs["image_id"]) % 100)
            digest, relative, _ = store_image_bytes(png_bytes(color), ".png")
            kwargs["file"], kwargs["sha256"] = relative, digest
        image = super()._create(model_class, *args, **kwargs)
        if not Path(
            settings.MEDIA_ROOT, image.file
        ).exists():  # pragma: no cover - guard for explicit files
            raise ValueError(f"file: {image.file} does not exist under MEDIA_ROOT")
        return image


def dataset_with_cells(
    fsts: Iterable[int] = range(1, 7),
    diagnoses: Iterable[str] = ("nevus", "melanoma"),
    **fields: Any,
) -> Dataset:
    """A ready dataset with one small image per FST x diagnosis cell."""
    dataset = DatasetFactory(**fields)
    for fst in fsts:
        for diagnosis in diagnoses:
            ImageFactory(dataset=dataset, fst=fst, diagnosis=diagnosis)
    return dataset
