"""Writing a phantom dataset to disk: PNG images, ``metadata.csv`` and ``phantom_config.json``.

Layout::

    out_dir/
        images/<image_id>.png      8-bit RGB PNG, no text chunks
        metadata.csv               one row per image (``METADATA_COLUMNS``), UTF-8
        phantom_config.json        ``PhantomConfig.to_dict()``

Every file is written atomically, and the same config gives byte-identical files.
``metadata.csv`` is the index of the dataset: files in ``images/`` that it does not list
(left over from an earlier, larger run into the same folder) are not part of it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.phantom.config import SUPPORTED_DIAGNOSES, PhantomConfig
from generation.phantom.render import PhantomRender, render_phantom
from generation.phantom.spec import PhantomSpec, plan_phantom
from validation.files import atomic_path, atomic_write_text
from validation.vocabulary import FST

METADATA_COLUMNS: tuple[str, ...] = (
    "image_id",
    "file",
    "lesion_id",
    "patient_id",
    "shot",
    "fst",
    "ita",
    "skin_L",
    "skin_a",
    "skin_b",
    "diagnosis",
    "malignant",
    "asymmetry_axes",
    "border_segments",
    "colours",
    "n_colours",
    "diameter_mm",
    "structures",
    "hair_count",
    "contrast",
    "lesion_fraction",
    "image_size",
    "field_of_view_mm",
)

_INT_COLUMNS = {
    "shot",
    "fst",
    "asymmetry_axes",
    "border_segments",
    "n_colours",
    "hair_count",
    "image_size",
}
_FLOAT_COLUMNS = {
    "ita",
    "skin_L",
    "skin_a",
    "skin_b",
    "diameter_mm",
    "contrast",
    "lesion_fraction",
    "field_of_view_mm",
}
_LIST_COLUMNS = {"colours", "structures"}

METADATA_FILE = "metadata.csv"
CONFIG_FILE = "phantom_config.json"
IMAGES_DIR = "images"


@dataclass(frozen=True)
class PhantomSummary:
    """What ``build_phantom_dataset`` wrote."""

    out_dir: Path
    count: int
    image_size: int
    seed: int
    counts_by_fst: dict[int, int]
    counts_by_diagnosis: dict[str, int]
    n_lesions: int
    n_patients: int

    @property
    def metadata_path(self) -> Path:
        return self.out_dir / METADATA_FILE

    @property
    def config_path(self) -> Path:
        return self.out_dir / CONFIG_FILE

    @property
    def images_dir(self) -> Path:
        return self.out_dir / IMAGES_DIR

    def line(self) -> str:
        """A one-line human summary (printed by the CLI)."""
        fsts = " ".join(f"{FST(f).roman}:{n}" for f, n in self.counts_by_fst.items())
        diagnoses = " ".join(f"{d}:{n}" for d, n in self.counts_by_diagnosis.items())
        return (
            f"phantom: {self.count} images ({self.image_size} px, seed {self.seed}) in "
            f"{self.out_dir} | FST {fsts} | {diagnoses} | "
            f"{self.n_lesions} lesions, {self.n_patients} patients"
        )


def metadata_row(spec: PhantomSpec, render: PhantomRender | None = None) -> dict[str, str]:
    """The ``metadata.csv`` row of one image, as strings.

    Args:
        spec: The image's spec.
        render: Its rendering, for ``lesion_fraction`` (left empty without it).

    Returns:
        One string per ``METADATA_COLUMNS`` entry.
    """
    lightness, a_star, b_star = spec.skin_lab
    return {
        "image_id": spec.image_id,
        "file": f"{IMAGES_DIR}/{spec.image_id}.png",
        "lesion_id": spec.lesion_id,
        "patient_id": spec.patient_id,
        "shot": str(spec.shot),
        "fst": str(spec.fst),
        "ita": f"{spec.ita:.3f}",
        "skin_L": f"{lightness:.3f}",
        "skin_a": f"{a_star:.3f}",
        "skin_b": f"{b_star:.3f}",
        "diagnosis": spec.diagnosis,
        "malignant": "true" if spec.malignant else "false",
        "asymmetry_axes": str(spec.asymmetry_axes),
        "border_segments": str(spec.border_segments),
        "colours": ";".join(spec.colours),
        "n_colours": str(spec.n_colours),
        "diameter_mm": f"{spec.diameter_mm:.3f}",
        "structures": ";".join(spec.structures),
        "hair_count": str(spec.hair_count),
        "contrast": f"{spec.contrast:.2f}",
        "lesion_fraction": "" if render is None else f"{render.lesion_fraction:.4f}",
        "image_size": str(spec.image_size),
        "field_of_view_mm": f"{spec.field_of_view_mm:g}",
    }


def _csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METADATA_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def build_phantom_dataset(
    config: PhantomConfig,
    out_dir: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None = None,
) -> PhantomSummary:
    """Render every image of ``config`` and write the dataset into ``out_dir``.

    Args:
        config: What to generate.
        out_dir: Destination folder (created if missing). Existing files of the same names
            are replaced atomically.
        progress: Optional callback, called as ``progress(done, total)`` after each image.

    Returns:
        A summary of what was written (counts per skin type and diagnosis, lesions,
        patients, paths).
    """
    out = Path(out_dir)
    images = out / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    specs = plan_phantom(config)
    rows: list[dict[str, str]] = []
    for done, spec in enumerate(specs, start=1):
        render = render_phantom(spec)
        with atomic_path(images / f"{spec.image_id}.png") as tmp:
            render.image.save(tmp, format="PNG", compress_level=6)
        rows.append(metadata_row(spec, render))
        if progress is not None:
            progress(done, len(specs))
    atomic_write_text(out / METADATA_FILE, _csv_text(rows))
    atomic_write_text(out / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")
    fst_counts = Counter(spec.fst for spec in specs)
    dx_counts = Counter(spec.diagnosis for spec in specs)
    return PhantomSummary(
        out_dir=out,
        count=len(specs),
        image_size=config.image_size,
        seed=config.seed,
        counts_by_fst={int(f): fst_counts.get(int(f), 0) for f in FST},
        counts_by_diagnosis={d: dx_counts.get(d, 0) for d in SUPPORTED_DIAGNOSES},
        n_lesions=len({spec.lesion_id for spec in specs}),
        n_patients=len({spec.patient_id for spec in specs}),
    )


def read_phantom_metadata(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a phantom ``metadata.csv`` with typed values.

    Args:
        path: The CSV file, or the dataset folder that holds it.

    Returns:
        One dict per image: ints and floats parsed, ``malignant`` as ``bool``, ``colours``
        and ``structures`` as tuples of names, ``lesion_fraction`` ``None`` when empty.
    """
    source = Path(path)
    if source.is_dir():
        source = source / METADATA_FILE
    records: list[dict[str, Any]] = []
    with open(source, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            record: dict[str, Any] = {}
            for key, value in row.items():
                if key in _INT_COLUMNS:
                    record[key] = int(value)
                elif key in _FLOAT_COLUMNS:
                    record[key] = float(value) if value != "" else None
                elif key in _LIST_COLUMNS:
                    record[key] = tuple(value.split(";")) if value else ()
                elif key == "malignant":
                    record[key] = value == "true"
                else:
                    record[key] = value
            records.append(record)
    return records
