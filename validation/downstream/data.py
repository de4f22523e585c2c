"""Samples that carry their origin, the locked external test set, and the data hygiene rules.

Every training sample keeps where it came from (``origin``: real or synthetic) all the way
into the batches, so losses can be weighted by origin and every result can be split by it.

The external test set is wrapped in ``LockedTestSet``: its samples are read only by
``LockedTestSet.open_for_final_evaluation`` after training and model selection are done.
Training and model-selection code refuse a ``LockedTestSet`` and any sample marked
``locked`` with ``LockedTestSetError``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from validation.vocabulary import DIAGNOSES

ORIGINS = ("real", "synthetic")
SPLITS = ("train", "val", "test", "external-test")


class LockedTestSetError(PermissionError):
    """Training or model selection was handed the locked external test set."""


@dataclass(frozen=True)
class Sample:
    """One image as the downstream experiment sees it.

    Args:
        key: A unique id (e.g. ``"<dataset>/<image id>"``).
        path: Local file path (already fetched from the storage).
        diagnosis: Shared diagnosis code.
        malignant: The binary label.
        fst: Fitzpatrick skin type 1-6, or ``None`` where unknown (left out of per-FST figures).
        fst_range: ``(low, high)`` where only a range is known (DDI's V-VI): the image counts
            in the FST group holding the range, in no single type.
        origin: ``real`` or ``synthetic``.
        split: ``train``, ``val``, ``test`` or ``external-test``.
        source: The dataset the image belongs to; lesion ids are unique within a source.
        lesion_id: Groups images of one lesion (empty: the image is its own lesion).
        sha256: The file's hash, used to find the same image in two splits.
        locked: True for images of a locked external test set.
    """

    key: str
    path: Path
    diagnosis: str
    malignant: bool
    fst: int | None
    fst_range: tuple[int, int] | None = None
    origin: str = "real"
    split: str = "train"
    source: str = ""
    lesion_id: str = ""
    patient_id: str = ""
    sha256: str = ""
    locked: bool = False

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ValueError(f"origin: must be real or synthetic, got {self.origin!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split: must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.diagnosis not in DIAGNOSES:
            raise ValueError(f"diagnosis: unknown code {self.diagnosis!r}")
        if self.fst is not None and self.fst not in range(1, 7):
            raise ValueError(f"fst: must be 1-6 or None, got {self.fst!r}")
        if self.fst_range is not None and not (
            len(self.fst_range) == 2 and 1 <= self.fst_range[0] <= self.fst_range[1] <= 6
        ):
            raise ValueError(f"fst_range: must be (low, high) within 1-6, got {self.fst_range!r}")
        if self.locked and self.split != "external-test":
            raise ValueError(f"split: a locked sample must be external-test, got {self.split!r}")

    @property
    def fst_value(self) -> int | tuple[int, int] | None:
        """The type if known exactly, else the range, else ``None`` (for group metrics)."""
        return self.fst if self.fst is not None else self.fst_range

    @property
    def lesion_key(self) -> tuple[str, str]:
        return (self.source, self.lesion_id or f"image:{self.key}")


class LockedTestSet:
    """The external test set, readable once training and model selection are over.

    ``loader`` builds the samples (e.g. fetching files from the storage) and is called only
    by ``open_for_final_evaluation``; until then nothing of the set is read.
    """

    def __init__(self, name: str, loader: Callable[[], list[Sample]]):
        self.name = name
        self._loader = loader
        self._samples: list[Sample] | None = None

    def __iter__(self) -> None:  # pragma: no cover - guard against accidental iteration
        raise LockedTestSetError(
            f"{self.name}: the locked test set is read only through open_for_final_evaluation()"
        )

    def open_for_final_evaluation(self) -> list[Sample]:
        if self._samples is None:
            samples = self._loader()
            if not samples:
                raise ValueError(f"test_set: {self.name} holds no usable image")
            self._samples = [
                s
                if s.locked
                else Sample(**{**s.__dict__, "locked": True, "split": "external-test"})
                for s in samples
            ]
        return self._samples


def refuse_locked(name: str, samples: object) -> None:
    """Raise ``LockedTestSetError`` if ``samples`` is or holds the locked external test set."""
    if isinstance(samples, LockedTestSet):
        raise LockedTestSetError(
            f"{name}: {samples.name} is the locked external test set; training and model "
            "selection may not read it"
        )
    if isinstance(samples, Iterable):
        for sample in samples:  # type: ignore[union-attr]
            if isinstance(sample, Sample) and (sample.locked or sample.split == "external-test"):
                raise LockedTestSetError(
                    f"{name}: {sample.key} belongs to a locked external test set; training "
                    "and model selection may not read it"
                )


def check_hygiene(
    train: Sequence[Sample],
    val: Sequence[Sample],
    synthetic: Sequence[Sample] = (),
    test: Sequence[Sample] = (),
) -> None:
    """Raise ``ValueError`` naming the argument when the data breaks a hygiene rule.

    Rules: ``train`` and ``val`` hold real, unlocked images of their own split; ``synthetic``
    holds synthetic images only; no lesion appears in two of train/val/test; no file (by
    sha256) of the external ``test`` set appears among the training or validation images.
    """
    refuse_locked("train", train)
    refuse_locked("val", val)
    refuse_locked("synthetic", synthetic)
    for name, samples, split in (("train", train, "train"), ("val", val, "val")):
        for sample in samples:
            if sample.origin != "real":
                raise ValueError(f"{name}: {sample.key} is {sample.origin}, expected real")
            if sample.split != split:
                raise ValueError(f"{name}: {sample.key} is in the {sample.split} split")
    for sample in synthetic:
        if sample.origin != "synthetic":
            raise ValueError(f"synthetic: {sample.key} is a real image")
    where: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, samples in (("train", train), ("val", val), ("test", test)):
        for sample in samples:
            where[sample.lesion_key].add(name)
    shared = sorted(key for key, names in where.items() if len(names) > 1)
    if shared:
        source, lesion = shared[0]
        raise ValueError(
            f"splits: lesion {lesion!r} of {source or 'the data'} is in {sorted(where[shared[0]])} "
            f"({len(shared)} lesion(s) in two splits)"
        )
    test_hashes = {s.sha256 for s in test if s.sha256}
    for name, samples in (("train", train), ("val", val), ("synthetic", synthetic)):
        for sample in samples:
            if sample.sha256 and sample.sha256 in test_hashes:
                raise ValueError(f"{name}: {sample.key} is the same file as a test image")


def targets(samples: Sequence[Sample], task: str, classes: Sequence[str]) -> np.ndarray:
    """Binary labels (0/1) or diagnosis class indices."""
    if task == "binary":
        return np.array([int(s.malignant) for s in samples], dtype=np.int64)
    index = {code: i for i, code in enumerate(classes)}
    return np.array([index[s.diagnosis] for s in samples], dtype=np.int64)


class ImageCache:
    """Decodes each file once into a uint8 CHW tensor at the experiment's size.

    Every arm and seed reads the same decoded pixels, so an experiment of dozens of trained
    classifiers decodes its images once.
    """

    def __init__(self, image_size: int):
        self.image_size = image_size
        self._tensors: dict[Path, torch.Tensor] = {}

    def get(self, path: Path) -> torch.Tensor:
        tensor = self._tensors.get(path)
        if tensor is None:
            with PILImage.open(path) as image:
                image = image.convert("RGB")
                if image.size != (self.image_size, self.image_size):
                    image = image.resize(
                        (self.image_size, self.image_size), PILImage.Resampling.BILINEAR
                    )
                array = np.asarray(image, dtype=np.uint8).copy()
            tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
            self._tensors[path] = tensor
        return tensor

    def stack(self, samples: Sequence[Sample]) -> torch.Tensor:
        if not samples:
            return torch.zeros((0, 3, self.image_size, self.image_size), dtype=torch.uint8)
        return torch.stack([self.get(s.path) for s in samples])
