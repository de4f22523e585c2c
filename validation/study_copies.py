"""The copies of images that readers see: one re-encoding pipeline, no metadata.

Synthetic images carry their provenance in PNG text chunks, and real images arrive as JPEGs
with EXIF, ICC profiles and camera-specific sizes; any of these would tell a reader which is
which. ``study_copy`` therefore decodes every image, applies its EXIF orientation, converts
it to 8-bit sRGB RGB (through its ICC profile when it has a usable one), resizes it to one square size, and encodes it with fixed settings and
nothing else: no EXIF, XMP, ICC profile or text chunks. Identical input pixels give
identical bytes.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageOps

FORMATS = ("PNG", "JPEG")


@dataclass(frozen=True)
class StudyCopySettings:
    """How every study image is encoded.

    Args:
        size (`int`, defaults to 256): Width and height in pixels (the image is centre-cropped
            to a square, then resized with Lanczos).
        format (`str`, defaults to ``"PNG"``): ``"PNG"`` or ``"JPEG"``.
        jpeg_quality (`int`, defaults to 92): JPEG quality, with 4:4:4 chroma (no subsampling).
        png_compress_level (`int`, defaults to 0): zlib level of PNG copies. At 0 the pixels
            are stored uncompressed, so every copy of one size has the same length and the
            same chunk layout, whatever the image shows; at 1-9 the ``IDAT`` lengths follow
            how smooth the image is, which ``pad_copy`` hides from the file size only.
    """

    size: int = 256
    format: str = "PNG"
    jpeg_quality: int = 92
    png_compress_level: int = 0

    def __post_init__(self) -> None:
        if (
            isinstance(self.size, bool)
            or not isinstance(self.size, int)
            or not 16 <= self.size <= 4096
        ):
            raise ValueError(f"size: {self.size!r} is not an integer in 16..4096")
        if self.format not in FORMATS:
            raise ValueError(f"format: {self.format!r} is not one of {', '.join(FORMATS)}")
        if not 50 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality: {self.jpeg_quality!r} is not in 50..100")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"png_compress_level: {self.png_compress_level!r} is not in 0..9")


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """``image`` converted from its embedded ICC profile to sRGB, so that a wide-gamut real
    image does not look washed out once its profile is dropped. A profile that cannot be read
    or does not fit the image leaves the pixels as they are (taken as sRGB)."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        return ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
    except (OSError, ValueError, ImageCms.PyCMSError):
        return image


def study_copy(
    source: str | os.PathLike[str] | Image.Image, settings: StudyCopySettings | None = None
) -> bytes:
    """Re-encode ``source`` for a blinded study and return the bytes (see the module docstring).

    Args:
        source (`str`, `os.PathLike` or `PIL.Image.Image`): The original image.
        settings (`StudyCopySettings`, *optional*): Size and encoding; the defaults if omitted.
    """
    settings = settings or StudyCopySettings()
    if isinstance(source, Image.Image):
        image = source.copy()
    else:
        with Image.open(source) as opened:
            opened.load()
            image = opened.copy()
    icc = image.info.get("icc_profile")
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "CMYK"):
        image = (
            image.convert("RGBA").convert("RGB")
            if "A" in image.getbands()
            else image.convert("RGB")
        )
    if icc:
        image = _to_srgb(image, icc)
    if image.mode != "RGB":  # CMYK whose profile could not be used
        image = image.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != settings.size:
        image = image.resize((settings.size, settings.size), Image.Resampling.LANCZOS)
    clean = Image.new("RGB", image.size)  # a fresh image: no .info, no ICC, no EXIF carried over
    clean.paste(image)
    buffer = io.BytesIO()
    if settings.format == "PNG":
        clean.save(buffer, format="PNG", optimize=False, compress_level=settings.png_compress_level)
    else:
        clean.save(
            buffer, format="JPEG", quality=settings.jpeg_quality, subsampling=0, optimize=False
        )
    return buffer.getvalue()


SIZE_BUCKET = 4096


def padded_size(sizes: list[int], bucket: int = SIZE_BUCKET) -> int:
    """The one byte size every copy of a study is padded to: the largest, rounded up to ``bucket``.

    Compressed size follows image smoothness, so unpadded sizes can separate real from
    synthetic images without looking at them; padded copies all have the same length.

    Args:
        sizes (`list[int]`): Byte sizes of the encoded copies.
        bucket (`int`, defaults to 4096): Granularity of the padded size.
    """
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"sizes: must be a non-empty list of positive integers, got {sizes!r}")
    if isinstance(bucket, bool) or not isinstance(bucket, int) or bucket < 1:
        raise ValueError(f"bucket: {bucket!r} is not a positive integer")
    return -(-max(sizes) // bucket) * bucket


def pad_copy(data: bytes, size: int) -> bytes:
    """``data`` followed by zero bytes up to ``size``.

    The padding lies after the PNG ``IEND`` chunk or the JPEG end-of-image marker, where
    decoders stop reading: it is not a chunk or segment, so it carries no metadata.

    Args:
        data (`bytes`): An encoded copy from ``study_copy``.
        size (`int`): The target length (at least ``len(data)``).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < len(data):
        raise ValueError(f"size: {size!r} is smaller than the copy ({len(data)} bytes)")
    return data + b"\0" * (size - len(data))
