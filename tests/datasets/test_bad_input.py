"""Bad input never gets in: the CSV and image cases of the bad-input catalogue.

Each case checks the message (file, row, field) and that nothing is left behind: no dataset
half-ready, no stored file that no image row uses.
"""

from __future__ import annotations

import csv
import io
import resource
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageCms
import PIL.ImageFile
import pytest
from django.conf import settings

from backend.datasets.importing import ImportSummary
from backend.datasets.models import Dataset, Image
from backend.datasets.rows import ImportFailed, RowError, read_csv_rows, resolve_inside
from backend.datasets.services import import_now
from tests.datasets.test_importing import HEADER, row, stored_files, write_set

REQUIRED = ["image_id", "file", "fst", "diagnosis"]


def encode(image: PIL.Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int] = (40, 30), seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def csv_text(rows: list[dict[str, str]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HEADER, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    for item in rows:
        writer.writerow({key: item.get(key, "") for key in HEADER})
    return buffer.getvalue()


def failure(path: Path, required: list[str] = REQUIRED) -> list[RowError]:
    with pytest.raises(ImportFailed) as excinfo:
        read_csv_rows(path, required)
    return excinfo.value.errors


def import_set(folder: Path, name: str = "set") -> ImportSummary:
    return import_now(
        name=name, format="phantom", metadata=folder / "metadata.csv", images_dir=folder
    )


def reasons(summary: ImportSummary) -> dict[tuple[int | None, str | None], str]:
    return {(e["row"], e["field"]): e["reason"] for e in summary.rejected}


def assert_only_its_images_were_stored(name: str, before: set[Path]) -> None:
    """Every file added under MEDIA_ROOT belongs to an image row of dataset ``name``."""
    files = {image.path for image in Dataset.objects.get(name=name).images.all()}
    assert stored_files() - before <= files


def assert_failed_cleanly(summary: ImportSummary, before: set[Path]) -> None:
    assert summary.status == "failed"
    dataset = Dataset.objects.get(pk=summary.dataset_id)
    assert dataset.images.count() == 0 and dataset.image_count == 0
    assert stored_files() == before


# --- CSV: encodings -----------------------------------------------------------------------


def test_utf8_with_and_without_bom_read_alike(tmp_path: Path) -> None:
    text = csv_text([row(0), row(1)])
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_bytes(text.encode("utf-8"))
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    rows, errors = read_csv_rows(bom, REQUIRED)
    assert errors == [] and rows == read_csv_rows(plain, REQUIRED)[0]
    assert rows[1]["image_id"] == "ph-0001" and "image_id" in rows[0]


def test_utf16_with_a_bom_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_bytes(csv_text([row(0, patient_id="Zoë")]).encode("utf-16"))  # BOM + UTF-16
    rows, _ = read_csv_rows(path, REQUIRED)
    assert rows[0]["patient_id"] == "Zoë"


def test_latin1_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_bytes(csv_text([row(0), row(1, patient_id="Zoë")]).encode("latin-1"))
    [error] = failure(path)
    assert (error.file, error.row) == ("metadata.csv", None)
    assert error.reason.startswith("not UTF-8 text: byte 0xeb on line 3")
    assert "save the CSV as UTF-8" in error.reason
    assert str(error).startswith("metadata.csv: not UTF-8")


def test_utf16_without_a_bom_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_bytes(csv_text([row(0)]).encode("utf-16-le"))
    [error] = failure(path)
    assert "UTF-16 without a byte-order mark" in error.reason and "UTF-8" in error.reason


def test_a_workbook_named_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    [error] = failure(path)
    assert "spreadsheet or archive, not a CSV" in error.reason


# --- CSV: shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty: no header row"),
        (b"\n\n  \n", "the file is empty: no header row"),
        (b"image_id,file,fst,diagnosis\n", "the file has a header but no rows"),
        (b"image_id,file,fst,diagnosis\n\n\n", "the file has a header but no rows"),
    ],
    ids=["empty", "blank-lines", "header-only", "header-and-blank-lines"],
)
def test_empty_and_header_only_files_fail_as_a_whole(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "metadata.csv"
    path.write_bytes(content)
    [error] = failure(path)
    assert (error.file, error.reason) == ("metadata.csv", message)


def test_a_missing_file_or_a_folder_is_named(tmp_path: Path) -> None:
    assert failure(tmp_path / "nope.csv")[0].reason.startswith("file not found")
    (tmp_path / "dir.csv").mkdir()
    assert failure(tmp_path / "dir.csv")[0].reason.startswith("a folder, not a CSV file")


@pytest.mark.parametrize("delimiter", [";", "\t", "|"], ids=["semicolon", "tab", "pipe"])
@pytest.mark.django_db
def test_other_delimiters_are_detected_from_the_header(tmp_path: Path, delimiter: str) -> None:
    write_set(tmp_path, [row(i) for i in range(3)])
    (tmp_path / "metadata.csv").write_text(csv_text([row(i) for i in range(3)], delimiter))
    summary = import_set(tmp_path)
    assert (summary.status, summary.imported, summary.rejected) == ("ready", 3, [])


def test_a_decimal_comma_does_not_fool_the_detection(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_text("image_id;file;fst;diagnosis;ita\na;images/a.png;2;nevus;20,5\n")
    rows, _ = read_csv_rows(path, REQUIRED)
    assert rows == [
        {"image_id": "a", "file": "images/a.png", "fst": "2", "diagnosis": "nevus", "ita": "20,5"}
    ]


def test_duplicate_column_names_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_text("image_id,file,fst,diagnosis,fst\na,images/a.png,2,nevus,3\n")
    [error] = failure(path)
    assert (error.row, error.field) == (0, "fst")
    assert error.reason == "duplicate column name (columns 3, 5)"


def test_header_names_are_stripped_and_case_mistakes_explained(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_text(" image_id , file ,FST,diagnosis,\na,images/a.png,2,nevus,\n")
    [error] = failure(path)
    assert error.field == "fst"
    assert error.reason == (
        "required column is missing (found 'FST': column names are case-sensitive)"
    )
    path.write_text(" image_id , file ,fst,diagnosis,\na,images/a.png,2,nevus,\n")
    rows, _ = read_csv_rows(path, REQUIRED)
    assert rows == [{"image_id": "a", "file": "images/a.png", "fst": "2", "diagnosis": "nevus"}]


@pytest.mark.django_db
def test_rows_with_too_many_or_too_few_fields_fail_the_file_naming_each_row(
    tmp_path: Path,
) -> None:
    metadata = write_set(tmp_path, [row(i) for i in range(4)])
    lines = metadata.read_text().splitlines()
    lines[2] += ",surplus"  # data row 2
    lines[4] = lines[4].rsplit(",", 3)[0]  # data row 4: three fields short
    metadata.write_text("\n".join(lines) + "\n")
    before = stored_files()
    summary = import_set(tmp_path)
    assert_failed_cleanly(summary, before)
    assert [(e["file"], e["row"]) for e in summary.rejected] == [
        ("metadata.csv", 2),
        ("metadata.csv", 4),
    ]
    assert summary.rejected[0]["reason"].startswith(
        "10 fields but the header has 9 (line 3, comma-separated)"
    )
    assert summary.rejected[1]["reason"].startswith("6 fields but the header has 9")


def test_empty_surplus_fields_and_trailing_empty_rows_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_text(
        "image_id,file,fst,diagnosis\n"
        "a,images/a.png,2,nevus,,\n"
        ",,,\n"
        "b,images/b.png,3,bcc\n"
        ",,,\n"
        ",,,\n"
    )
    rows, _ = read_csv_rows(path, REQUIRED)
    # The empty row between a and b stays (the readers number rows by position).
    assert [r["image_id"] for r in rows] == ["a", "", "b"]


def test_broken_quoting_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_text(
        'image_id,file,fst,diagnosis\na,images/a.png,2,nevus\n"b"x,images/b.png,2,nevus\n'
    )
    [error] = failure(path)
    assert (error.file, error.row) == ("metadata.csv", 2)
    assert error.reason.startswith("cannot be parsed (line 3)")
    path.write_text('image_id,file,fst,diagnosis\na,images/a.png,2,"nevus\n')
    [error] = failure(path)
    assert error.row == 1 and "unexpected end of data" in error.reason


def test_a_nul_byte_in_a_row_is_named(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_bytes(
        b"image_id,file,fst,diagnosis\na,images/a.png,2,nevus\nb\x00,images/b.png,2,nevus\n"
    )
    [error] = failure(path)
    assert (error.row, error.reason) == (2, "contains a NUL byte (line 3)")


def test_many_malformed_rows_are_listed_up_to_a_cap(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    path.write_text("image_id,file,fst,diagnosis\n" + "a,b\n" * 200)
    errors = failure(path)
    assert len(errors) == 51
    assert [e.row for e in errors[:50]] == list(range(1, 51))
    assert errors[-1].reason == "and 150 more malformed rows"


def test_a_hundred_thousand_rows_read_in_seconds(tmp_path: Path) -> None:
    path = tmp_path / "metadata.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(100_000):
            writer.writerow([f"ph-{i:06d}", f"images/ph-{i:06d}.png", "L1", "P1", "3", "20.5", "nevus", "false", "2"])  # fmt: skip
    started = time.perf_counter()
    rows, errors = read_csv_rows(path, REQUIRED)
    elapsed = time.perf_counter() - started
    assert len(rows) == 100_000 and errors == []
    assert rows[-1]["image_id"] == "ph-099999"
    assert elapsed < 5, f"{elapsed:.1f} s"


# --- Paths in the CSV -------------------------------------------------------------------------


def test_paths_are_resolved_inside_the_folder_only(tmp_path: Path) -> None:
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"x")
    assert resolve_inside(root, "images\\a.png") == (root / "images" / "a.png").resolve()
    for bad, message in [
        ("https://example.org/a.png", "is a URL"),
        ("/etc/passwd", "absolute path"),
        ("C:\\data\\a.png", "absolute path"),
        ("images/../../x.png", "points outside the images folder"),
        ("images/a\x00.png", "NUL byte"),
        ("", "empty path"),
    ]:
        with pytest.raises(ValueError, match=message):
            resolve_inside(root, bad)


@pytest.mark.django_db
def test_symbolic_links_in_the_images_folder_are_refused(tmp_path: Path) -> None:
    set_dir = tmp_path / "set"
    metadata = write_set(
        set_dir, [row(0), row(1, file="images/link.png"), row(2, file="linked/ph-0002.png")]
    )
    (set_dir / "images" / "link.png").unlink()
    (set_dir / "images" / "link.png").symlink_to(set_dir / "images" / "ph-0000.png")
    (set_dir / "real").mkdir()
    (set_dir / "real" / "ph-0002.png").write_bytes(
        (set_dir / "images" / "ph-0000.png").read_bytes()
    )
    (set_dir / "linked").symlink_to(set_dir / "real", target_is_directory=True)
    summary = import_now(name="links", format="phantom", metadata=metadata, images_dir=set_dir)
    assert summary.imported == 1
    got = reasons(summary)
    assert got[(2, "file")] == "'images/link.png' is a symbolic link"
    assert got[(3, "file")] == "'linked/ph-0002.png' goes through a symbolic link ('linked')"


@pytest.mark.django_db
def test_a_missing_file_whose_name_differs_in_case_or_accents_is_hinted(tmp_path: Path) -> None:
    write_set(tmp_path, [row(0), row(1, file="images/Café.PNG")])
    (tmp_path / "images" / "Café.PNG").unlink()
    (tmp_path / "images" / "cafe\u0301.png").write_bytes(encode(noise((20, 20), seed=7)))
    summary = import_set(tmp_path)
    assert reasons(summary)[(2, "file")] == (
        "image file not found: Café.PNG (the folder has 'cafe\u0301.png': names must match "
        "exactly, in case and accents)"
    )


# --- Images: not images -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "image file is empty: ph-0001.png"),
        (
            b"<!DOCTYPE html><html><body>login</body></html>",
            "not a readable image: the file is HTML text",
        ),
        (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
            "not a readable image: the file is SVG text",
        ),
        (
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00" + b"\x00" * 64,
            "not a readable image: HEIC/HEIF/AVIF images are not supported",
        ),
        (
            b"P6\n40 40\n255\n" + b"\x80" * 4800,
            "not a readable image: the bytes are not a PNG, JPEG",
        ),
        (b"just some text, not an image at all", "not a readable image"),
    ],
    ids=["zero-byte", "html", "svg", "heic", "ppm-not-allowed", "text"],
)
@pytest.mark.django_db
def test_files_that_are_not_images_are_rejected_on_their_bytes(
    tmp_path: Path, data: bytes, message: str
) -> None:
    write_set(tmp_path, [row(0), row(1)], images={"images/ph-0001.png": data})
    before = stored_files()
    summary = import_set(tmp_path)
    assert (summary.status, summary.imported) == ("ready", 1)
    assert reasons(summary)[(2, "file")].startswith(message)
    assert summary.rejected[0]["file"] == "metadata.csv"
    assert_only_its_images_were_stored("set", before)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.django_db
def test_truncated_images_are_rejected_not_half_decoded(tmp_path: Path, fmt: str) -> None:
    data = encode(noise((64, 64)), fmt)
    write_set(tmp_path, [row(0), row(1)], images={"images/ph-0001.png": data[: len(data) // 2]})
    summary = import_set(tmp_path)
    assert summary.imported == 1
    reason = reasons(summary)[(2, "file")]
    assert reason.startswith("not a readable image (OSError:") and "truncated" in reason.lower()


@pytest.mark.django_db
def test_an_import_refuses_to_run_with_truncated_loading_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PIL.ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    write_set(tmp_path, [row(0), row(1)])
    before = stored_files()
    summary = import_set(tmp_path)
    assert_failed_cleanly(summary, before)
    assert "LOAD_TRUNCATED_IMAGES is on" in summary.rejected[0]["reason"]


@pytest.mark.django_db
def test_images_under_the_minimum_side_are_rejected(tmp_path: Path) -> None:
    small = encode(PIL.Image.new("RGB", (40, 8), (200, 150, 130)))
    write_set(tmp_path, [row(0), row(1)], images={"images/ph-0001.png": small})
    summary = import_set(tmp_path)
    assert reasons(summary)[(2, "file")] == (
        "image is too small: 40 x 8 px (the minimum is 16 px per side)"
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` with a tiny IDAT: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.django_db
def test_a_30k_by_30k_png_bomb_is_rejected_quickly_without_allocating(tmp_path: Path) -> None:
    write_set(
        tmp_path, [row(0), row(1)], images={"images/ph-0001.png": png_header_only(30_000, 30_000)}
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.perf_counter()
    summary = import_set(tmp_path)
    elapsed = time.perf_counter() - started
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert reasons(summary)[(2, "file")].startswith("image is too large")
    assert "decompression bomb" in reasons(summary)[(2, "file")]
    assert elapsed < 5 and grown_mib < 100, (elapsed, grown_mib)


@pytest.mark.django_db
def test_images_between_one_and_two_times_the_pixel_limit_are_rejected_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; the import refuses.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    write_set(tmp_path, [row(0), row(1)], images={"images/ph-0001.png": encode(noise((40, 40)))})
    (tmp_path / "images/ph-0000.png").write_bytes(encode(noise((20, 20))))
    summary = import_set(tmp_path)
    assert summary.imported == 1
    assert reasons(summary)[(2, "file")] == (
        "image is too large: 40 x 40 px is over the 1000 pixel limit (decompression bomb guard)"
    )


# --- Images: modes, orientation, frames -------------------------------------------------------


def stored_image(dataset: str, image_id: str) -> tuple[Image, PIL.Image.Image]:
    image = Image.objects.get(dataset__name=dataset, image_id=image_id)
    with PIL.Image.open(image.path) as opened:
        opened.load()
        return image, opened.copy()


def _cmyk() -> bytes:
    return encode(PIL.Image.new("CMYK", (24, 24), (0, 255, 255, 0)), "JPEG", quality=95)


def _sixteen_bit() -> bytes:
    return encode(PIL.Image.fromarray(np.full((24, 24), 40000, dtype=np.uint16)))


def _alpha(mode: str) -> bytes:
    if mode == "LA":
        return encode(PIL.Image.new("LA", (24, 24), (0, 0)))
    return encode(PIL.Image.new("RGBA", (24, 24), (0, 0, 0, 0)))


def _palette_with_transparency() -> bytes:
    image = PIL.Image.new("P", (24, 24), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    return encode(image, transparency=1)


@pytest.mark.parametrize(
    ("data", "pixel"),
    [
        (_cmyk, (255, 0, 0)),  # cyan-free, full magenta + yellow: red
        (_sixteen_bit, (156, 156, 156)),  # 40000 >> 8, not clipped to white
        (lambda: encode(PIL.Image.new("L", (24, 24), 90)), (90, 90, 90)),
        (lambda: _alpha("RGBA"), (255, 255, 255)),  # transparent: composited on white
        (lambda: _alpha("LA"), (255, 255, 255)),
        (_palette_with_transparency, (255, 255, 255)),
        (lambda: encode(PIL.Image.new("1", (24, 24), 1)), (255, 255, 255)),
    ],
    ids=["cmyk-jpeg", "16-bit-grey", "grey", "rgba", "la", "palette-transparency", "bilevel"],
)
@pytest.mark.django_db
def test_other_modes_are_stored_as_8_bit_srgb_png(tmp_path: Path, data: Any, pixel: tuple) -> None:
    write_set(tmp_path, [row(0)], images={"images/ph-0000.png": data()})
    summary = import_set(tmp_path, name="modes")
    assert summary.imported == 1, summary.rejected
    image, stored = stored_image("modes", "ph-0000")
    assert image.file.endswith(".png") and stored.mode == "RGB"
    got = stored.getpixel((12, 12))
    assert all(abs(a - b) <= 3 for a, b in zip(got, pixel, strict=True)), got


@pytest.mark.django_db
def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    wide = PIL.Image.new("RGB", (48, 24), (200, 150, 130))
    wide.paste((20, 20, 20), (0, 0, 8, 8))  # a dark corner, top left as stored
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    write_set(
        tmp_path,
        [row(0)],
        images={"images/ph-0000.png": encode(wide, "JPEG", exif=exif, quality=95)},
    )
    import_set(tmp_path, name="exif")
    image, stored = stored_image("exif", "ph-0000")
    assert (image.width, image.height) == (24, 48) == stored.size
    assert image.file.endswith(".png")
    assert sum(stored.getpixel((20, 2))) < 150  # the dark corner is now top right


@pytest.mark.django_db
def test_multi_frame_images_keep_their_first_frame(tmp_path: Path) -> None:
    frames = [PIL.Image.new("RGB", (24, 24), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    tiff = io.BytesIO()
    frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
    write_set(
        tmp_path,
        [row(0, file="images/a.gif"), row(1, file="images/b.tif")],
        images={"images/a.gif": gif.getvalue(), "images/b.tif": tiff.getvalue()},
    )
    summary = import_set(tmp_path, name="frames")
    assert summary.imported == 2, summary.rejected
    for image_id in ("ph-0000", "ph-0001"):
        image, stored = stored_image("frames", image_id)
        assert image.file.endswith(".png")
        assert stored.getpixel((5, 5))[0] > 200 and stored.getpixel((5, 5))[2] < 50


@pytest.mark.django_db
def test_plain_rgb_png_and_jpeg_are_kept_byte_for_byte_whatever_their_name(tmp_path: Path) -> None:
    jpeg = encode(noise((32, 32), seed=1), "JPEG")
    png = encode(noise((32, 32), seed=2))
    write_set(
        tmp_path, [row(0), row(1)], images={"images/ph-0000.png": jpeg, "images/ph-0001.png": png}
    )
    import_set(tmp_path, name="kept")
    first, _ = stored_image("kept", "ph-0000")
    second, _ = stored_image("kept", "ph-0001")
    assert first.file.endswith(".jpg") and first.path.read_bytes() == jpeg
    assert second.file.endswith(".png") and second.path.read_bytes() == png


@pytest.mark.django_db
def test_a_non_srgb_profile_is_converted_not_kept(tmp_path: Path) -> None:
    profile = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile("XYZ")).tobytes()
    jpeg = encode(noise((32, 32)), "JPEG", icc_profile=profile)
    write_set(tmp_path, [row(0)], images={"images/ph-0000.png": jpeg})
    import_set(tmp_path, name="icc")
    image, stored = stored_image("icc", "ph-0000")
    assert image.file.endswith(".png") and stored.mode == "RGB"
    assert "icc_profile" not in stored.info


# --- Duplicates and orphans -------------------------------------------------------------------


@pytest.mark.django_db
def test_identical_bytes_under_two_ids_share_one_file_with_a_warning(tmp_path: Path) -> None:
    same = encode(noise((24, 24)))
    write_set(
        tmp_path,
        [row(0), row(1), row(2)],
        images={"images/ph-0000.png": same, "images/ph-0002.png": same},
    )
    before = stored_files()
    summary = import_set(tmp_path, name="dupes")
    assert (summary.imported, summary.rejected) == (3, [])
    assert_only_its_images_were_stored("dupes", before)
    assert len({image.file for image in Image.objects.all()}) == 2
    first, second = (Image.objects.get(image_id=i) for i in ("ph-0000", "ph-0002"))
    assert first.sha256 == second.sha256 and first.file == second.file
    [warning] = summary.warnings
    assert warning == {
        "file": "metadata.csv",
        "row": 3,
        "field": "file",
        "reason": "warning: same image bytes as row 1 ('ph-0000'); both rows are kept and share "
        "one stored file",
        "level": "warning",
    }


@pytest.mark.django_db
def test_images_no_row_uses_are_warnings_not_errors(tmp_path: Path) -> None:
    write_set(tmp_path, [row(0), row(1)])
    (tmp_path / "images" / "extra.jpg").write_bytes(encode(noise((20, 20)), "JPEG"))
    (tmp_path / "images" / "sub").mkdir()
    (tmp_path / "images" / "sub" / "more.png").write_bytes(encode(noise((20, 20), seed=3)))
    (tmp_path / "images" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._ph-0000.png").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "notes.txt").write_text("not an image")
    before = stored_files()
    summary = import_set(tmp_path, name="orphans")
    assert (summary.status, summary.imported, summary.rejected) == ("ready", 2, [])
    assert [(w["file"], w["row"]) for w in summary.warnings] == [
        ("images/extra.jpg", None),
        ("images/sub/more.png", None),
    ]
    assert summary.warnings[0]["reason"] == (
        "warning: no accepted row of metadata.csv uses this image file; it was not imported"
    )
    assert_only_its_images_were_stored("orphans", before)  # orphans are not stored
    dataset = Dataset.objects.get(name="orphans")
    assert len(dataset.errors) == 2 and all(e["level"] == "warning" for e in dataset.errors)


@pytest.mark.django_db
def test_a_failed_import_stores_nothing_and_keeps_no_warnings(tmp_path: Path) -> None:
    write_set(tmp_path, [row(0, fst="9"), row(1)], images={"images/ph-0001.png": b"<html></html>"})
    (tmp_path / "images" / "orphan.png").write_bytes(encode(noise((20, 20))))
    before = stored_files()
    summary = import_set(tmp_path, name="nothing")
    assert_failed_cleanly(summary, before)
    assert summary.warnings == [] and len(summary.rejected) == 2
    assert not any(p.name.endswith(".tmp") for p in Path(settings.MEDIA_ROOT).rglob("*"))
