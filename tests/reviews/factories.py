"""Reader-study test data: a real split and a synthetic set that differ in every way a file can.

Real sources are camera-like JPEGs (EXIF, an ICC profile, odd sizes, noisy pixels); synthetic
sources are smooth PNGs carrying FairDerm's provenance chunk with a seed and a model name.
A study built from them must still serve copies that cannot be told apart except by pixels.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterable, Sequence
from typing import Any

import PIL.Image
from PIL import PngImagePlugin

from backend.datasets.importing import store_image_bytes
from backend.datasets.models import Dataset, Image, Origin
from backend.reviews import services
from backend.reviews.models import Study
from generation.generate import PROVENANCE_KEY
from tests.datasets.factories import DatasetFactory, ImageFactory

REAL_NAME = "ham-like-clinic-2031"
SYNTHETIC_NAME = "fairskin-balanced-run-77"
MODEL_NAME = "fairderm-conditional-unet-v9"
GENERATION_SEED = 987654321
STUDY_SEED = 424242424242
STRATA: Sequence[tuple[int, str]] = ((1, "nevus"), (6, "melanoma"))


def camera_jpeg(rng: random.Random, size: tuple[int, int]) -> bytes:
    image = PIL.Image.effect_noise(size, 60).convert("RGB")
    image = PIL.Image.merge(
        "RGB",
        [
            band.point(lambda v, k=k: min(255, v + k))
            for k, band in zip((60, 20, 0), image.split(), strict=True)
        ],
    )
    exif = PIL.Image.Exif()
    exif[0x010F] = "DermLite-DL5"
    exif[0x0132] = "2024:05:06 10:11:12"
    buffer = io.BytesIO()
    image.save(
        buffer,
        format="JPEG",
        quality=rng.randint(70, 95),
        exif=exif.tobytes(),
        icc_profile=b"\0" * 64,
    )
    return buffer.getvalue()


def provenance_png(fst: int, index: int) -> bytes:
    image = PIL.Image.new("RGB", (32, 32), (40 * fst, 110, 90 + index))
    info = PngImagePlugin.PngInfo()
    info.add_itxt(
        PROVENANCE_KEY,
        json.dumps({"seed": GENERATION_SEED + index, "model": MODEL_NAME, "fst": fst}),
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def real_dataset(per_stratum: int = 4, name: str = REAL_NAME) -> Dataset:
    """A real dataset whose test split holds ``per_stratum`` images per stratum (plus train ones)."""
    rng = random.Random(1)
    dataset = DatasetFactory(name=name, origin=Origin.REAL)
    for fst, dx in STRATA:
        for i in range(per_stratum + 1):
            data = camera_jpeg(rng, (40 + i, 30 + fst))
            digest, relative, _ = store_image_bytes(data, ".jpg")
            ImageFactory(
                dataset=dataset,
                image_id=f"ISIC_{fst}{i:03d}{dx[:2]}",
                file=relative,
                sha256=digest,
                fst=fst,
                diagnosis=dx,
                split=Image.Split.TEST if i < per_stratum else Image.Split.TRAIN,
            )
    dataset.refresh_counts()
    return dataset


def synthetic_dataset(per_stratum: int = 4, name: str = SYNTHETIC_NAME) -> Dataset:
    dataset = DatasetFactory(name=name, origin=Origin.SYNTHETIC, format=Dataset.Format.GENERATED)
    for fst, dx in STRATA:
        for i in range(per_stratum):
            digest, relative, _ = store_image_bytes(provenance_png(fst, i), ".png")
            ImageFactory(
                dataset=dataset,
                image_id=f"{fst}{i:05d}",
                file=relative,
                sha256=digest,
                fst=fst,
                diagnosis=dx,
                origin=Origin.SYNTHETIC,
                fst_source=Image.FstSource.REQUESTED,
                provenance={"seed": GENERATION_SEED + i, "model": MODEL_NAME},
            )
    dataset.refresh_counts()
    return dataset


def make_study(
    readers: Iterable[Any] = (),
    *,
    n: int = 4,
    open_it: bool = True,
    name: str = "pilot study of run 77",
    **plan: Any,
) -> Study:
    """An n + n study (copies 32 px) from fresh pools, with ``readers`` invited."""
    per_stratum = max(2, -(-n // len(STRATA)))
    real = real_dataset(per_stratum, name=f"{REAL_NAME}-{name}")
    synthetic = synthetic_dataset(per_stratum, name=f"{SYNTHETIC_NAME}-{name}")
    values: dict[str, Any] = {
        "name": name,
        "real_dataset": real,
        "real_split": Image.Split.TEST,
        "synthetic_dataset": synthetic,
        "n_real": n,
        "n_synthetic": n,
        "seed": STUDY_SEED,
        "copy_size": 32,
    } | plan
    study = services.create_study(services.StudyPlan(**values), readers)
    if open_it:
        services.open_study(study)
    return study


def complete_answer(**overrides: Any) -> dict[str, Any]:
    """POST data answering every required question."""
    return {
        "judgement": "real",
        "confidence": "3",
        "realism": "5",
        "asymmetry_realistic": "True",
        "border_realistic": "True",
        "colour_realistic": "False",
        "diameter_realistic": "True",
        "reading_ms": "1500",
    } | overrides
