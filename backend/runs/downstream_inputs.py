"""Inputs of ``downstream`` runs, checked at launch without importing torch.

A downstream run reads real training datasets (split into train/val/test), synthetic
datasets (given directly or through ``generate`` parent runs) and exactly one dataset locked
as an external test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q

from backend.datasets.models import Dataset, Image, Origin
from backend.runs.models import Run


def input_datasets(
    datasets: list[Dataset], parents: list[Run]
) -> tuple[list[Dataset], list[Dataset], list[Dataset]]:
    """(real training datasets, synthetic datasets, external test datasets) of a run's inputs."""
    real = [d for d in datasets if d.role == Dataset.Role.TRAINING and d.origin == Origin.REAL]
    synthetic = [
        d for d in datasets if d.role == Dataset.Role.TRAINING and d.origin == Origin.SYNTHETIC
    ]
    for parent in parents:
        if parent.kind == Run.Kind.GENERATE:
            synthetic.extend(
                d for d in parent.generated_datasets.all() if d.pk not in {s.pk for s in synthetic}
            )
    locked = [d for d in datasets if d.role == Dataset.Role.EXTERNAL_TEST]
    return real, synthetic, locked


def check_inputs(datasets: list[Dataset], parents: list[Run], training_sets: list[Any]) -> None:
    """Launch-time checks of a downstream run's inputs (``ValidationError`` naming the field)."""
    if training_sets:
        raise ValidationError(
            {
                "training_sets": "a downstream run takes datasets (with their splits), not training sets"
            }
        )
    others = [p for p in parents if p.kind != Run.Kind.GENERATE]
    if others:
        raise ValidationError(
            {
                "parents": f"run #{others[0].pk} is a {others[0].kind} run; parents must be generate runs"
            }
        )
    real, synthetic, locked = input_datasets(datasets, parents)
    if not real:
        raise ValidationError(
            {"datasets": "a downstream run needs at least one real training dataset"}
        )
    if len(locked) != 1:
        raise ValidationError(
            {
                "datasets": f"a downstream run needs exactly one dataset locked as an external test set, got {len(locked)}"
            }
        )
    for dataset in real:
        if not dataset.images.filter(split=Image.Split.VAL).exists():
            raise ValidationError(
                {
                    "datasets": f"{dataset.name} has no validation split: split it before a downstream run"
                }
            )
    for dataset in synthetic:
        check_synthetic_provenance(dataset, real=real, locked=locked)


def check_synthetic_provenance(
    dataset: Dataset,
    *,
    real: Sequence[Dataset] = (),
    locked: Sequence[Dataset] = (),
) -> None:
    """A synthetic set may join only if its model was trained on training-split data alone.

    It must come from a ``generate`` run whose ``train-conditional`` model read no locked
    dataset. Of the downstream run's ``real`` datasets, every one the model read must have
    been split before the model started (training reads the train split and unsplit images;
    an image unsplit then may be in val or test now). And no file the model could read (by
    sha256) may be a validation or test image of ``real`` or an image of ``locked``.
    """
    if dataset.status != Dataset.Status.READY:
        raise ValidationError({"datasets": f"{dataset.name} is {dataset.status}, not ready"})
    generate = dataset.generated_by
    if generate is None or generate.kind != Run.Kind.GENERATE:
        raise ValidationError(
            {"datasets": f"{dataset.name} is synthetic but was not made by a generate run"}
        )
    model_runs = list(generate.parents.filter(kind=Run.Kind.TRAIN_CONDITIONAL))
    if len(model_runs) != 1:
        raise ValidationError({"datasets": f"{dataset.name}: its generate run has no model run"})
    model_run = model_runs[0]
    read = set(model_run.datasets.all())
    for training_set in model_run.training_sets.all():
        read.update(training_set.datasets.all())
    started = model_run.started_at or model_run.created_at
    held_out = {d.pk for d in real}
    for source in sorted(read, key=lambda d: d.pk):
        if source.role == Dataset.Role.EXTERNAL_TEST:
            raise ValidationError(
                {"datasets": f"{dataset.name}: its model read the locked test set {source.name}"}
            )
        made_at = (source.split_config or {}).get("made_at")
        if source.pk in held_out and (not made_at or datetime.fromisoformat(made_at) > started):
            raise ValidationError(
                {
                    "datasets": f"{dataset.name}: its model (run #{model_run.pk}) trained on "
                    f"{source.name} before that dataset was split, so it may have seen "
                    "validation or test images"
                }
            )
    readable = (
        Image.objects.filter(dataset__in=read, origin=Origin.REAL)
        .exclude(split__in=[Image.Split.VAL, Image.Split.TEST])
        .exclude(sha256="")
        .values("sha256")
    )
    shared = Image.objects.filter(
        Q(dataset__in=list(locked))
        | Q(dataset__in=list(real), split__in=[Image.Split.VAL, Image.Split.TEST]),
        sha256__in=readable,
    ).first()
    if shared is not None:
        raise ValidationError(
            {
                "datasets": f"{dataset.name}: its model (run #{model_run.pk}) could read a copy "
                f"of {shared.dataset.name}/{shared.image_id}, a held-out image"
            }
        )
