"""Fixtures of the metrics tests: stand-in weights in a private TORCH_HOME, tiny image sets.

No official weights exist offline, so the backbones get random stand-ins with the official
files' keys (``validation.metrics.weights.stage_standin``). Purely random Inception weights
would make the 2048-d features vanish; the stand-in's BatchNorm statistics are fitted to
procedural images so they do not. Most FID comparisons use 64-d features (block 0, pooled),
because every 2048-d FID costs a 2048 x 2048 matrix square root, on structured images: flat
skin tones with a dark lesion, which differ clearly between sets.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from validation.metrics.weights import FID_INCEPTION, LPIPS_ALEX, stage_standin

#: Background colours (sRGB 0-255) from light to dark skin, one per FST.
SKIN = {
    1: (236, 206, 186),
    2: (222, 184, 150),
    3: (198, 152, 112),
    4: (160, 112, 76),
    5: (112, 74, 50),
    6: (70, 46, 34),
}
DIAGNOSES = ("nevus", "melanoma")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def standin_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME holding random stand-ins under the official file names."""
    home = tmp_path_factory.mktemp("torch-home")
    stage_standin(FID_INCEPTION, home)
    stage_standin(LPIPS_ALEX, home)
    return home


@pytest.fixture
def torch_home(standin_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(standin_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return standin_home


def lesion_image(
    fst: int, rng: np.random.Generator, size: int = 32, lesion: float = 0.3
) -> Image.Image:
    """A flat skin tone with a dark elliptical lesion and a little noise."""
    base = np.array(SKIN[fst], dtype=np.float64)
    image = np.tile(base, (size, size, 1)) + rng.normal(0, 4, (size, size, 3))
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    ry, rx = rng.uniform(0.6, 1.4, 2) * lesion * size / 2
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    image[inside] = image[inside] * rng.uniform(0.3, 0.6)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


@dataclass
class ImageSet:
    folder: Path
    rows: list[dict[str, str]]


def write_set(
    folder: Path, fsts: list[int], seed: int, lesion: float = 0.3, size: int = 32
) -> ImageSet:
    """PNG files ``img-000.png``... with a ``metadata.csv`` (file, fst, diagnosis)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, fst in enumerate(fsts):
        name = f"img-{index:03d}.png"
        lesion_image(fst, rng, size, lesion).save(folder / name)
        rows.append({"file": name, "fst": str(fst), "diagnosis": DIAGNOSES[index % 2]})
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "fst", "diagnosis"])
        writer.writeheader()
        writer.writerows(rows)
    return ImageSet(folder, rows)


@pytest.fixture(scope="session")
def image_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImageSet]:
    """real: 16 images over FST I-VI; synthetic: 12 images, darker-leaning with bigger lesions."""
    root = tmp_path_factory.mktemp("metric-images")
    return {
        "real": write_set(root / "real", [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, 2, 3, 2, 3], seed=1),
        "synthetic": write_set(
            root / "synthetic", [3, 4, 5, 6, 3, 4, 5, 6, 4, 5, 4, 5], seed=2, lesion=0.55
        ),
    }
