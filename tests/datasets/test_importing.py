"""Phantom-format imports: rows validated with file/row/field errors, all or nothing, deduplicated."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from backend.datasets.models import Dataset, Image
from backend.datasets.services import import_now
from tests.datasets.factories import png_bytes

HEADER = [
    "image_id",
    "file",
    "lesion_id",
    "patient_id",
    "fst",
    "ita",
    "diagnosis",
    "malignant",
    "n_colours",
]


def write_set(
    folder: Path, rows: list[dict[str, str]], images: dict[str, bytes] | None = None
) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for row in rows:
        name = row.get("file", "")
        if name.startswith("images/") and (images is None or name not in images):
            (folder / name).write_bytes(
                png_bytes((10 * int(row["fst"] or 1), 100, len(row["image_id"]) * 9))
            )
    for name, data in (images or {}).items():
        (folder / name).write_bytes(data)
    metadata = folder / "metadata.csv"
    with metadata.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in HEADER})
    return metadata


def row(i: int, **overrides: str) -> dict[str, str]:
    base = {
        "image_id": f"ph-{i:04d}",
        "file": f"images/ph-{i:04d}.png",
        "lesion_id": f"L{i // 2}",
        "patient_id": f"P{i // 4}",
        "fst": str(i % 6 + 1),
        "ita": "20.5",
        "diagnosis": ["nevus", "melanoma", "bcc", "seborrheic_keratosis"][i % 4],
        "malignant": "false",
        "n_colours": "2",
    }
    base.update(overrides)
    return base


def stored_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.mark.django_db
def test_it_imports_rows_with_labels_and_ground_truth(tmp_path: Path) -> None:
    metadata = write_set(tmp_path, [row(i) for i in range(12)])
    summary = import_now(name="phantom", format="phantom", metadata=metadata, images_dir=tmp_path)
    assert summary.status == "ready"
    assert summary.imported == 12
    dataset = Dataset.objects.get(name="phantom")
    image = dataset.images.get(image_id="ph-0005")
    assert (image.fst, image.diagnosis, image.malignant) == (6, "melanoma", True)
    assert image.fst_source == Image.FstSource.LABEL
    assert image.ground_truth == {"n_colours": "2"}
    assert (
        image.path.exists()
        and image.path.read_bytes() == (tmp_path / "images/ph-0005.png").read_bytes()
    )
    assert dataset.counts["fst"]["6"] == 2
    assert dataset.counts["fst_diagnosis"]["1"] == {"bcc": 1, "nevus": 1}
    assert dataset.count_table()["rows"][0]["fst"] == "I"


@pytest.mark.django_db
def test_bad_rows_are_rejected_with_file_row_and_field(tmp_path: Path) -> None:
    rows = [
        row(0),
        row(1, fst="7"),
        row(2, diagnosis="wart"),
        row(3, file="../../etc/passwd"),
        row(4),
    ]
    rows.append(row(5, file="images/missing.png"))
    metadata = write_set(tmp_path, rows)
    (tmp_path / "images/missing.png").unlink(missing_ok=True)
    summary = import_now(name="mixed", format="phantom", metadata=metadata, images_dir=tmp_path)
    assert summary.status == "ready"
    assert summary.imported == 2
    reasons = {(e["row"], e["field"]): e["reason"] for e in summary.rejected}
    assert "not a Fitzpatrick skin type" in reasons[(2, "fst")]
    assert "unknown diagnosis 'wart'" in reasons[(3, "diagnosis")]
    assert "outside the images folder" in reasons[(4, "file")]
    assert "image file not found" in reasons[(6, "file")]
    assert all(e["file"] == "metadata.csv" for e in summary.rejected)


@pytest.mark.django_db
def test_a_failed_import_leaves_nothing_behind(tmp_path: Path) -> None:
    rows = [row(0, fst="9"), row(1, diagnosis="unknown-thing")]
    metadata = write_set(tmp_path, rows)
    before = stored_files()
    summary = import_now(name="broken", format="phantom", metadata=metadata, images_dir=tmp_path)
    assert summary.status == "failed"
    dataset = Dataset.objects.get(name="broken")
    assert dataset.images.count() == 0 and dataset.image_count == 0
    assert stored_files() == before
    assert len(dataset.errors) == 2


@pytest.mark.django_db
def test_missing_columns_fail_the_import_by_name(tmp_path: Path) -> None:
    metadata = tmp_path / "metadata.csv"
    metadata.write_text("image_id,file\nx,images/x.png\n")
    (tmp_path / "images").mkdir()
    summary = import_now(name="nocols", format="phantom", metadata=metadata, images_dir=tmp_path)
    assert summary.status == "failed"
    fields = {e["field"] for e in summary.rejected}
    assert fields == {"fst", "diagnosis"}
    assert all(e["reason"] == "required column is missing" for e in summary.rejected)


@pytest.mark.django_db
def test_non_utf8_and_non_images_are_reported(tmp_path: Path) -> None:
    metadata = tmp_path / "metadata.csv"
    metadata.write_bytes(
        "image_id,file,fst,diagnosis\nb\xe9,images/x.png,2,nevus\n".encode("latin-1")
    )
    (tmp_path / "images").mkdir()
    summary = import_now(name="latin1", format="phantom", metadata=metadata, images_dir=tmp_path)
    assert summary.status == "failed"
    assert "not UTF-8" in summary.rejected[0]["reason"]

    other = tmp_path / "other"
    metadata = write_set(other, [row(0), row(1)], images={"images/ph-0001.png": b"<svg></svg>"})
    summary = import_now(name="svg", format="phantom", metadata=metadata, images_dir=other)
    assert summary.imported == 1
    assert "not a readable image" in summary.rejected[0]["reason"]


@pytest.mark.django_db
def test_identical_bytes_are_stored_once(tmp_path: Path) -> None:
    metadata = write_set(tmp_path, [row(i) for i in range(4)])
    import_now(name="first", format="phantom", metadata=metadata, images_dir=tmp_path)
    files_after_first = stored_files()
    import_now(name="second", format="phantom", metadata=metadata, images_dir=tmp_path)
    assert stored_files() == files_after_first
    first, second = (Dataset.objects.get(name=n) for n in ("first", "second"))
    assert sorted(first.images.values_list("sha256", flat=True)) == sorted(
        second.images.values_list("sha256", flat=True)
    )


@pytest.mark.django_db
def test_names_and_formats_are_validated(tmp_path: Path) -> None:
    metadata = write_set(tmp_path, [row(0)])
    import_now(name="taken", format="phantom", metadata=metadata, images_dir=tmp_path)
    with pytest.raises(ValidationError) as excinfo:
        import_now(name="taken", format="phantom", metadata=metadata, images_dir=tmp_path)
    assert "name" in excinfo.value.message_dict
    with pytest.raises(ValidationError) as excinfo:
        import_now(name="x", format="generated", metadata=metadata, images_dir=tmp_path)
    assert "not available yet" in excinfo.value.message_dict["format"][0]
