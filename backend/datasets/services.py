"""Starting dataset imports: the one code path used by the CLI, the admin, the API and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from backend.datasets.formats import READERS
from backend.datasets.importing import ImportSummary, run_import
from backend.datasets.models import Dataset, Origin


def _create_importing_dataset(
    *, name: str, format: str, source: str, role: str, user: Any
) -> Dataset:
    if format not in Dataset.Format.values:
        raise ValidationError({"format": f"unknown format {format!r}"})
    if format not in READERS:
        raise ValidationError({"format": f"the {format} importer is not available yet"})
    if role not in Dataset.Role.values:
        raise ValidationError({"role": f"unknown role {role!r}"})
    if not name.strip():
        raise ValidationError({"name": "a dataset needs a name"})
    if Dataset.objects.filter(name=name).exists():
        raise ValidationError({"name": f"a dataset named {name!r} already exists"})
    return Dataset.objects.create(
        name=name,
        format=format,
        role=role,
        origin=Origin.REAL,
        source=source,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )


def import_now(
    *,
    name: str,
    format: str,
    metadata: str | Path,
    images_dir: str | Path,
    role: str = "training",
    user: Any = None,
) -> ImportSummary:
    """Create the dataset and import the files in this process; return the summary."""
    dataset = _create_importing_dataset(
        name=name, format=format, source=str(metadata), role=role, user=user
    )
    return run_import(dataset.pk, metadata, images_dir)


def import_in_background(
    *,
    name: str,
    format: str,
    metadata: str | Path,
    images_dir: str | Path,
    role: str = "training",
    user: Any = None,
) -> Dataset:
    """Create the dataset and queue its import on the ``cpu`` queue once the transaction commits."""
    from worker.tasks import import_dataset

    with transaction.atomic():
        dataset = _create_importing_dataset(
            name=name, format=format, source=str(metadata), role=role, user=user
        )
        kwargs = {
            "dataset_pk": dataset.pk,
            "metadata": str(metadata),
            "images_dir": str(images_dir),
        }
        transaction.on_commit(lambda: import_dataset.apply_async(kwargs=kwargs))
    return dataset
