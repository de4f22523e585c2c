"""Study copies carry pixels only: no provenance, EXIF, ICC or text chunks; one size and format."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from generation.generate import PROVENANCE_KEY, read_provenance
from validation.study_copies import StudyCopySettings, pad_copy, padded_size, study_copy


def archival_png(path: Path) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PROVENANCE_KEY, '{"seed": 7, "model": "fairderm-conditional-unet"}')
    info.add_text("parameters", "Steps: 25, Sampler: DDIM, Seed: 7")
    Image.new("RGB", (64, 64), (120, 80, 60)).save(path, format="PNG", pnginfo=info)
    return path


def camera_jpeg(path: Path) -> Path:
    image = Image.new("RGB", (120, 80), (200, 150, 130))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: width and height swap on display
    exif[0x010F] = "DermLite"
    image.save(path, format="JPEG", exif=exif.tobytes(), icc_profile=b"\0" * 128, quality=80)
    return path


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_copies_of_real_and_synthetic_images_look_the_same_to_a_parser(
    tmp_path: Path, fmt: str
) -> None:
    settings = StudyCopySettings(size=48, format=fmt)
    synthetic = archival_png(tmp_path / "syn.png")
    assert read_provenance(synthetic)["seed"] == 7  # the archival file has it
    copies = [
        study_copy(synthetic, settings),
        study_copy(camera_jpeg(tmp_path / "real.jpg"), settings),
    ]
    for data in copies:
        assert (
            PROVENANCE_KEY.encode() not in data
            and b"parameters" not in data
            and b"DermLite" not in data
        )
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.mode, image.size) == (fmt, "RGB", (48, 48))
            assert "icc_profile" not in image.info and "exif" not in image.info
            assert not getattr(image, "text", {})
            assert len(image.getexif()) == 0


def test_exif_orientation_is_applied_before_cropping(tmp_path: Path) -> None:
    image = Image.new("RGB", (120, 80), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 60, 80))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: white ends up on top
    path = tmp_path / "rotated.jpg"
    image.save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    with Image.open(io.BytesIO(study_copy(path, StudyCopySettings(size=20)))) as copy:
        top, bottom = copy.getpixel((10, 2)), copy.getpixel((10, 17))
    assert sum(top) > 600 and sum(bottom) < 150


def test_identical_pixels_give_identical_bytes(tmp_path: Path) -> None:
    first = study_copy(archival_png(tmp_path / "a.png"))
    second_source = Image.new("RGB", (64, 64), (120, 80, 60))
    assert study_copy(second_source) == first


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size": 8}, "size"),
        ({"format": "WEBP"}, "format"),
        ({"jpeg_quality": 20}, "jpeg_quality"),
        ({"png_compress_level": 10}, "png_compress_level"),
    ],
)
def test_settings_are_validated(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        StudyCopySettings(**kwargs)


def test_padded_copies_have_one_length_and_still_decode(tmp_path: Path) -> None:
    settings = StudyCopySettings(size=32, png_compress_level=6)
    flat = study_copy(Image.new("RGB", (40, 40), (90, 60, 50)), settings)
    noisy_source = Image.effect_noise((40, 40), 80).convert("RGB")
    noisy = study_copy(noisy_source, settings)
    assert len(noisy) > len(flat)  # unpadded, the size alone tells the two apart
    size = padded_size([len(flat), len(noisy)], bucket=1024)
    assert size % 1024 == 0 and size >= len(noisy)
    padded = [pad_copy(flat, size), pad_copy(noisy, size)]
    assert {len(p) for p in padded} == {size}
    for data, original in zip(padded, (flat, noisy), strict=True):
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.size == (32, 32) and not getattr(image, "text", {})
        with Image.open(io.BytesIO(original)) as expected, Image.open(io.BytesIO(data)) as got:
            assert got.tobytes() == expected.tobytes()


def test_padding_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^size:"):
        pad_copy(b"x" * 10, 5)
    with pytest.raises(ValueError, match=r"^sizes:"):
        padded_size([])
    with pytest.raises(ValueError, match=r"^bucket:"):
        padded_size([3], bucket=0)


def png_chunks(data: bytes) -> list[tuple[bytes, int]]:
    """(type, length) of every chunk of a PNG, up to ``IEND`` (padding follows it)."""
    chunks, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        chunks.append((data[offset + 4 : offset + 8], length))
        offset += 12 + length
        if chunks[-1][0] == b"IEND":
            break
    return chunks


def test_default_png_copies_have_one_length_and_chunk_layout_whatever_they_show() -> None:
    flat = study_copy(Image.new("RGB", (64, 64), (90, 60, 50)))
    noisy = study_copy(Image.effect_noise((64, 64), 80).convert("RGB"))
    assert len(flat) == len(noisy)
    assert png_chunks(flat) == png_chunks(noisy)
    assert [kind for kind, _ in png_chunks(flat)][0] == b"IHDR"
    assert {kind for kind, _ in png_chunks(flat)} == {b"IHDR", b"IDAT", b"IEND"}


def swapped_primaries_profile() -> bytes:
    """An RGB ICC profile whose red and green primaries are swapped (sRGB's, edited)."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    tags = {}
    for i in range(int.from_bytes(data[128:132], "big")):
        offset = 132 + 12 * i
        tags[bytes(data[offset : offset + 4])] = offset
    red, green = tags[b"rXYZ"], tags[b"gXYZ"]
    data[red + 4 : red + 12], data[green + 4 : green + 12] = (
        data[green + 4 : green + 12],
        data[red + 4 : red + 12],
    )
    return bytes(data)


def test_colours_are_converted_to_srgb_through_the_embedded_profile(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(path, icc_profile=swapped_primaries_profile())
    with Image.open(io.BytesIO(study_copy(path, StudyCopySettings(size=16)))) as copy:
        assert "icc_profile" not in copy.info
        red, green, blue = copy.getpixel((8, 8))
    assert green > 200 and red < 60 and blue < 60  # what the profile means, not the raw values
