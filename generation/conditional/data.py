"""Training data: labelled image records and the torch ``Dataset`` over them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from generation.conditional.model import LabelCodec


@dataclass(frozen=True)
class TrainingRecord:
    """One training image and its labels.

    Args:
        path (`Path`): Image file (any format PIL reads; converted to RGB).
        fst (`int`): Fitzpatrick skin type 1-6.
        diagnosis (`str`): Shared diagnosis code.
    """

    path: Path
    fst: int
    diagnosis: str


def load_training_image(path: str | os.PathLike[str], image_size: int) -> torch.Tensor:
    """Load an image as a ``(3, size, size)`` float tensor in [-1, 1].

    Non-square images are centre-cropped to a square first (the lesion is usually centred),
    then resized with Lanczos filtering.

    Args:
        path (`str` or `os.PathLike`): Image file.
        image_size (`int`): Output side in pixels.
    """
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    pixels = pixels.view(image_size, image_size, 3).permute(2, 0, 1).float()
    return pixels / 127.5 - 1.0


class LesionImageDataset(torch.utils.data.Dataset):
    """Labelled dermoscopy images as ``(image in [-1, 1], cell index)`` pairs.

    Augmentation is geometric only: a random horizontal flip and a random multiple of 90°
    rotation (dermoscopy has no preferred orientation). There is deliberately no colour, hue,
    saturation or brightness augmentation: the model is conditioned on skin tone, and jittering
    colour would blur exactly the FST signal it has to learn.

    Args:
        records (`Sequence[TrainingRecord]`): The images.
        image_size (`int`): Side the images are resized to.
        codec (`LabelCodec`): Maps each record's labels to a cell index.
        random_flip (`bool`, *optional*, defaults to `False`): Random horizontal flip.
        random_rotate90 (`bool`, *optional*, defaults to `False`): Random 0/90/180/270° rotation.
        generator (`torch.Generator`, *optional*): Source of augmentation randomness (the
            global torch RNG if omitted).
        cache (`bool`, *optional*, defaults to `False`): Keep decoded images in memory.
    """

    def __init__(
        self,
        records: Sequence[TrainingRecord],
        image_size: int,
        codec: LabelCodec,
        *,
        random_flip: bool = False,
        random_rotate90: bool = False,
        generator: torch.Generator | None = None,
        cache: bool = False,
    ) -> None:
        if not records:
            raise ValueError("records: no training images")
        self.records = list(records)
        self.image_size = image_size
        self.codec = codec
        self.random_flip = random_flip
        self.random_rotate90 = random_rotate90
        self.generator = generator
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None
        cells = []
        for position, record in enumerate(self.records):
            try:
                cells.append(codec.encode(record.fst, record.diagnosis))
            except ValueError as error:
                raise ValueError(f"records: item {position} ({record.path}): {error}") from None
        self.cells: list[int] = cells

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.cache.get(index) if self.cache is not None else None
        if image is None:
            image = load_training_image(self.records[index].path, self.image_size)
            if self.cache is not None:
                self.cache[index] = image
        if self.random_flip and bool(torch.rand((), generator=self.generator) < 0.5):
            image = image.flip(-1)
        if self.random_rotate90:
            turns = int(torch.randint(0, 4, (), generator=self.generator))
            image = torch.rot90(image, turns, dims=(1, 2))
        return image, self.cells[index]
