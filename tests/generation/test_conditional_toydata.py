"""Toy labelled dermoscopy images for the conditional-model tests, and tests of the dataset.

The helpers here are imported by the other ``test_conditional_*`` files: the background colour
of an image is set by its FST (light to dark), the blob shape by its diagnosis (disc, square,
cross), with jittered position and size so that every cell has some diversity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from generation.conditional import (
    ConditionalDiffusionConfig,
    LabelCodec,
    LesionImageDataset,
    TrainingRecord,
    load_training_image,
)

#: Background (skin) colour per FST: light to dark.
TONES: dict[int, tuple[int, int, int]] = {
    1: (240, 214, 196),
    2: (222, 188, 160),
    3: (196, 156, 120),
    4: (160, 116, 82),
    5: (112, 76, 52),
    6: (66, 44, 30),
}
TOY_DIAGNOSES = ("nevus", "melanoma")


def toy_image(fst: int, diagnosis: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One toy image: FST-coloured background, diagnosis-shaped dark blob."""
    image = Image.new("RGB", (size, size), TONES[fst])
    draw = ImageDraw.Draw(image)
    radius = int(rng.integers(size // 6, size // 4 + 1))
    cx, cy = (int(v) for v in rng.integers(size // 2 - 2, size // 2 + 3, 2))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if diagnosis == "nevus":
        draw.ellipse(box, fill=(70, 40, 25))
    elif diagnosis == "melanoma":
        draw.rectangle(box, fill=(25, 15, 35))
    else:
        draw.rectangle((cx - radius, cy - 1, cx + radius, cy + 1), fill=(120, 20, 20))
        draw.rectangle((cx - 1, cy - radius, cx + 1, cy + radius), fill=(120, 20, 20))
    return image


def make_toy_records(
    root: Path,
    *,
    fsts: Iterable[int] = range(1, 7),
    diagnoses: Iterable[str] = TOY_DIAGNOSES,
    per_cell: int = 3,
    counts: Mapping[tuple[int, str], int] | None = None,
    size: int = 20,
    seed: int = 0,
) -> list[TrainingRecord]:
    """Write toy PNGs under ``root`` and return their records (``counts`` overrides ``per_cell``)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    cells = counts or {(f, d): per_cell for f in fsts for d in diagnoses}
    records = []
    for (fst, diagnosis), number in cells.items():
        for k in range(number):
            path = root / f"fst{fst}_{diagnosis}_{k}.png"
            toy_image(fst, diagnosis, size, rng).save(path)
            records.append(TrainingRecord(path=path, fst=fst, diagnosis=diagnosis))
    return records


def tiny_config(**overrides: Any) -> ConditionalDiffusionConfig:
    """A 16 px, ~46 k-parameter config that trains in a few hundredths of a second per step."""
    values: dict[str, Any] = {
        "image_size": 16,
        "block_out_channels": (8, 16),
        "diagnoses": TOY_DIAGNOSES,
        "batch_size": 4,
        "train_steps": 4,
        "checkpoint_every": 2,
        "keep_checkpoints": 2,
        "sample_every": 0,
        "num_inference_steps": 3,
        "log_every": 1,
    }
    values.update(overrides)
    return ConditionalDiffusionConfig(**values)


def test_dataset_maps_images_to_minus_one_one_and_labels_to_cells(tmp_path: Path) -> None:
    records = make_toy_records(tmp_path, per_cell=1)
    codec = LabelCodec(fsts=(1, 2, 3, 4, 5, 6), diagnoses=TOY_DIAGNOSES)
    dataset = LesionImageDataset(records, 16, codec)
    assert len(dataset) == 12
    image, cell = dataset[5]
    assert image.shape == (3, 16, 16)
    assert image.dtype == torch.float32
    assert -1.0 <= float(image.min()) < float(image.max()) <= 1.0
    assert cell == codec.encode(records[5].fst, records[5].diagnosis)
    # The background corner keeps the FST colour (value / 127.5 - 1).
    assert image[:, 0, 0].tolist() == pytest.approx(
        [c / 127.5 - 1 for c in TONES[records[5].fst]], abs=0.02
    )


def test_non_square_images_are_centre_cropped(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (10, 0, 30, 20))
    image.save(tmp_path / "wide.png")
    tensor = load_training_image(tmp_path / "wide.png", 16)
    assert tensor.shape == (3, 16, 16)
    assert float(tensor[2].mean()) > 0.95 and float(tensor[0].mean()) < -0.95


def test_augmentation_is_geometric_only(tmp_path: Path) -> None:
    records = make_toy_records(tmp_path, fsts=[4], diagnoses=["melanoma"], per_cell=1)
    codec = LabelCodec(fsts=(4,), diagnoses=("melanoma",))
    plain = LesionImageDataset(records, 16, codec)[0][0]
    augmented = LesionImageDataset(
        records,
        16,
        codec,
        random_flip=True,
        random_rotate90=True,
        generator=torch.Generator().manual_seed(3),
    )
    views = [augmented[0][0] for _ in range(12)]
    assert any(not torch.equal(view, plain) for view in views)
    for view in views:
        # Same pixels, only moved: the colour histogram (skin tone) is untouched.
        assert torch.equal(view.flatten(1).sort(dim=1).values, plain.flatten(1).sort(dim=1).values)


def test_dataset_rejects_labels_outside_the_codec(tmp_path: Path) -> None:
    records = make_toy_records(tmp_path, fsts=[2], diagnoses=["bcc"], per_cell=1)
    codec = LabelCodec(fsts=(1, 2), diagnoses=TOY_DIAGNOSES)
    with pytest.raises(ValueError, match="records: item 0"):
        LesionImageDataset(records, 16, codec)
    with pytest.raises(ValueError, match="records"):
        LesionImageDataset([], 16, codec)
