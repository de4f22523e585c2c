"""The shared pieces of every dataset format reader: rows, errors, CSV reading, safe paths."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.datasets.models import Image, Origin


class ImportFailed(Exception):
    """The import cannot go on; ``errors`` lists why (file, row, field, reason)."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__(
            "; ".join(str(e) for e in errors[:5]) + (" ..." if len(errors) > 5 else "")
        )


@dataclass(frozen=True)
class RowError:
    file: str
    row: int | None  # 1-based data row (the header is row 0); None for whole-file problems
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "row": self.row, "field": self.field, "reason": self.reason}


@dataclass
class ImportRow:
    """One image as a format reader understood it, before the image itself is checked."""

    row: int
    image_id: str
    source: Path
    diagnosis: str
    diagnosis_original: str = ""
    malignant: bool | None = None
    fst: int | None = None
    fst_min: int | None = None  # a grouped label's range (DDI "56" -> 5, 6); defaults to fst
    fst_max: int | None = None
    fst_source: str = Image.FstSource.UNKNOWN
    ita: float | None = None
    lesion_id: str = ""
    patient_id: str = ""
    origin: str = Origin.REAL
    ground_truth: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


Reader = Callable[[Path, Path], tuple[list[ImportRow], list[RowError]]]


def read_csv_rows(
    metadata: Path, required: Iterable[str]
) -> tuple[list[dict[str, str]], list[RowError]]:
    """Read a UTF-8 CSV (a BOM is accepted) and check that the ``required`` columns exist.

    Raises ``ImportFailed`` for problems with the file as a whole.
    """
    name = metadata.name
    try:
        text = metadata.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ImportFailed([RowError(name, None, None, f"file not found: {metadata}")]) from None
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            [
                RowError(
                    name, None, None, f"not UTF-8 text (byte {exc.start}); save the CSV as UTF-8"
                )
            ]
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if not header:
        raise ImportFailed([RowError(name, None, None, "the file is empty: no header row")])
    missing = [column for column in required if column not in header]
    if missing:
        raise ImportFailed(
            [RowError(name, 0, column, "required column is missing") for column in missing]
        )
    rows = list(reader)
    if not rows:
        raise ImportFailed([RowError(name, None, None, "the file has a header but no rows")])
    return rows, []


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve ``relative`` under ``root``; raise ``ValueError`` if it escapes or is a link."""
    if not relative or "\x00" in relative:
        raise ValueError("empty path or NUL byte")
    candidate = Path(relative)
    if candidate.is_absolute():
        raise ValueError(f"absolute path {relative!r} is not allowed")
    root = root.resolve()
    joined = root / candidate
    if joined.is_symlink():
        raise ValueError(f"{relative!r} is a symbolic link")
    resolved = joined.resolve()
    if os.path.commonpath([root, resolved]) != str(root):
        raise ValueError(f"{relative!r} points outside the images folder")
    return resolved
