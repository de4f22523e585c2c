"""Splitting a dataset into train/val/test without leakage, stored on its image rows."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from backend.datasets.models import Dataset, Image, Origin
from validation.splits import Item, SplitFractions, group_split

LEVELS = ("lesion", "patient")


class _Groups:
    """Union-find over image ids, so that images sharing a lesion (or patient) id join one group."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, key: Any) -> Any:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: Any, b: Any) -> None:
        self.parent[self.find(a)] = self.find(b)


def split_dataset(
    dataset: Dataset,
    *,
    level: str = "lesion",
    fractions: SplitFractions | None = None,
    seed: int = 0,
) -> dict[str, int]:
    """Assign every real image of ``dataset`` to train, val or test and store it.

    Images of one lesion always share a split; at ``level="patient"`` so do all images of
    one patient (and, through them, all lesions of that patient). An image without a lesion
    id is its own group. Strata are FST (or the label's range) × diagnosis. Returns the
    number of images per split. An external-test dataset is locked: it is never split.
    """
    if level not in LEVELS:
        raise ValidationError({"level": f"must be one of {', '.join(LEVELS)}, got {level!r}"})
    if dataset.role == Dataset.Role.EXTERNAL_TEST:
        raise ValidationError(
            {"dataset": f"{dataset.name} is locked as an external test set; it is not split"}
        )
    if dataset.status != Dataset.Status.READY:
        raise ValidationError({"dataset": f"{dataset.name} is {dataset.status}, not ready"})
    fractions = fractions or SplitFractions()
    rows = list(
        dataset.images.filter(origin=Origin.REAL).values_list(
            "pk", "lesion_id", "patient_id", "fst", "fst_min", "fst_max", "diagnosis"
        )
    )
    groups = _Groups()
    for pk, lesion, patient, *_ in rows:
        groups.find(("image", pk))
        if lesion:
            groups.union(("image", pk), ("lesion", lesion))
        if level == "patient" and patient:
            groups.union(("image", pk), ("patient", patient))
    items = [
        Item(key=pk, group=groups.find(("image", pk)), stratum=(fst or (low, high), dx))
        for pk, _lesion, _patient, fst, low, high, dx in rows
    ]
    assignment = group_split(items, fractions, seed)
    with transaction.atomic():
        for split in ("train", "val", "test"):
            keys = [key for key, value in assignment.items() if value == split]
            for start in range(0, len(keys), 1000):
                Image.objects.filter(pk__in=keys[start : start + 1000]).update(split=split)
        dataset.split_config = {
            "level": level,
            "fractions": fractions.as_dict(),
            "seed": seed,
            "made_at": timezone.now().isoformat(timespec="seconds"),
        }
        dataset.refresh_counts(save=False)
        dataset.save(update_fields=["split_config", "counts", "image_count", "updated_at"])
    return {
        split: sum(1 for v in assignment.values() if v == split)
        for split in ("train", "val", "test")
    }
