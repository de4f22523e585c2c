"""Import a dataset's metadata and images into FairDerm, all or nothing.

A format reader turns the files as distributed into ``ImportRow`` objects and ``RowError``
objects (file, row, field, reason). ``run_import`` then validates and stores every image
(content-addressed by sha256 under MEDIA_ROOT/images/) and writes the rows in one
transaction. If anything fatal happens, the dataset ends ``failed`` with its errors, no image
row is written, and the image files this import added are removed again.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL.Image
import PIL.ImageOps
from django.conf import settings
from django.db import transaction

from backend.datasets.formats import READERS
from backend.datasets.models import Dataset, Image
from backend.datasets.rows import ImportFailed, ImportRow, RowError
from validation.files import atomic_write_bytes, sha256_bytes
from validation.ita import estimate_skin_ita

logger = logging.getLogger(__name__)

IMAGE_SUBDIR = "images"
#: Image formats kept byte for byte when they are already 8-bit RGB; anything else is
#: converted to RGB and stored as PNG.
_KEEP_FORMATS = {"PNG": ".png", "JPEG": ".jpg"}


@dataclass
class ImportSummary:
    dataset_id: int
    name: str
    status: str
    imported: int
    rejected: list[dict[str, Any]]
    counts: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "name": self.name,
            "status": self.status,
            "imported": self.imported,
            "rejected": self.rejected,
            "counts": self.counts,
        }


@dataclass
class LoadedImage:
    data: bytes  # what is stored: the original bytes, or a PNG after conversion
    extension: str
    rgb: PIL.Image.Image  # decoded, oriented, 8-bit RGB (for the skin-tone estimate)


def _load_image(row: ImportRow) -> LoadedImage:
    """Validate the image file of ``row`` and decode it to oriented 8-bit RGB.

    8-bit RGB PNGs and JPEGs without an EXIF rotation are stored byte for byte; anything
    else (CMYK, 16-bit, grey, alpha, palette, rotated) is stored as the converted PNG.
    """
    try:
        data = row.source.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"image file not found: {row.source.name}") from None
    if not data:
        raise ValueError(f"image file is empty: {row.source.name}")
    try:
        with PIL.Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.load()
            fmt = image.format or ""
            needs_transpose = image.getexif().get(0x0112, 1) != 1
            keep = fmt in _KEEP_FORMATS and image.mode == "RGB" and not needs_transpose
            rgb = PIL.ImageOps.exif_transpose(image).convert("RGB")
    except PIL.Image.DecompressionBombError as exc:
        raise ValueError(f"image is too large (decompression bomb guard): {exc}") from None
    except (PIL.UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"not a readable image ({exc.__class__.__name__}: {exc})") from None
    if keep:
        return LoadedImage(data, _KEEP_FORMATS[fmt], rgb)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return LoadedImage(buffer.getvalue(), ".png", rgb)


#: Skin tone is estimated on a copy no larger than this (the estimate is size-robust and a
#: 600 x 450 dermoscopy image takes 0.3 s at full size).
ITA_MAX_SIDE = 128


def estimate_skin_tone(rgb: PIL.Image.Image) -> tuple[float | None, int | None]:
    """(ITA, FST) estimated from the pixels; (None, None) when no reliable skin is found."""
    small = rgb.copy()
    small.thumbnail((ITA_MAX_SIDE, ITA_MAX_SIDE), PIL.Image.Resampling.LANCZOS)
    try:
        estimate = estimate_skin_ita(small)
    except ValueError:
        return None, None
    if not estimate.reliable:
        return round(float(estimate.ita), 2), None
    return round(float(estimate.ita), 2), int(estimate.fst)


def store_image_bytes(data: bytes, extension: str) -> tuple[str, str, bool]:
    """Store ``data`` content-addressed under MEDIA_ROOT; return (sha256, relative path, created)."""
    digest = sha256_bytes(data)
    relative = f"{IMAGE_SUBDIR}/{digest[:2]}/{digest}{extension}"
    target = Path(settings.MEDIA_ROOT) / relative
    if target.exists():
        return digest, relative, False
    atomic_write_bytes(target, data)
    return digest, relative, True


def remove_unreferenced(relative_paths: Iterable[str]) -> None:
    """Delete stored files that no image row references (the files of a failed import)."""
    for relative in relative_paths:
        if not Image.objects.filter(file=relative).exists():
            (Path(settings.MEDIA_ROOT) / relative).unlink(missing_ok=True)


def run_import(dataset_pk: int, metadata: str | Path, images_dir: str | Path) -> ImportSummary:
    """Import the files into the (``importing``) dataset ``dataset_pk``; never half-done.

    Rows with problems are rejected and listed in ``dataset.errors``; the import fails only
    when the files cannot be read as a whole or no row is valid.
    """
    dataset = Dataset.objects.get(pk=dataset_pk)
    metadata, images_dir = Path(metadata), Path(images_dir)
    created_files: list[str] = []
    rejected: list[RowError] = []
    try:
        reader = READERS.get(dataset.format)
        if reader is None:
            raise ImportFailed(
                [
                    RowError(
                        metadata.name, None, None, f"format {dataset.format!r} has no importer yet"
                    )
                ]
            )
        if not images_dir.is_dir():
            raise ImportFailed([RowError(str(images_dir), None, None, "images folder not found")])
        rows, rejected = reader(metadata, images_dir)
        seen: set[str] = set()
        images: list[Image] = []
        for row in rows:
            if row.image_id in seen:
                rejected.append(
                    RowError(metadata.name, row.row, "image_id", f"duplicate id {row.image_id!r}")
                )
                continue
            seen.add(row.image_id)
            try:
                loaded = _load_image(row)
            except ValueError as exc:
                rejected.append(RowError(metadata.name, row.row, "file", str(exc)))
                continue
            digest, relative, created = store_image_bytes(loaded.data, loaded.extension)
            if created:
                created_files.append(relative)
            ita, estimated_fst = estimate_skin_tone(loaded.rgb)
            fst, fst_source = row.fst, row.fst_source
            low = row.fst_min if row.fst_min is not None else row.fst
            high = row.fst_max if row.fst_max is not None else row.fst
            if fst is None and low is None and estimated_fst is not None:
                # No label at all (HAM10000, ISIC): the type estimated from the skin's ITA.
                fst, low, high, fst_source = (
                    estimated_fst,
                    estimated_fst,
                    estimated_fst,
                    Image.FstSource.ITA_ESTIMATE,
                )
            images.append(
                Image(
                    dataset=dataset,
                    image_id=row.image_id,
                    sha256=digest,
                    file=relative,
                    width=loaded.rgb.width,
                    height=loaded.rgb.height,
                    diagnosis=row.diagnosis,
                    diagnosis_original=row.diagnosis_original,
                    malignant=row.malignant,
                    fst=fst,
                    fst_min=low,
                    fst_max=high,
                    fst_source=fst_source,
                    ita=row.ita if row.ita is not None else ita,
                    lesion_id=row.lesion_id,
                    patient_id=row.patient_id,
                    origin=row.origin,
                    ground_truth=row.ground_truth,
                    provenance=row.provenance,
                )
            )
        if not images:
            raise ImportFailed(rejected or [RowError(metadata.name, None, None, "no valid rows")])
        with transaction.atomic():
            Image.objects.bulk_create(images, batch_size=500)
            dataset.status = Dataset.Status.READY
            dataset.errors = [e.as_dict() for e in rejected]
            dataset.refresh_counts(save=False)
            dataset.save(update_fields=["status", "image_count", "errors", "counts", "updated_at"])
    except ImportFailed as exc:
        _fail(dataset, created_files, exc.errors)
    except Exception as exc:
        logger.exception("import of dataset %s failed", dataset.pk)
        _fail(
            dataset,
            created_files,
            [RowError(metadata.name, None, None, f"{exc.__class__.__name__}: {exc}")],
        )
    dataset.refresh_from_db()
    return ImportSummary(
        dataset_id=dataset.pk,
        name=dataset.name,
        status=dataset.status,
        imported=dataset.image_count,
        rejected=dataset.errors,
        counts=dataset.counts,
    )


def _fail(dataset: Dataset, created_files: list[str], errors: list[RowError]) -> None:
    remove_unreferenced(created_files)
    Dataset.objects.filter(pk=dataset.pk).update(
        status=Dataset.Status.FAILED, image_count=0, errors=[e.as_dict() for e in errors], counts={}
    )
