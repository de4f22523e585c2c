"""Importers for the public dermatology datasets, fed files in their published layouts.

Every fixture is written with the distribution's own file name and column header, a few rows
and tiny solid skin-coloured images (the import estimates ITA from the pixels, so the colours
are chosen to land in the middle of a Fitzpatrick type's ITA band).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from io import StringIO
from pathlib import Path
from typing import Any

import PIL.Image
import pytest
from django.core.management import call_command

from backend.datasets import mappings
from backend.datasets.formats import READERS, ddi_code
from backend.datasets.importing import ImportSummary
from backend.datasets.models import Dataset, Image
from backend.datasets.services import import_now
from validation.vocabulary import DIAGNOSES

#: Solid colours whose estimated FST is the key, mid-band in ITA (as PNG and as JPEG).
SKIN = {
    1: (240, 205, 185),
    2: (210, 165, 140),
    4: (182, 128, 98),
    5: (140, 90, 60),
    6: (90, 55, 40),
}


def write_image(path: Path, fst: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    PIL.Image.new("RGB", (32, 32), SKIN[fst]).save(path, format=fmt, quality=95)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def run(tmp_path: Path, fmt: str, metadata: Path, images: Path, name: str = "") -> ImportSummary:
    return import_now(name=name or fmt, format=fmt, metadata=metadata, images_dir=images)


def images_of(name: str) -> dict[str, Image]:
    return {image.image_id: image for image in Dataset.objects.get(name=name).images.all()}


def rejected(summary: ImportSummary) -> dict[tuple[int | None, str | None], str]:
    return {(e["row"], e["field"]): e["reason"] for e in summary.rejected}


# --- HAM10000 --------------------------------------------------------------------------------

HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"]


def ham_row(i: int, dx: str, **overrides: str) -> list[str]:
    row = {
        "lesion_id": f"HAM_{i // 2:07d}",
        "image_id": f"ISIC_{i:07d}",
        "dx": dx,
        "dx_type": "histo",
        "age": "80.0",
        "sex": "male",
        "localization": "scalp",
        "dataset": "vidir_modern",
    }
    row.update(overrides)
    return [row[column] for column in HAM_HEADER]


@pytest.mark.django_db
def test_ham10000_maps_dx_codes_and_finds_images_in_the_part_folders(tmp_path: Path) -> None:
    codes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    rows = [ham_row(i, dx) for i, dx in enumerate(codes)]
    metadata = write_csv(tmp_path / "HAM10000_metadata.csv", HAM_HEADER, rows)
    images = tmp_path / "images"
    for i in range(len(codes)):
        part = "HAM10000_images_part_1" if i < 4 else "HAM10000_images_part_2"
        write_image(images / part / f"ISIC_{i:07d}.jpg", fst=5 if i == 4 else 2)
    summary = run(tmp_path, "ham10000", metadata, images)
    assert (summary.status, summary.imported, summary.rejected) == ("ready", 7, [])
    got = images_of("ham10000")
    assert {i.diagnosis_original: (i.diagnosis, i.malignant) for i in got.values()} == {
        "akiec": ("actinic_keratosis", True),
        "bcc": ("bcc", True),
        "bkl": ("seborrheic_keratosis", False),
        "df": ("dermatofibroma", False),
        "mel": ("melanoma", True),
        "nv": ("nevus", False),
        "vasc": ("vascular", False),
    }
    mel = got["ISIC_0000004"]
    assert (mel.fst, mel.fst_min, mel.fst_max) == (5, 5, 5)
    assert mel.fst_source == Image.FstSource.ITA_ESTIMATE and mel.ita < -5
    assert (mel.lesion_id, mel.patient_id) == ("HAM_0000002", "")
    assert mel.ground_truth == {
        "dx_type": "histo",
        "age": "80.0",
        "sex": "male",
        "localization": "scalp",
        "dataset": "vidir_modern",
    }
    assert mel.provenance["file"] == "HAM10000_images_part_2/ISIC_0000004.jpg"
    assert got["ISIC_0000000"].fst == 2
    assert summary.counts["fst"] == {"2": 6, "5": 1}


@pytest.mark.django_db
def test_ham10000_rejects_bad_rows_and_keeps_the_good_ones(tmp_path: Path) -> None:
    rows = [
        ham_row(0, "nv"),
        ham_row(1, "wart"),
        ham_row(2, "mel", image_id=""),
        ham_row(3, "nv"),  # no image on disk
        ham_row(4, "bkl"),  # in two part folders
        ham_row(5, "bcc"),  # a symbolic link: not followed
        ham_row(6, "MEL"),  # codes are read case-insensitively
    ]
    metadata = write_csv(tmp_path / "HAM10000_metadata.csv", HAM_HEADER, rows)
    images = tmp_path / "images"
    write_image(images / "ISIC_0000000.jpg")
    write_image(images / "ISIC_0000006.jpg")
    write_image(images / "HAM10000_images_part_1/ISIC_0000004.jpg")
    write_image(images / "HAM10000_images_part_2/ISIC_0000004.jpg")
    write_image(tmp_path / "elsewhere/ISIC_0000005.jpg")
    (images / "ISIC_0000005.jpg").symlink_to(tmp_path / "elsewhere/ISIC_0000005.jpg")
    summary = run(tmp_path, "ham10000", metadata, images)
    assert (summary.status, summary.imported) == ("ready", 2)
    reasons = rejected(summary)
    assert set(reasons) == {
        (2, "dx"),
        (3, "image_id"),
        (4, "image_id"),
        (5, "image_id"),
        (6, "image_id"),
    }
    assert reasons[(2, "dx")].startswith("unknown diagnosis code 'wart' (expected one of akiec")
    assert reasons[(3, "image_id")].startswith("missing image id")
    assert reasons[(4, "image_id")].startswith("image file not found: ISIC_0000003.jpg")
    assert reasons[(5, "image_id")] == (
        "image file ISIC_0000004.jpg is in several folders: "
        "HAM10000_images_part_1/ISIC_0000004.jpg, HAM10000_images_part_2/ISIC_0000004.jpg"
    )
    assert reasons[(6, "image_id")].startswith("image file not found: ISIC_0000005.jpg")
    assert all(e["file"] == "HAM10000_metadata.csv" for e in summary.rejected)
    assert images_of("ham10000")["ISIC_0000006"].diagnosis == "melanoma"


@pytest.mark.django_db
def test_columns_outside_the_published_layout_are_kept_with_a_warning(tmp_path: Path) -> None:
    header = [*HAM_HEADER, "clinic"]
    rows = [[*ham_row(i, "nv"), "north"] for i in range(2)]
    metadata = write_csv(tmp_path / "HAM10000_metadata.csv", header, rows)
    for i in range(2):
        write_image(tmp_path / "images" / f"ISIC_{i:07d}.jpg", fst=(2, 5)[i])
    summary = run(tmp_path, "ham10000", metadata, tmp_path / "images")
    assert (summary.status, summary.imported, summary.rejected) == ("ready", 2, [])
    assert [(w["file"], w["row"], w["field"]) for w in summary.warnings] == [
        ("HAM10000_metadata.csv", 0, "clinic")
    ]
    assert "not in this format's published layout" in summary.warnings[0]["reason"]
    assert all(image.ground_truth["clinic"] == "north" for image in images_of("ham10000").values())


@pytest.mark.django_db
def test_ham10000_without_its_required_columns_fails(tmp_path: Path) -> None:
    header = ["lesion_id", "image_id", "dx_type", "age"]
    metadata = write_csv(tmp_path / "HAM10000_metadata.csv", header, [["L", "I", "histo", "3"]])
    summary = run(tmp_path, "ham10000", metadata, tmp_path)
    assert summary.status == "failed" and summary.imported == 0
    assert summary.rejected == [
        {
            "file": "HAM10000_metadata.csv",
            "row": 0,
            "field": "dx",
            "reason": "required column is missing",
        }
    ]


# --- ISIC 2019 -------------------------------------------------------------------------------

ISIC_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
ISIC_META_HEADER = ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"]


def one_hot(image: str, *ones: str, values: dict[str, str] | None = None) -> list[str]:
    cells = {c: "1.0" if c in ones else "0.0" for c in ISIC_CLASSES}
    cells.update(values or {})
    return [image, *(cells[c] for c in ISIC_CLASSES)]


def isic_files(tmp_path: Path, rows: list[list[str]], with_metadata: bool = True) -> Path:
    truth = write_csv(
        tmp_path / "ISIC_2019_Training_GroundTruth.csv", ["image", *ISIC_CLASSES], rows
    )
    if with_metadata:
        meta = [
            [row[0], f"{40 + i * 5}.0", "anterior torso", f"BCN_{i:07d}", "female"]
            for i, row in enumerate(rows)
        ]
        write_csv(tmp_path / "ISIC_2019_Training_Metadata.csv", ISIC_META_HEADER, meta)
    for row in rows:
        write_image(tmp_path / "ISIC_2019_Training_Input" / f"{row[0]}.jpg", fst=1)
    return truth


@pytest.mark.django_db
def test_isic2019_reads_the_one_hot_classes_and_the_metadata_beside_them(tmp_path: Path) -> None:
    rows = [one_hot(f"ISIC_{i:07d}", c) for i, c in enumerate(ISIC_CLASSES)]
    rows.append(one_hot("ISIC_0000099_downsampled", "NV", values={"NV": "1"}))
    truth = isic_files(tmp_path, rows)
    summary = run(tmp_path, "isic2019", truth, tmp_path / "ISIC_2019_Training_Input")
    assert (summary.status, summary.imported, summary.rejected) == ("ready", 10, [])
    got = images_of("isic2019")
    assert {i.diagnosis_original: (i.diagnosis, i.malignant) for i in got.values()} == {
        "MEL": ("melanoma", True),
        "NV": ("nevus", False),
        "BCC": ("bcc", True),
        "AK": ("actinic_keratosis", True),
        "BKL": ("seborrheic_keratosis", False),
        "DF": ("dermatofibroma", False),
        "VASC": ("vascular", False),
        "SCC": ("scc", True),
        "UNK": ("other", None),
    }
    bkl = got["ISIC_0000004"]
    assert (bkl.lesion_id, bkl.patient_id) == ("BCN_0000004", "")
    assert bkl.ground_truth == {
        "age_approx": "60.0",
        "anatom_site_general": "anterior torso",
        "sex": "female",
    }
    assert (bkl.fst, bkl.fst_source) == (1, Image.FstSource.ITA_ESTIMATE)
    assert got["ISIC_0000099_downsampled"].lesion_id == "BCN_0000009"


@pytest.mark.django_db
def test_isic2019_rejects_malformed_one_hot_rows(tmp_path: Path) -> None:
    rows = [
        one_hot("ISIC_0000000", "MEL"),
        one_hot("ISIC_0000001", "MEL", "NV"),
        one_hot("ISIC_0000002"),
        one_hot("ISIC_0000003", "BCC", values={"DF": "0.5"}),
        one_hot("ISIC_0000004", values={"SCC": "yes"}),
        one_hot("", "NV"),
        one_hot("ISIC_0000006", "SCC"),
    ]
    truth = isic_files(tmp_path, rows)
    summary = run(tmp_path, "isic2019", truth, tmp_path / "ISIC_2019_Training_Input")
    assert (summary.status, summary.imported) == ("ready", 2)
    reasons = rejected(summary)
    assert reasons == {
        (2, "MEL/NV"): "malformed one-hot row: 2 classes are 1.0 (MEL, NV); exactly one must be",
        (3, "MEL/NV/BCC/AK/BKL/DF/VASC/SCC/UNK"): (
            "malformed one-hot row: no class is 1.0; exactly one must be"
        ),
        (4, "DF"): "one-hot value must be 1.0 or 0.0, got '0.5'",
        (5, "SCC"): "one-hot value must be 1.0 or 0.0, got 'yes'",
        (6, "image"): "missing image id (the image file is <image>.jpg)",
    }
    assert all(e["file"] == "ISIC_2019_Training_GroundTruth.csv" for e in summary.rejected)


@pytest.mark.django_db
def test_isic2019_without_the_metadata_csv_imports_with_a_note(tmp_path: Path) -> None:
    truth = isic_files(tmp_path, [one_hot("ISIC_0000000", "MEL")], with_metadata=False)
    summary = run(tmp_path, "isic2019", truth, tmp_path)
    assert (summary.status, summary.imported) == ("ready", 1)
    assert summary.rejected == [
        {
            "file": "ISIC_2019_Training_Metadata.csv",
            "row": None,
            "field": None,
            "reason": "metadata CSV not found beside the ground truth: lesion ids, age, sex "
            "and site are left empty",
        }
    ]
    image = images_of("isic2019")["ISIC_0000000"]
    assert (image.lesion_id, image.ground_truth) == ("", {})
    assert image.provenance["file"] == "ISIC_2019_Training_Input/ISIC_0000000.jpg"


# --- Fitzpatrick17k --------------------------------------------------------------------------

F17K_HEADER = [
    "md5hash",
    "fitzpatrick_scale",
    "fitzpatrick_centaur",
    "label",
    "nine_partition_label",
    "three_partition_label",
    "qc",
    "url",
    "url_alphanum",
]


def f17k_row(i: int, scale: str, label: str, three: str, nine: str = "inflammatory") -> list[str]:
    url = f"https://www.dermaamin.com/site/images/clinical-pic/x/{i}.jpg"
    return [f"{i:032x}", scale, scale if scale != "-1" else "3", label, nine, three, "", url, "x"]


@pytest.mark.django_db
def test_fitzpatrick17k_maps_labels_and_keeps_unlabelled_types_to_the_estimate(
    tmp_path: Path,
) -> None:
    rows = [
        f17k_row(0, "2", "melanoma", "malignant", "malignant melanoma"),
        f17k_row(1, "3", "basal cell carcinoma morpheiform", "malignant", "malignant epidermal"),
        f17k_row(2, "6", "kaposi sarcoma", "malignant", "malignant dermal"),
        f17k_row(3, "5", "psoriasis", "non-neoplastic"),
        f17k_row(4, "1", "nevocytic nevus", "benign", "benign melanocyte"),
        f17k_row(5, "4", "granuloma pyogenic", "benign", "benign dermal"),
        f17k_row(6, "-1", "seborrheic keratosis", "benign", "benign epidermal"),
        f17k_row(7, "3.0", "becker nevus", "benign", "benign melanocyte"),
    ]
    metadata = write_csv(tmp_path / "fitzpatrick17k.csv", F17K_HEADER, rows)
    for i in range(len(rows)):
        write_image(tmp_path / "images" / f"{i:032x}.jpg", fst=5 if i == 6 else 2)
    summary = run(tmp_path, "fitzpatrick17k", metadata, tmp_path / "images")
    assert (summary.status, summary.imported, summary.rejected) == ("ready", 8, [])
    got = list(Dataset.objects.get(name="fitzpatrick17k").images.order_by("image_id"))
    assert [(i.diagnosis, i.malignant, i.fst) for i in got] == [
        ("melanoma", True, 2),
        ("bcc", True, 3),
        ("other", True, 6),
        ("other", False, 5),
        ("nevus", False, 1),
        ("vascular", False, 4),
        ("seborrheic_keratosis", False, 5),
        ("other", False, 3),
    ]
    assert got[2].diagnosis_original == "kaposi sarcoma"
    assert {i.fst_source for i in got[:6]} == {Image.FstSource.LABEL}
    unlabelled = got[6]
    assert unlabelled.fst_source == Image.FstSource.ITA_ESTIMATE
    assert unlabelled.ground_truth == {
        "fitzpatrick_scale": "-1",
        "fitzpatrick_centaur": "3",
        "nine_partition_label": "benign epidermal",
        "three_partition_label": "benign",
        "qc": "",
        "fst_note": "fitzpatrick_scale -1 (unlabelled): FST left to the ITA estimate",
    }
    assert (unlabelled.lesion_id, unlabelled.patient_id) == ("", "")
    assert unlabelled.provenance["url"].endswith("/6.jpg")


@pytest.mark.django_db
def test_fitzpatrick17k_rejects_bad_rows(tmp_path: Path) -> None:
    rows = [
        f17k_row(0, "2", "melanoma", "malignant"),
        f17k_row(1, "7", "melanoma", "malignant"),
        f17k_row(2, "3.5", "melanoma", "malignant"),
        f17k_row(3, "2", "", "benign"),
        f17k_row(4, "2", "lichen planus", ""),
        f17k_row(5, "2", "lichen planus", "maybe"),
        ["", "2", "2", "melanoma", "", "malignant", "", "", ""],
        f17k_row(7, "III", "melanoma", "malignant"),
    ]
    metadata = write_csv(tmp_path / "fitzpatrick17k.csv", F17K_HEADER, rows)
    for i in range(len(rows)):
        write_image(tmp_path / f"{i:032x}.jpg")
    summary = run(tmp_path, "fitzpatrick17k", metadata, tmp_path)
    assert (summary.status, summary.imported) == ("ready", 1)
    reasons = rejected(summary)
    assert reasons == {
        (2, "fitzpatrick_scale"): "'7' is not a Fitzpatrick skin type (1-6)",
        (3, "fitzpatrick_scale"): "'3.5' is not a Fitzpatrick skin type (a whole number 1-6)",
        (4, "label"): "missing label",
        (5, "three_partition_label"): (
            "missing; it gives the malignancy of the unmapped label 'lichen planus'"
        ),
        (6, "three_partition_label"): "'maybe' is not one of malignant, benign, non-neoplastic",
        (7, "md5hash"): "missing image id (the image file is <md5hash>.jpg)",
        (8, "fitzpatrick_scale"): "'III' is not a Fitzpatrick skin type (a whole number 1-6)",
    }


# --- DDI -------------------------------------------------------------------------------------

DDI_HEADER = ["", "DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"]


@pytest.mark.django_db
def test_ddi_reads_grouped_skin_tones_as_ranges(tmp_path: Path) -> None:
    cases = [
        ("56", "True", "melanoma-in-situ"),
        ("12", "True", "basal-cell-carcinoma-nodular"),
        ("34", "False", "seborrheic-keratosis-irritated"),
        ("56", "False", "melanocytic-nevi"),
        ("12", "False", "verruca-vulgaris"),
        ("56", "True", "kaposi-sarcoma"),
        ("34", "False", "actinic-keratosis"),
    ]
    rows = [[i, i + 1, f"{i + 1:06d}.png", *case] for i, case in enumerate(cases)]
    metadata = write_csv(tmp_path / "ddi_metadata.csv", DDI_HEADER, rows)
    assert metadata.read_text().startswith(",DDI_ID,DDI_file,")
    for i in range(len(rows)):
        write_image(tmp_path / f"{i + 1:06d}.png", fst=6 if cases[i][0] == "56" else 2)
    summary = run(tmp_path, "ddi", metadata, tmp_path)
    assert (summary.status, summary.imported, summary.rejected) == ("ready", 7, [])
    got = images_of("ddi")
    assert {k: (i.diagnosis, i.malignant) for k, i in got.items()} == {
        "1": ("melanoma", True),
        "2": ("bcc", True),
        "3": ("seborrheic_keratosis", False),
        "4": ("nevus", False),
        "5": ("other", False),
        "6": ("other", True),
        "7": ("actinic_keratosis", False),  # DDI's own per-image flag wins over the code's
    }
    dark = got["1"]
    assert (dark.fst, dark.fst_min, dark.fst_max) == (None, 5, 6)
    assert dark.fst_source == Image.FstSource.LABEL
    assert dark.ita is not None and dark.diagnosis_original == "melanoma-in-situ"
    assert dark.ground_truth == {"skin_tone": "56"}
    assert dark.provenance["file"] == "000001.png"
    assert summary.counts["fst"] == {"1-2": 2, "3-4": 2, "5-6": 3}


@pytest.mark.django_db
def test_ddi_rejects_bad_rows(tmp_path: Path) -> None:
    rows = [
        [0, 1, "000001.png", "12", "False", "melanocytic-nevi"],
        [1, 2, "000002.png", "78", "False", "melanocytic-nevi"],
        [2, 3, "000003.png", "5", "False", "melanocytic-nevi"],
        [3, 4, "000004.png", "34", "maybe", "melanocytic-nevi"],
        [4, 5, "", "34", "False", "melanocytic-nevi"],
        [5, 6, "000006.png", "34", "False", ""],
        [6, 7, "../000001.png", "34", "False", "melanocytic-nevi"],
    ]
    metadata = write_csv(tmp_path / "ddi_metadata.csv", DDI_HEADER, rows)
    for i in range(1, 8):
        write_image(tmp_path / f"{i:06d}.png")
    summary = run(tmp_path, "ddi", metadata, tmp_path)
    assert (summary.status, summary.imported) == ("ready", 1)
    assert rejected(summary) == {
        (2, "skin_tone"): "'78' is not 12, 34 or 56 (FST I-II, III-IV or V-VI)",
        (3, "skin_tone"): "'5' is not 12, 34 or 56 (FST I-II, III-IV or V-VI)",
        (4, "malignant"): "'maybe' is not true/false, 1/0 or yes/no",
        (5, "DDI_file"): "missing image file name",
        (6, "disease"): "missing disease",
        (7, "DDI_file"): "'../000001.png' must be a file name, without folders",
    }


def test_ddi_disease_table_and_prefix_rules() -> None:
    assert ddi_code("melanoma-acral-lentiginous") == "melanoma"
    assert ddi_code("nodular-melanoma-(nm)") == "melanoma"
    assert ddi_code("melanoma-something-new") == "melanoma"
    assert ddi_code("squamous-cell-carcinoma-in-situ") == "scc"
    assert ddi_code("squamous-cell-carcinoma-keratoacanthoma") == "scc"
    assert ddi_code("Dermatofibroma") == "dermatofibroma"
    assert ddi_code("epidermal-nevus") == "other"
    assert ddi_code("melanocytic-nevi") == "nevus"


# --- PAD-UFES-20 -----------------------------------------------------------------------------

PAD_HEADER = [
    "patient_id",
    "lesion_id",
    "smoke",
    "drink",
    "background_father",
    "background_mother",
    "age",
    "pesticide",
    "gender",
    "skin_cancer_history",
    "cancer_history",
    "has_piped_water",
    "has_sewage_system",
    "fitspatrick",
    "region",
    "diameter_1",
    "diameter_2",
    "diagnostic",
    "itch",
    "grew",
    "hurt",
    "changed",
    "bleed",
    "elevation",
    "img_id",
    "biopsed",
]


def pad_row(patient: int, lesion: int, image: int, diagnostic: str, fitspatrick: str) -> list[str]:
    row = {column: "" for column in PAD_HEADER}
    row.update(
        patient_id=f"PAT_{patient}",
        lesion_id=str(lesion),
        smoke="False",
        drink="False",
        background_father="POMERANIA",
        background_mother="POMERANIA",
        age="55",
        gender="FEMALE",
        fitspatrick=fitspatrick,
        region="NECK",
        diameter_1="6.0",
        diameter_2="5.0",
        diagnostic=diagnostic,
        itch="True",
        img_id=f"PAT_{patient}_{lesion}_{image}.png",
        biopsed="True",
    )
    return [row[column] for column in PAD_HEADER]


@pytest.mark.django_db
def test_pad_ufes_20_reads_codes_patients_and_float_written_types(tmp_path: Path) -> None:
    rows = [
        pad_row(46, 881, 939, "BCC", "3.0"),
        pad_row(46, 882, 940, "ACK", "2"),
        pad_row(1516, 1765, 530, "NEV", ""),
        pad_row(1516, 1765, 531, "MEL", "nan"),
        pad_row(7, 10, 11, "SCC", "6.0"),
        pad_row(7, 12, 13, "SEK", "1.0"),
    ]
    metadata = write_csv(tmp_path / "metadata.csv", PAD_HEADER, rows)
    for i, row in enumerate(rows):
        part = f"imgs_part_{i % 3 + 1}"
        write_image(tmp_path / "images" / part / row[-2], fst=4 if i in (2, 3) else 2)
    summary = run(tmp_path, "pad-ufes-20", metadata, tmp_path / "images")
    assert (summary.status, summary.imported, summary.rejected) == ("ready", 6, [])
    got = images_of("pad-ufes-20")
    assert {k: (i.diagnosis, i.malignant, i.fst, i.fst_source) for k, i in got.items()} == {
        "PAT_46_881_939.png": ("bcc", True, 3, "label"),
        "PAT_46_882_940.png": (
            "actinic_keratosis",
            False,
            2,
            "label",
        ),  # PAD counts ACK as non-cancer
        "PAT_1516_1765_530.png": ("nevus", False, 4, "ita-estimate"),
        "PAT_1516_1765_531.png": ("melanoma", True, 4, "ita-estimate"),
        "PAT_7_10_11.png": ("scc", True, 6, "label"),
        "PAT_7_12_13.png": ("seborrheic_keratosis", False, 1, "label"),
    }
    nev = got["PAT_1516_1765_530.png"]
    assert (nev.patient_id, nev.lesion_id, nev.diagnosis_original) == ("PAT_1516", "1765", "NEV")
    assert nev.ground_truth["region"] == "NECK" and nev.ground_truth["biopsed"] == "True"
    assert nev.ground_truth["diameter_1"] == "6.0" and nev.ground_truth["smoke"] == "False"
    assert "fitspatrick" not in nev.ground_truth and "img_id" not in nev.ground_truth
    assert len(nev.ground_truth) == len(PAD_HEADER) - 5
    assert nev.provenance["file"] == "imgs_part_3/PAT_1516_1765_530.png"


@pytest.mark.django_db
def test_pad_ufes_20_rejects_bad_rows(tmp_path: Path) -> None:
    rows = [
        pad_row(1, 1, 1, "NEV", "2"),
        pad_row(1, 2, 2, "XYZ", "2"),
        pad_row(1, 3, 3, "NEV", "7"),
        pad_row(1, 4, 4, "NEV", "3.5"),
        pad_row(1, 5, 5, "NEV", "2"),
    ]
    rows[4][PAD_HEADER.index("img_id")] = ""
    metadata = write_csv(tmp_path / "metadata.csv", PAD_HEADER, rows)
    for row in rows[:4]:
        write_image(tmp_path / row[-2])
    summary = run(tmp_path, "pad-ufes-20", metadata, tmp_path)
    assert (summary.status, summary.imported) == ("ready", 1)
    assert rejected(summary) == {
        (2, "diagnostic"): (
            "unknown diagnosis code 'XYZ' (expected one of ACK, BCC, MEL, NEV, SCC, SEK)"
        ),
        (3, "fitspatrick"): "'7' is not a Fitzpatrick skin type (1-6)",
        (4, "fitspatrick"): "'3.5' is not a Fitzpatrick skin type (a whole number 1-6)",
        (5, "img_id"): "missing image file name",
    }


@pytest.mark.django_db
def test_an_import_where_every_row_is_bad_fails(tmp_path: Path) -> None:
    metadata = write_csv(tmp_path / "metadata.csv", PAD_HEADER, [pad_row(1, 1, 1, "XYZ", "2")])
    summary = run(tmp_path, "pad-ufes-20", metadata, tmp_path)
    assert summary.status == "failed" and summary.imported == 0
    assert [(e["row"], e["field"]) for e in summary.rejected] == [(1, "diagnostic")]


# --- Generic CSV -----------------------------------------------------------------------------

GENERIC_HEADER = [
    "image_id",
    "file",
    "diagnosis",
    "fst",
    "malignant",
    "lesion_id",
    "patient_id",
    "ita",
    "scanner",
]


@pytest.mark.django_db
def test_generic_csv_reads_codes_synonyms_types_and_ranges(tmp_path: Path) -> None:
    rows = [
        ["a", "imgs/a.png", "melanoma", "V", "", "L1", "P1", "", "dermlite"],
        ["b", "imgs/b.jpg", "mel", "FST3", "", "L1", "P1", "", "dermlite"],
        ["c", "imgs/c.png", "Basal cell carcinoma", "5-6", "", "L2", "P1", "", ""],
        ["d", "imgs/d.png", "NV", "56", "", "", "", "", ""],
        ["e", "imgs/e.png", "SEK", "", "", "", "", "", ""],
        ["f", "imgs/f.png", "other", "IV", "yes", "", "", "12.5", ""],
        ["g", "g.png", "actinic-keratosis", "2.0", "0", "", "", "", ""],
        ["h", "h.png", "Other", "V-VI", "", "", "", "", ""],
    ]
    metadata = write_csv(tmp_path / "labels.csv", GENERIC_HEADER, rows)
    for row in rows:
        write_image(tmp_path / row[1], fst=6 if row[0] == "e" else 2)
    summary = run(tmp_path, "generic", metadata, tmp_path)
    assert (summary.status, summary.imported, summary.rejected) == ("ready", 8, [])
    got = images_of("generic")
    table = {
        k: (i.diagnosis, i.malignant, i.fst, i.fst_min, i.fst_max, i.fst_source)
        for k, i in got.items()
    }
    assert table == {
        "a": ("melanoma", True, 5, 5, 5, "label"),
        "b": ("melanoma", True, 3, 3, 3, "label"),
        "c": ("bcc", True, None, 5, 6, "label"),
        "d": ("nevus", False, None, 5, 6, "label"),
        "e": ("seborrheic_keratosis", False, 6, 6, 6, "ita-estimate"),
        "f": ("other", True, 4, 4, 4, "label"),
        "g": ("actinic_keratosis", False, 2, 2, 2, "label"),
        "h": ("other", None, None, 5, 6, "label"),
    }
    a = got["a"]
    assert (a.lesion_id, a.patient_id, a.diagnosis_original) == ("L1", "P1", "melanoma")
    assert a.ground_truth == {"scanner": "dermlite"}
    assert got["b"].diagnosis_original == "mel"
    assert got["f"].ita == 12.5 and got["a"].ita is not None


@pytest.mark.django_db
def test_generic_csv_rejects_bad_rows(tmp_path: Path) -> None:
    rows = [
        ["ok", "ok.png", "nevus", "2", "", "", "", "", ""],
        ["r2", "ok.png", "wart", "2", "", "", "", "", ""],
        ["r3", "ok.png", "nevus", "7", "", "", "", "", ""],
        ["r4", "ok.png", "nevus", "3.5", "", "", "", "", ""],
        ["r5", "ok.png", "nevus", "6-5", "", "", "", "", ""],
        ["r6", "ok.png", "nevus", "2", "maybe", "", "", "", ""],
        ["r7", "ok.png", "nevus", "2", "", "", "", "abc", ""],
        ["r8", "../ok.png", "nevus", "2", "", "", "", "", ""],
        ["r9", "", "nevus", "2", "", "", "", "", ""],
        ["", "ok.png", "nevus", "2", "", "", "", "", ""],
        ["r11", "missing.png", "nevus", "2", "", "", "", "", ""],
    ]
    folder = tmp_path / "set"
    metadata = write_csv(folder / "labels.csv", GENERIC_HEADER, rows)
    write_image(folder / "ok.png")
    write_image(tmp_path / "ok.png")
    summary = run(tmp_path, "generic", metadata, folder)
    assert (summary.status, summary.imported) == ("ready", 1)
    reasons = rejected(summary)
    assert reasons[(2, "diagnosis")].startswith("unknown diagnosis 'wart' (use a shared code:")
    assert reasons[(3, "fst")].startswith("'7' is not a Fitzpatrick skin type")
    assert reasons[(4, "fst")].startswith("'3.5' is not a Fitzpatrick skin type")
    assert reasons[(5, "fst")] == "'6-5' is not a rising range (low-high, e.g. 5-6)"
    assert reasons[(6, "malignant")] == "'maybe' is not true/false, 1/0 or yes/no"
    assert reasons[(7, "ita")] == "not a finite number: 'abc'"
    assert "outside the images folder" in reasons[(8, "file")]
    assert reasons[(9, "file")] == "missing image file name"
    assert reasons[(10, "image_id")] == "missing image id"
    assert reasons[(11, "file")].startswith("image file not found")
    assert len(reasons) == 10


def test_mapping_tables_use_only_shared_codes() -> None:
    tables = [
        mappings.HAM10000_DX,
        mappings.ISIC2019_CLASSES,
        mappings.PAD_UFES_20_DIAGNOSTIC,
        mappings.FITZPATRICK17K_LABELS,
        mappings.DDI_DISEASES,
        dict((p, c) for p, c in mappings.DDI_DISEASE_PREFIXES),
        mappings.GENERIC_DIAGNOSES,
    ]
    for table in tables:
        assert set(table.values()) <= set(DIAGNOSES)
    # every label of every table is a generic synonym of the same code (no conflicts)
    for table in tables[:5]:
        for label, code in table.items():
            assert mappings.GENERIC_DIAGNOSES[mappings.normalise_label(label)] == code
    assert mappings.GENERIC_DIAGNOSES["actinic keratosis"] == "actinic_keratosis"
    assert set(READERS) == set(Dataset.Format.values) - {Dataset.Format.GENERATED}


# --- Command line ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_dataset_command_imports_a_ddi_folder(tmp_path: Path) -> None:
    rows = [
        [0, 1, "000001.png", "56", "True", "melanoma-in-situ"],
        [1, 2, "000002.png", "12", "False", "melanocytic-nevi"],
        [2, 3, "000003.png", "99", "False", "melanocytic-nevi"],
    ]
    metadata = write_csv(tmp_path / "ddi_metadata.csv", DDI_HEADER, rows)
    for i in range(1, 4):
        write_image(tmp_path / f"{i:06d}.png", fst=1)
    out = StringIO()
    call_command(
        "import_dataset", "--format", "ddi", "--metadata", str(metadata), "--images", str(tmp_path),
        "--name", "ddi-cli", "--role", "external-test", "--json", stdout=out,
    )  # fmt: skip
    summary = json.loads(out.getvalue())
    assert (summary["status"], summary["imported"]) == ("ready", 2)
    assert summary["counts"]["fst"] == {"1-2": 1, "5-6": 1}
    assert summary["counts"]["diagnosis"] == {"melanoma": 1, "nevus": 1}
    assert summary["rejected"] == [
        {
            "file": "ddi_metadata.csv",
            "row": 3,
            "field": "skin_tone",
            "reason": "'99' is not 12, 34 or 56 (FST I-II, III-IV or V-VI)",
        }
    ]
    assert Dataset.objects.get(name="ddi-cli").role == Dataset.Role.EXTERNAL_TEST
