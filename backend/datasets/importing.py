"""Import a dataset's metadata and images into FairDerm, all or nothing.

A format reader turns the files as distributed into ``ImportRow`` objects and ``RowError``
objects (file, row, field, reason). ``run_import`` then validates and stores every image
(content-addressed by sha256 under MEDIA_ROOT/images/) and writes the rows in one
transaction. If anything fatal happens, the dataset ends ``failed`` with its errors, no image
row is written, and the image files this import added are removed again.

Images are checked before anything is stored (see ``_load_image``): only PNG, JPEG (and MPO),
TIFF, BMP, GIF and WebP bytes are decoded, whatever the file name says; empty, truncated,
undecodable, too small or too large (decompression bomb) images are rejected per row. Problems
that do not stop a row from being imported (image files no row uses, identical bytes under two
image ids) are kept in ``dataset.errors`` as warnings: entries with ``"level": "warning"``
whose reason starts with "warning:". An upload staged by ``backend.datasets.uploads`` is
extracted here, in the worker, and its staging folder is removed when the import ends.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageCms
import PIL.ImageFile
import PIL.ImageOps
from django.conf import settings
from django.db import transaction

from backend import storage
from backend.datasets.formats import READERS
from backend.datasets.models import Dataset, Image
from backend.datasets.rows import ImportFailed, ImportRow, RowError
from backend.datasets.uploads import (
    UploadRejected,
    discard_staging,
    extract_staged,
    fetch_staged,
    resolve_reference,
    staging_folder_for,
)
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
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "name": self.name,
            "status": self.status,
            "imported": self.imported,
            "rejected": self.rejected,
            "warnings": self.warnings,
            "counts": self.counts,
        }


@dataclass
class LoadedImage:
    data: bytes  # what is stored: the original bytes, or a PNG after conversion
    extension: str
    rgb: PIL.Image.Image  # decoded, oriented, 8-bit RGB (for the skin-tone estimate)


#: What Pillow may decode during an import, whatever the file is called. Everything else
#: (SVG, HTML, PDF, EPS, ICO, HEIC...) is refused on its bytes.
ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "TIFF", "BMP", "GIF", "WEBP")
PIL.Image.init()  # register every plugin, so that ``formats=`` finds MPO, TIFF and WEBP
#: Files larger than this are not read into memory (a dermoscopy JPEG is 1-10 MB).
MAX_IMAGE_FILE_BYTES = 256 * 1024 * 1024
#: Pillow's own default, used if ``PIL.Image.MAX_IMAGE_PIXELS`` has been set to None.
PILLOW_DEFAULT_MAX_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)
_OPENABLE = tuple(f for f in ALLOWED_FORMATS if f in PIL.Image.OPEN)  # WEBP needs libwebp
_ORIENTATION = 0x0112
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SRGB_PROFILE = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile("sRGB"))


class ImageRejected(ValueError):
    """An image file that cannot be imported; the message says why."""


def _loose(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


@lru_cache(maxsize=8)
def _folder_names(folder: str, mtime_ns: int) -> dict[str, str]:
    """Names in ``folder`` by their case- and normalisation-free form (cached per mtime)."""
    with os.scandir(folder) as entries:
        return {_loose(entry.name): entry.name for entry in entries}


def _near_miss(path: Path) -> str:
    """A hint when ``path`` is missing but a name differing only in case or accents exists."""
    try:
        names = _folder_names(str(path.parent), path.parent.stat().st_mtime_ns)
    except OSError:
        return ""
    other = names.get(_loose(path.name))
    if other is None or other == path.name:
        return ""
    return f" (the folder has {other!r}: names must match exactly, in case and accents)"


def _read_image_file(path: Path) -> bytes:
    """The bytes of a regular image file, refusing links, folders and oversized files."""
    name = path.name
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ImageRejected(f"image file not found: {name}{_near_miss(path)}") from None
    except OSError as exc:
        if path.is_symlink():
            raise ImageRejected(f"image file is a symbolic link: {name}") from None
        raise ImageRejected(f"cannot read image file {name}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ImageRejected(f"not a regular file: {name}")
        if info.st_size > MAX_IMAGE_FILE_BYTES:
            raise ImageRejected(
                f"image file is too large: {info.st_size} bytes (limit {MAX_IMAGE_FILE_BYTES})"
            )
        data = handle.read(MAX_IMAGE_FILE_BYTES + 1)
    if not data:
        raise ImageRejected(f"image file is empty: {name}")
    return data


def _describe_unknown(data: bytes) -> str:
    """Why bytes that Pillow does not recognise are not an image, for the error message."""
    head = data[:512].lstrip()
    if head[:1] == b"<":
        lowered = head.lower()
        kind = "SVG" if b"<svg" in lowered else "HTML" if b"<html" in lowered else "XML/HTML"
        return f"the file is {kind} text, not a PNG/JPEG/TIFF/BMP/GIF/WebP image"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc", b"ftypavif"):
        return "HEIC/HEIF/AVIF images are not supported: convert them to JPEG or PNG"
    return "the bytes are not a PNG, JPEG, TIFF, BMP, GIF or WebP image"


def _check_dimensions(size: tuple[int, int]) -> None:
    """Refuse images under the minimum side or over Pillow's pixel limit, before decoding."""
    width, height = size
    limit = PIL.Image.MAX_IMAGE_PIXELS or PILLOW_DEFAULT_MAX_PIXELS
    if width * height > limit:
        raise ImageRejected(
            f"image is too large: {width} x {height} px is over the {limit} pixel limit "
            "(decompression bomb guard)"
        )
    minimum = settings.IMPORT_MIN_IMAGE_SIDE
    if min(width, height) < minimum:
        raise ImageRejected(
            f"image is too small: {width} x {height} px (the minimum is {minimum} px per side)"
        )


def _is_srgb(icc: bytes | None) -> bool:
    """True for no profile (assumed sRGB), an sRGB profile or one that cannot be read."""
    if not icc:
        return True
    try:
        profile = PIL.ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return "srgb" in PIL.ImageCms.getProfileDescription(profile).lower()
    except (PIL.ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return True


def _to_eight_bit(image: PIL.Image.Image) -> PIL.Image.Image:
    """16-bit, 32-bit integer and float grey images scaled to 8-bit "L" (Pillow would clip)."""
    array = np.asarray(image)
    if image.mode == "F":
        array = np.nan_to_num(array.astype(np.float32))
        scale = 255.0 if float(array.max(initial=0.0)) <= 1.0 else 1.0
        return PIL.Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), "L")
    if image.mode == "I" and int(array.max(initial=0)) <= 255:
        return PIL.Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
    wide = np.clip(array.astype(np.int64), 0, 65535)
    return PIL.Image.fromarray((wide >> 8).astype(np.uint8), "L")


def to_srgb_rgb(image: PIL.Image.Image, icc: bytes | None = None) -> PIL.Image.Image:
    """``image`` as 8-bit RGB in sRGB.

    - 16-bit and 32-bit grey are scaled down (not clipped), then expanded to RGB;
    - alpha (RGBA, LA, PA, a palette or colour key with transparency) is composited on white,
      so transparent margins read as white paper rather than black;
    - an embedded ICC profile other than sRGB (Adobe RGB, Display P3, CMYK press profiles) is
      converted to sRGB with LittleCMS; an unreadable profile falls back to Pillow's plain
      conversion, as does CMYK without a profile.
    """
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_eight_bit(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = PIL.Image.alpha_composite(white, rgba).convert("RGB")
    if icc and not _is_srgb(icc) and image.mode in ("RGB", "CMYK"):
        try:
            source = PIL.ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = PIL.ImageCms.profileToProfile(
                image, source, _SRGB_PROFILE, outputMode="RGB"
            )
        except (PIL.ImageCms.PyCMSError, OSError, ValueError, TypeError):
            converted = None
        if converted is not None:
            image = converted
    result = image.convert("RGB")  # a copy even when already RGB: the caller may close the input
    result.info = {}  # no stale ICC profile, transparency or EXIF in the stored PNG
    return result


def _load_image(row: ImportRow) -> LoadedImage:
    """Validate the image file of ``row`` and decode it to oriented 8-bit sRGB RGB.

    Rejected (``ImageRejected``, a ``ValueError``, with the reason): missing, empty, linked or
    non-regular files; bytes that are not PNG/JPEG/TIFF/BMP/GIF/WebP (an SVG or HTML page
    named .png); truncated or corrupt files (``LOAD_TRUNCATED_IMAGES`` must stay off, or the
    import stops); images over ``PIL.Image.MAX_IMAGE_PIXELS`` (checked from the header before
    any pixel is decoded) or under ``IMPORT_MIN_IMAGE_SIDE`` px per side.

    Stored: 8-bit RGB PNGs and JPEGs with no EXIF rotation, one frame and no profile other
    than sRGB, byte for byte. Anything else is stored as a PNG of the converted image: EXIF
    orientation applied, the first frame only of a multi-frame file (animated GIF/PNG/WebP,
    multi-page TIFF, MPO), CMYK/16-bit/grey/alpha/palette as ``to_srgb_rgb`` converts them.
    A JPEG named .png (or the reverse) is accepted: the bytes decide, and the stored file
    gets the extension of what it is.
    """
    if PIL.ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on: truncated images would be imported "
            "half-decoded; turn it off"
        )
    data = _read_image_file(row.source)
    try:
        with warnings.catch_warnings():
            # Our own check below refuses what Pillow would only warn about (1-2x the limit).
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(io.BytesIO(data), formats=_OPENABLE) as probe:
                _check_dimensions(probe.size)
                probe.verify()
            with PIL.Image.open(io.BytesIO(data), formats=_OPENABLE) as image:
                image.load()
                fmt = image.format or ""
                try:
                    orientation = image.getexif().get(_ORIENTATION, 1)
                except Exception:  # a corrupt EXIF block: the pixels are still fine
                    orientation = 1
                rotated = orientation in range(2, 9)
                multi_frame = bool(getattr(image, "is_animated", False))
                icc = image.info.get("icc_profile")
                keep = (
                    fmt in _KEEP_FORMATS
                    and image.mode == "RGB"
                    and not rotated
                    and not multi_frame
                    and _is_srgb(icc)
                )
                oriented = PIL.ImageOps.exif_transpose(image) if rotated else image
                rgb = to_srgb_rgb(oriented, icc)
    except ImageRejected:
        raise
    except PIL.Image.DecompressionBombError as exc:
        raise ImageRejected(f"image is too large (decompression bomb guard): {exc}") from None
    except PIL.UnidentifiedImageError:
        raise ImageRejected(f"not a readable image: {_describe_unknown(data)}") from None
    except Exception as exc:  # any failure to decode untrusted bytes rejects the file
        raise ImageRejected(
            f"not a readable image ({exc.__class__.__name__}: {exc}); truncated or corrupt?"
        ) from None
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
    mirror = storage.media()
    if target.exists():
        if mirror.remote and not mirror.exists(relative):
            mirror.publish(target)  # written here earlier but never uploaded (a crash between)
        return digest, relative, False
    atomic_write_bytes(target, data)
    mirror.publish(target)
    return digest, relative, True


def remove_unreferenced(relative_paths: Iterable[str]) -> None:
    """Delete stored files that no image row references (the files of a failed import)."""
    for relative in relative_paths:
        if not Image.objects.filter(file=relative).exists():
            (Path(settings.MEDIA_ROOT) / relative).unlink(missing_ok=True)
            storage.media().delete(relative)


#: Extensions counted as images when looking for files that no row uses.
IMAGE_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".gif", ".webp",
    ".heic", ".heif", ".avif",
}  # fmt: skip
#: Orphan image files listed one by one in the warnings; the rest are counted.
MAX_LISTED_ORPHANS = 50
#: The orphan scan stops after this many files (a huge shared folder is not walked to the end).
ORPHAN_SCAN_LIMIT = 500_000


def warning(error: RowError) -> dict[str, Any]:
    """A problem that does not stop a row from being imported, as kept in ``dataset.errors``."""
    entry = error.as_dict()
    entry["reason"] = f"warning: {entry['reason']}"
    entry["level"] = "warning"
    return entry


def is_warning(entry: dict[str, Any]) -> bool:
    return entry.get("level") == "warning"


def find_orphans(images_root: Path, used: set[str]) -> tuple[list[str], bool]:
    """Image files under ``images_root`` (resolved) that are not in ``used`` (absolute paths).

    Hidden files and folders and ``__MACOSX`` are skipped; links are not followed. Returns the
    relative paths, sorted, and whether the scan stopped at ``ORPHAN_SCAN_LIMIT``.
    """
    orphans: list[str] = []
    scanned = 0
    for folder, subfolders, files in os.walk(images_root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "__MACOSX")
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            scanned += 1
            if scanned > ORPHAN_SCAN_LIMIT:
                return sorted(orphans), True
            full = os.path.join(folder, name)
            if full not in used:
                orphans.append(os.path.relpath(full, images_root).replace(os.sep, "/"))
    return sorted(orphans), False


def _orphan_warnings(images_root: Path, rows: list[ImportRow], metadata: Path) -> list[dict]:
    used = {os.path.abspath(row.source) for row in rows}
    orphans, stopped = find_orphans(images_root, used)
    reason = f"no accepted row of {metadata.name} uses this image file; it was not imported"
    entries = [warning(RowError(name, None, None, reason)) for name in orphans[:MAX_LISTED_ORPHANS]]
    if len(orphans) > MAX_LISTED_ORPHANS:
        entries.append(
            warning(
                RowError(
                    images_root.name,
                    None,
                    None,
                    f"and {len(orphans) - MAX_LISTED_ORPHANS} more image files that no "
                    "accepted row uses",
                )
            )
        )
    if stopped:
        entries.append(
            warning(
                RowError(
                    images_root.name,
                    None,
                    None,
                    f"the search for unused image files stopped after {ORPHAN_SCAN_LIMIT} files",
                )
            )
        )
    return entries


def run_import(dataset_pk: int, metadata: str | Path, images_dir: str | Path) -> ImportSummary:
    """Import the files into the (``importing``) dataset ``dataset_pk``; never half-done.

    Rows with problems are rejected and listed in ``dataset.errors``; the import fails only
    when the files cannot be read as a whole or no row is valid. Warnings (see the module
    docstring) are listed too and never fail the import.

    Two rows whose images have identical bytes are both kept, pointing to the one stored
    file (storage is content-addressed); the second gets a warning naming the first, since
    duplicates matter for leakage-safe splits. When ``images_dir`` is inside an upload's
    staging folder (``backend.datasets.uploads``), the upload is extracted first and the
    staging folder is removed at the end, whatever the outcome.

    A dataset that is no longer ``importing`` (a task delivered twice) is left as it is.
    """
    dataset = Dataset.objects.get(pk=dataset_pk)
    metadata, images_dir = resolve_reference(metadata), resolve_reference(images_dir)
    staging = staging_folder_for(images_dir)
    created_files: list[str] = []
    rejected: list[RowError] = []
    if dataset.status != Dataset.Status.IMPORTING:
        logger.warning(
            "dataset %s is %s, not importing: not imported again", dataset.pk, dataset.status
        )
        if staging is not None:
            discard_staging(staging)
        return _summary(dataset)
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
        if staging is not None:
            try:
                fetch_staged(staging)
                extract_staged(staging)
            except UploadRejected as exc:
                raise ImportFailed(
                    [RowError(exc.archive, None, None, problem) for problem in exc.problems]
                ) from None
        if not images_dir.is_dir():
            raise ImportFailed([RowError(str(images_dir), None, None, "images folder not found")])
        images_root = images_dir.resolve()
        roots = {str(images_root), os.path.abspath(images_dir)}
        rows, problems = reader(metadata, images_dir)
        rejected = [p for p in problems if p.level != "warning"]
        seen: set[str] = set()
        first_with_bytes: dict[str, ImportRow] = {}
        warnings_: list[dict[str, Any]] = [warning(p) for p in problems if p.level == "warning"]
        images: list[Image] = []
        for row in rows:
            if row.image_id in seen:
                rejected.append(
                    RowError(metadata.name, row.row, "image_id", f"duplicate id {row.image_id!r}")
                )
                continue
            seen.add(row.image_id)
            source = os.path.abspath(row.source)
            if not any(os.path.commonpath([root, source]) == root for root in roots):
                rejected.append(
                    RowError(metadata.name, row.row, "file", "points outside the images folder")
                )
                continue
            try:
                loaded = _load_image(row)
            except ValueError as exc:
                rejected.append(RowError(metadata.name, row.row, "file", str(exc)))
                continue
            digest, relative, created = store_image_bytes(loaded.data, loaded.extension)
            if created:
                created_files.append(relative)
            first = first_with_bytes.setdefault(digest, row)
            if first is not row:
                warnings_.append(
                    warning(
                        RowError(
                            metadata.name,
                            row.row,
                            "file",
                            f"same image bytes as row {first.row} ({first.image_id!r}); both "
                            "rows are kept and share one stored file",
                        )
                    )
                )
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
        warnings_.extend(_orphan_warnings(images_root, rows, metadata))
        with transaction.atomic():
            Image.objects.bulk_create(images, batch_size=500)
            dataset.status = Dataset.Status.READY
            dataset.errors = [e.as_dict() for e in rejected] + warnings_
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
    finally:
        if staging is not None:
            discard_staging(staging)
    dataset.refresh_from_db()
    return _summary(dataset)


def _summary(dataset: Dataset) -> ImportSummary:
    return ImportSummary(
        dataset_id=dataset.pk,
        name=dataset.name,
        status=dataset.status,
        imported=dataset.image_count,
        rejected=[e for e in dataset.errors if not is_warning(e)],
        counts=dataset.counts,
        warnings=[e for e in dataset.errors if is_warning(e)],
    )


def _fail(dataset: Dataset, created_files: list[str], errors: list[RowError]) -> None:
    remove_unreferenced(created_files)
    Dataset.objects.filter(pk=dataset.pk).update(
        status=Dataset.Status.FAILED, image_count=0, errors=[e.as_dict() for e in errors], counts={}
    )
