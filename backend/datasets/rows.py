"""The shared pieces of every dataset format reader: rows, errors, CSV reading, safe paths."""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

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
    #: "warning": reported, but the row (or file) is still imported.
    level: str = "error"

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


#: Byte-order marks accepted on a CSV, longest first (UTF-32-LE starts like UTF-16-LE).
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
#: Column delimiters recognised from the header line; the first wins a tie.
DELIMITERS = (",", ";", "\t", "|")
#: A file rejected for malformed rows lists this many of them, then a count of the rest.
MAX_LISTED_ROW_ERRORS = 50
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def _fail(name: str, reason: str, row: int | None = None, column: str | None = None) -> NoReturn:
    raise ImportFailed([RowError(name, row, column, reason)])


def _decode(name: str, data: bytes) -> str:
    """The text of a CSV: UTF-8 with or without a BOM, or UTF-16/UTF-32 when a BOM says so.

    Anything else (Latin-1, Windows-1252, UTF-16 without a BOM, a workbook saved under a
    .csv name) raises ``ImportFailed`` naming the file and asking for a UTF-8 CSV.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                _fail(name, f"not valid {codec.upper()} text ({exc.reason}); save the CSV as UTF-8")
    if data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        _fail(name, "a spreadsheet or archive, not a CSV file: export it as CSV (UTF-8)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        _fail(
            name,
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} cannot be decoded "
            "(Latin-1 or Windows-1252?); save the CSV as UTF-8 (in Excel: 'CSV UTF-8')",
        )


def _detect_delimiter(header_line: str, required: list[str]) -> str:
    """The delimiter that splits the header into the most required columns, then most columns."""
    best, best_score = ",", (-1, -1)
    for delimiter in DELIMITERS:
        try:
            names = next(csv.reader([header_line], delimiter=delimiter), [])
        except csv.Error:
            continue
        names = [n.strip() for n in names]
        score = (sum(1 for column in required if column in names), len(names))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _header(name: str, fields: list[str], required: list[str]) -> list[str]:
    """Column names, stripped; trailing unnamed columns dropped; duplicates and gaps refused."""
    header = [column.strip() for column in fields]
    while header and not header[-1]:
        header.pop()
    if not header:
        _fail(name, "the file is empty: no header row")
    positions: dict[str, list[int]] = {}
    for index, column in enumerate(header, start=1):
        positions.setdefault(column, []).append(index)
    duplicates = [
        RowError(
            name,
            0,
            column or None,
            f"duplicate column name (columns {', '.join(map(str, where))})"
            if column
            else f"several columns have no name (columns {', '.join(map(str, where))})",
        )
        for column, where in positions.items()
        if len(where) > 1
    ]
    if duplicates:
        raise ImportFailed(duplicates)
    missing = []
    for column in required:
        if column in positions:
            continue
        near = [c for c in header if c.casefold() == column.casefold()]
        reason = "required column is missing"
        if near:
            reason += f" (found {near[0]!r}: column names are case-sensitive)"
        missing.append(RowError(name, 0, column, reason))
    if missing:
        raise ImportFailed(missing)
    return header


def read_csv_rows(
    metadata: Path, required: Iterable[str]
) -> tuple[list[dict[str, str]], list[RowError]]:
    """Read a metadata CSV into one dict per data row and check the ``required`` columns.

    - Encoding: UTF-8 with or without a BOM; UTF-16 or UTF-32 only with a BOM (Excel's
      "Unicode text"). Other bytes fail with a message asking for a UTF-8 CSV.
    - Delimiter: comma, semicolon, tab or pipe, chosen from the header line (the one that
      yields the most required columns, then the most columns).
    - Header: names are stripped; unnamed trailing columns are dropped; a duplicate name,
      a missing required column or a header-only or empty file fails the import.
    - Rows: blank lines are skipped, as are rows of empty fields at the end of the file.
      Empty extra fields after the last column are ignored. A row with any other field
      count, a NUL byte or broken quoting fails the whole file with one ``RowError`` per
      bad row (row numbers count data rows from 1, as the readers number them): such rows
      mean the file was not split the way it was written, so no row of it can be trusted.

    Raises ``ImportFailed`` for problems with the file as a whole; the returned error list
    is for the readers to extend.
    """
    name = metadata.name
    required = list(required)
    try:
        data = metadata.read_bytes()
    except FileNotFoundError:
        _fail(name, f"file not found: {metadata}")
    except IsADirectoryError:
        _fail(name, f"a folder, not a CSV file: {metadata}")
    except OSError as exc:
        _fail(name, f"cannot read the file: {exc.strerror or exc}")
    text = _decode(name, data)
    del data
    text = text.lstrip("\r\n")
    if not text.strip():
        _fail(name, "the file is empty: no header row")
    header_line = text.split("\n", 1)[0]
    if "\x00" in header_line:
        _fail(
            name,
            "the header contains NUL bytes: the file is UTF-16 without a byte-order mark or not "
            "text at all; save the CSV as UTF-8",
            row=0,
        )
    delimiter = _detect_delimiter(header_line, required)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = _header(name, next(reader), required)
    width = len(header)
    check_nul = "\x00" in text
    rows: list[dict[str, str]] = []
    trailing_empty: list[dict[str, str]] = []
    problems: list[RowError] = []
    bad_rows = 0
    number = 0

    def problem(reason: str) -> None:
        nonlocal bad_rows
        bad_rows += 1
        if len(problems) < MAX_LISTED_ROW_ERRORS:
            problems.append(RowError(name, number, None, reason))

    try:
        for fields in reader:
            if not fields:
                continue  # a blank line
            number += 1
            if len(fields) != width:
                if len(fields) > width and not any(f.strip() for f in fields[width:]):
                    fields = fields[:width]
                else:
                    problem(
                        f"{len(fields)} fields but the header has {width} (line "
                        f"{reader.line_num}, {_DELIMITER_NAMES[delimiter]}-separated): check "
                        "the quoting of values that contain the delimiter"
                    )
                    continue
            if check_nul and any("\x00" in f for f in fields):
                problem(f"contains a NUL byte (line {reader.line_num})")
                continue
            row = dict(zip(header, fields, strict=True))
            if not any(f.strip() for f in fields):
                trailing_empty.append(row)  # kept only if a non-empty row follows
                continue
            if trailing_empty:
                rows.extend(trailing_empty)
                trailing_empty.clear()
            rows.append(row)
    except csv.Error as exc:
        number += 1
        problem(f"cannot be parsed (line {reader.line_num}): {exc}; check the quotes")
    if problems:
        if bad_rows > len(problems):
            problems.append(
                RowError(name, None, None, f"and {bad_rows - len(problems)} more malformed rows")
            )
        raise ImportFailed(problems)
    if not rows:
        _fail(name, "the file has a header but no rows")
    return rows, []


_DRIVE = re.compile(r"^[A-Za-z]:")


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve ``relative`` under ``root``; raise ``ValueError`` if it escapes or is a link.

    Backslashes are read as folder separators (paths written on Windows). URLs, absolute
    paths (``/x``, ``C:\\x``), NUL bytes, paths that resolve outside ``root`` and paths that go
    through a symbolic link at any level below ``root`` are refused.
    """
    if not relative or "\x00" in relative:
        raise ValueError("empty path or NUL byte")
    if "://" in relative:
        raise ValueError(f"{relative!r} is a URL; give a path inside the images folder")
    posix = relative.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        raise ValueError(f"absolute path {relative!r} is not allowed")
    root = root.resolve()
    joined = root / posix
    resolved = joined.resolve()
    if os.path.commonpath([root, resolved]) != str(root):
        raise ValueError(f"{relative!r} points outside the images folder")
    current = root
    for part in PurePosixPath(posix).parts:
        current = current / part
        if part not in (".", "..") and current.is_symlink():
            if current == joined:
                raise ValueError(f"{relative!r} is a symbolic link")
            raise ValueError(f"{relative!r} goes through a symbolic link ({part!r})")
    return resolved
