"""The images an evaluation reads: paths with their labels, loaded as pytorch-fid loads them."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from validation.files import sha256_file

#: Threads reading image files: hashing them here, decoding them in ``backbones`` (file reads,
#: sha256 and image decoding release the GIL).
FILE_THREADS = min(8, os.cpu_count() or 1)

#: pytorch-fid's IMAGE_EXTENSIONS: a folder is read exactly as ``python -m pytorch_fid`` reads it.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    "bmp",
    "jpg",
    "jpeg",
    "pgm",
    "png",
    "ppm",
    "tif",
    "tiff",
    "webp",
)


@dataclass(frozen=True)
class ImageItem:
    """One image of an evaluated set.

    Attributes:
        path: The image file.
        fst: Its Fitzpatrick type (labelled for real images, requested for synthetic ones),
            or ``None`` when unknown.
        diagnosis: Its diagnosis code, or ``None``.
        sha256: The file's sha256 (computed when not given; keys the feature cache).
        key: A label for reports (dataset image id or file name).
    """

    path: Path
    fst: int | None = None
    diagnosis: str | None = None
    sha256: str = ""
    key: str = ""

    def with_sha256(self) -> ImageItem:
        if self.sha256:
            return self
        return ImageItem(self.path, self.fst, self.diagnosis, sha256_file(self.path), self.key)


def with_sha256s(items: Sequence[ImageItem], threads: int = FILE_THREADS) -> list[ImageItem]:
    """``item.with_sha256()`` of every item, in order, files hashed on ``threads`` threads.

    Hashing is the feature cache's key, so an evaluation hashes every file before it decodes
    any; on one thread that was a fifth of the Inception pass on a GPU (2,000 PNGs at 256 px).
    """
    if threads < 1:
        raise ValueError(f"threads: must be at least 1, got {threads}")
    unhashed = sum(1 for item in items if not item.sha256)
    if threads == 1 or unhashed < 2:
        return [item.with_sha256() for item in items]
    with ThreadPoolExecutor(min(threads, unhashed), thread_name_prefix="fairderm-hash") as pool:
        return list(pool.map(ImageItem.with_sha256, items))


def load_rgb(path: str | os.PathLike[str]) -> NDArray[np.float32]:
    """A 3 x H x W float32 array in [0, 1]: ``PIL.Image.open(path).convert("RGB")`` then
    ``ToTensor``, the preprocessing of pytorch-fid's ``ImagePathDataset``."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return (array.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)).copy()


def folder_items(
    folder: str | os.PathLike[str], metadata: str | os.PathLike[str] | None = None
) -> list[ImageItem]:
    """The images directly in ``folder`` (pytorch-fid's rule: no recursion), sorted by name.

    Labels come from ``metadata`` (a CSV with ``file`` or ``image_id`` and ``fst``,
    ``diagnosis`` columns) or, when absent, from ``<folder>/metadata.csv`` if it exists.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"folder: {root} is not a directory")
    files = sorted({p for ext in IMAGE_EXTENSIONS for p in root.glob(f"*.{ext}") if p.is_file()})
    if not files:
        raise ValueError(f"folder: no images ({', '.join(IMAGE_EXTENSIONS)}) in {root}")
    labels = _read_labels(
        Path(metadata) if metadata else root / "metadata.csv", required=bool(metadata)
    )
    items = []
    for path in files:
        fst, dx = labels.get(path.name, labels.get(path.stem, (None, None)))
        items.append(ImageItem(path=path, fst=fst, diagnosis=dx, key=path.name))
    return items


def _read_labels(path: Path, required: bool) -> dict[str, tuple[int | None, str | None]]:
    if not path.is_file():
        if required:
            raise ValueError(f"metadata: {path} not found")
        return {}
    labels: dict[str, tuple[int | None, str | None]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = row.get("file") or row.get("image_id") or row.get("filename") or ""
            name = Path(name).name
            raw_fst = (row.get("fst") or "").strip()
            try:
                fst = int(raw_fst) if raw_fst else None
            except ValueError:
                fst = None
            labels[name] = (fst if fst in range(1, 7) else None, (row.get("diagnosis") or None))
    return labels


def stack(items: Sequence[ImageItem]) -> NDArray[np.float32]:
    """Load ``items`` into one N x 3 x H x W array (all images must share a size)."""
    arrays = [load_rgb(item.path) for item in items]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"items: images of different sizes {sorted(shapes)} cannot be stacked")
    return np.stack(arrays) if arrays else np.zeros((0, 3, 1, 1), dtype=np.float32)
