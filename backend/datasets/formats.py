"""Format readers: each turns a dataset's files, as distributed, into ``ImportRow``s.

A reader takes the metadata CSV and the images folder and returns the rows it understood and
the ``RowError``s (file, row, field, reason) of those it did not. ``READERS`` maps each
``Dataset.Format`` value to its reader.
"""

from __future__ import annotations

from pathlib import Path

from backend.datasets.models import Dataset, Image
from backend.datasets.rows import ImportRow, Reader, RowError, read_csv_rows, resolve_inside
from validation.vocabulary import DIAGNOSES, FST


def read_phantom(metadata: Path, images_dir: Path) -> tuple[list[ImportRow], list[RowError]]:
    """Read the phantom generator's metadata.csv (see generation.phantom)."""
    rows, errors = read_csv_rows(metadata, ["image_id", "file", "fst", "diagnosis"])
    known = {"image_id", "file", "fst", "diagnosis", "malignant", "ita", "lesion_id", "patient_id"}
    result: list[ImportRow] = []
    for number, raw in enumerate(rows, start=1):
        try:
            fst = int(FST.parse(raw["fst"]))
        except ValueError as exc:
            errors.append(RowError(metadata.name, number, "fst", str(exc)))
            continue
        code = (raw.get("diagnosis") or "").strip()
        if code not in DIAGNOSES:
            errors.append(
                RowError(metadata.name, number, "diagnosis", f"unknown diagnosis {code!r}")
            )
            continue
        try:
            source = resolve_inside(images_dir, (raw.get("file") or "").strip())
        except ValueError as exc:
            errors.append(RowError(metadata.name, number, "file", str(exc)))
            continue
        try:
            ita = float(raw["ita"]) if raw.get("ita") else None
        except ValueError:
            errors.append(RowError(metadata.name, number, "ita", f"not a number: {raw['ita']!r}"))
            continue
        result.append(
            ImportRow(
                row=number,
                image_id=raw["image_id"].strip(),
                source=source,
                diagnosis=code,
                diagnosis_original=code,
                malignant=DIAGNOSES[code].malignant,
                fst=fst,
                fst_source=Image.FstSource.LABEL,
                ita=ita,
                lesion_id=(raw.get("lesion_id") or "").strip(),
                patient_id=(raw.get("patient_id") or "").strip(),
                ground_truth={k: v for k, v in raw.items() if k not in known and k is not None},
            )
        )
    return result, errors


READERS: dict[str, Reader] = {Dataset.Format.PHANTOM: read_phantom}
