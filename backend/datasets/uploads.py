"""Zip uploads of a dataset: checked before anything is extracted, staged, removed afterwards.

An upload is a zip of images with the metadata CSV inside, or a zip of images plus a separate
CSV. ``stage_upload`` (in the web request) reads only the zip's central directory and refuses,
before a single byte is extracted:

- names that escape the staging folder (``../``, absolute paths, drive letters, NUL bytes),
  symbolic links and other non-regular members, encrypted members, nested archives;
- more than ``UPLOAD_MAX_FILES`` files, more than ``UPLOAD_MAX_BYTES`` uncompressed, or a
  compression ratio over ``UPLOAD_MAX_RATIO`` for a member or the whole archive (zip bombs).
  The entry count is read from the end-of-central-directory record first, so a zip listing
  millions of entries is refused without building them all in memory.

``__MACOSX/``, ``.DS_Store``, ``._*`` (AppleDouble), ``Thumbs.db`` and ``desktop.ini`` members
are skipped. The accepted zip is copied to ``UPLOAD_DIR/<uuid>/upload.zip`` (and a separate CSV
to ``UPLOAD_DIR/<uuid>/metadata/``). The worker's import (``run_import``) then calls
``extract_staged``, which checks the archive again and extracts it into ``files/`` with the
sizes enforced while streaming (a member that inflates past its declared size is refused), and
removes the whole staging folder when the import ends, ready or failed. ``sweep_stale_uploads``
removes folders whose import never ran.

Member names are normalised to NFC (macOS zips carry decomposed accents; CSVs composed ones).
Where the CSV's image paths point: a CSV inside the zip is read relative to its own folder
(``set/metadata.csv`` + ``set/images/x.png``); a separate CSV relative to the top of the zip.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import struct
import time
import unicodedata
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError

from backend import storage

logger = logging.getLogger(__name__)

ARCHIVE_NAME = "upload.zip"
FILES_DIR = "files"
METADATA_DIR = "metadata"
MARKER_NAME = "dataset.json"
#: The uploaded zip's own name, so that extraction errors name the file the user sent.
NAME_FILE = "archive-name.txt"
#: Members skipped, never extracted: macOS resource forks and folder metadata, Windows thumbnails.
IGNORED_DIRS = {"__MACOSX"}
IGNORED_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}
#: Archives inside the archive are refused, not unpacked (a classic zip-bomb vector).
NESTED_ARCHIVE_SUFFIXES = {".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".zst", ".7z", ".rar"}
SUPPORTED_COMPRESSION = {
    zipfile.ZIP_STORED,
    zipfile.ZIP_DEFLATED,
    zipfile.ZIP_BZIP2,
    zipfile.ZIP_LZMA,
}
#: Compression ratios are only checked above this size (tiny text files compress very well).
RATIO_MIN_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NAME_BYTES = 255
#: At most this many problems are listed when an archive is refused.
MAX_LISTED_PROBLEMS = 20
#: A staging folder older than this whose dataset is no longer importing is swept away.
STALE_SECONDS = 3600
CHUNK_BYTES = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


class UploadRejected(Exception):
    """The archive breaks a rule; ``problems`` lists each broken rule with the member's name."""

    def __init__(self, archive: str, problems: list[str]):
        self.archive = archive
        self.problems = problems
        super().__init__(f"{archive}: " + "; ".join(problems))


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_files: int
    max_ratio: int

    @classmethod
    def from_settings(cls) -> UploadLimits:
        return cls(
            max_bytes=settings.UPLOAD_MAX_BYTES,
            max_files=settings.UPLOAD_MAX_FILES,
            max_ratio=settings.UPLOAD_MAX_RATIO,
        )


@dataclass(frozen=True)
class Member:
    info: zipfile.ZipInfo
    path: PurePosixPath  # normalised: "/" separators, no "." or empty parts


@dataclass(frozen=True)
class ArchivePlan:
    members: list[Member]
    total_bytes: int

    @property
    def csv_members(self) -> list[PurePosixPath]:
        return [m.path for m in self.members if m.path.suffix.lower() in (".csv", ".tsv")]


@dataclass(frozen=True)
class StagedUpload:
    folder: Path  # UPLOAD_DIR/<uuid>
    metadata: Path  # where the metadata CSV is, or will be once the worker has extracted the zip
    images_dir: Path
    archive_name: str
    files: int
    total_bytes: int

    @property
    def source(self) -> str:
        """What ``Dataset.source`` records for an upload."""
        return f"upload: {self.archive_name} ({self.metadata.name})"


# --- Checking an archive -------------------------------------------------------------------


def _declared_entries(handle: IO[bytes]) -> int | None:
    """The entry count in the end-of-central-directory record (zip64 aware); None if unreadable."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    tail_length = min(size, 22 + 65535)
    handle.seek(size - tail_length)
    tail = handle.read(tail_length)
    position = tail.rfind(b"PK\x05\x06")
    if position < 0 or len(tail) - position < 22:
        return None
    (entries,) = struct.unpack("<H", tail[position + 10 : position + 12])
    if entries != 0xFFFF:
        return entries
    locator = position - 20
    if locator < 0 or tail[locator : locator + 4] != b"PK\x06\x07":
        return None
    (offset,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
    if offset >= size:
        return None
    handle.seek(offset)
    record = handle.read(56)
    if record[:4] != b"PK\x06\x06":
        return None
    return int(struct.unpack("<Q", record[32:40])[0])


def _unsafe_name(name: str) -> str | None:
    """Why a member name may not be extracted as is, or None."""
    if "\x00" in name:
        return "NUL byte in the name"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        return "absolute path (zip-slip)"
    parts = posix.split("/")
    if ".." in parts:
        return "'..' in the path (zip-slip)"
    if len(parts) > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} folders deep"
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in parts):
        return f"a name longer than {MAX_NAME_BYTES} bytes"
    return None


def _member_type(info: zipfile.ZipInfo) -> str:
    """ "file", "dir", "symlink" or "special" from the Unix mode bits, when the zip has them."""
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:
        kind = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            return "symlink"
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "special"
        if stat.S_ISDIR(mode):
            return "dir"
    return "dir" if info.is_dir() else "file"


def inspect_archive(
    zf: zipfile.ZipFile, archive_size: int, limits: UploadLimits, archive: str = ARCHIVE_NAME
) -> ArchivePlan:
    """Check every member of ``zf`` from its central directory; extract nothing.

    Raises ``UploadRejected`` listing every problem found (up to ``MAX_LISTED_PROBLEMS``).
    """
    problems: list[str] = []
    members: list[Member] = []
    seen: dict[str, str] = {}
    total = 0
    for info in zf.infolist():
        label = repr(info.filename)
        unsafe = _unsafe_name(info.filename)
        if unsafe:
            problems.append(f"{label}: {unsafe}")
            continue
        # NFC: macOS writes decomposed names (e + combining accent), CSVs hold composed ones.
        parts = [
            unicodedata.normalize("NFC", p)
            for p in info.filename.replace("\\", "/").split("/")
            if p not in ("", ".")
        ]
        if not parts or any(p in IGNORED_DIRS for p in parts):
            continue
        if parts[-1] in IGNORED_FILES or parts[-1].startswith("._"):
            continue
        kind = _member_type(info)
        if kind == "symlink":
            problems.append(f"{label}: symbolic links are not allowed")
            continue
        if kind == "special":
            problems.append(f"{label}: not a regular file")
            continue
        if kind == "dir":
            continue
        path = PurePosixPath(*parts)
        if info.flag_bits & 0x1:
            problems.append(f"{label}: encrypted members are not supported")
            continue
        if info.compress_type not in SUPPORTED_COMPRESSION:
            problems.append(f"{label}: unsupported compression method {info.compress_type}")
            continue
        if path.suffix.lower() in NESTED_ARCHIVE_SUFFIXES:
            problems.append(f"{label}: a nested archive; unpack it and upload its contents")
            continue
        key = str(path)
        if key in seen:
            problems.append(f"{label}: the name appears twice in the archive")
            continue
        seen[key] = info.filename
        if info.file_size > RATIO_MIN_BYTES and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            ratio = info.file_size // max(info.compress_size, 1)
            problems.append(
                f"{label}: compression ratio {ratio}:1 is over the limit of "
                f"{limits.max_ratio}:1 (FAIRDERM_UPLOAD_MAX_RATIO); a zip bomb?"
            )
            continue
        total += info.file_size
        members.append(Member(info, path))
    folders = {str(parent) for m in members for parent in m.path.parents}
    for member in members:
        if str(member.path) in folders:
            problems.append(f"{member.info.filename!r}: is both a file and a folder")
    if len(members) > limits.max_files:
        problems.append(
            f"{len(members)} files, more than the limit of {limits.max_files} "
            "(FAIRDERM_UPLOAD_MAX_FILES)"
        )
    if total > limits.max_bytes:
        problems.append(
            f"{total} bytes once extracted, more than the limit of {limits.max_bytes} "
            "(FAIRDERM_UPLOAD_MAX_BYTES)"
        )
    if total > RATIO_MIN_BYTES and total > limits.max_ratio * max(archive_size, 1):
        problems.append(
            f"the archive inflates {total // max(archive_size, 1)}-fold, over the limit of "
            f"{limits.max_ratio}:1 (FAIRDERM_UPLOAD_MAX_RATIO); a zip bomb?"
        )
    if not members and not problems:
        problems.append("the archive holds no files")
    if problems:
        listed = problems[:MAX_LISTED_PROBLEMS]
        if len(problems) > len(listed):
            listed.append(f"and {len(problems) - len(listed)} more problems")
        raise UploadRejected(archive, listed)
    return ArchivePlan(members, total)


def check_archive(handle: IO[bytes], name: str, limits: UploadLimits) -> ArchivePlan:
    """Open ``handle`` as a zip and ``inspect_archive`` it; ``UploadRejected`` if it breaks a rule."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    entries = _declared_entries(handle)
    if entries is not None and entries > 2 * limits.max_files + 1000:
        raise UploadRejected(
            name,
            [
                f"the archive lists {entries} entries, far more than the limit of "
                f"{limits.max_files} files (FAIRDERM_UPLOAD_MAX_FILES)"
            ],
        )
    handle.seek(0)
    try:
        with zipfile.ZipFile(handle) as zf:
            return inspect_archive(zf, size, limits, name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, struct.error) as exc:
        raise UploadRejected(name, [f"not a readable zip file ({exc})"]) from None


# --- Staging an upload ---------------------------------------------------------------------


def upload_root() -> Path:
    return Path(settings.UPLOAD_DIR)


def _display_name(name: str | None, default: str) -> str:
    base = os.path.basename((name or "").replace("\\", "/"))
    safe = _SAFE_NAME.sub("_", base).strip(" .")[:100]
    return safe or default


def _copy(source: Any, target: Path, limit: int, field: str, label: str) -> int:
    """Copy an uploaded file (chunks) to ``target``; ``ValidationError`` past ``limit`` bytes."""
    written = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in _chunks(source):
            written += len(chunk)
            if written > limit:
                raise ValidationError(
                    {field: f"{label} is larger than {limit} bytes (FAIRDERM_UPLOAD_MAX_BYTES)"}
                )
            out.write(chunk)
    return written


def _chunks(source: Any) -> Iterator[bytes]:
    if hasattr(source, "chunks"):
        source.seek(0)
        yield from source.chunks(CHUNK_BYTES)
        return
    source.seek(0)
    while chunk := source.read(CHUNK_BYTES):
        yield chunk


def _size(source: Any) -> int:
    size = getattr(source, "size", None)
    if isinstance(size, int):
        return size
    source.seek(0, os.SEEK_END)
    return int(source.tell())


def stage_upload(archive: Any, metadata_file: Any | None = None) -> StagedUpload:
    """Check an uploaded zip (and optional separate CSV) and stage it for the worker.

    ``archive`` and ``metadata_file`` are Django ``File``/``UploadedFile`` objects (anything
    with ``name``, ``seek`` and ``read``). Nothing is extracted here. Raises
    ``ValidationError`` keyed by ``archive`` or ``metadata_file``; on any failure nothing is
    left in ``UPLOAD_DIR``.
    """
    limits = UploadLimits.from_settings()
    try:
        sweep_stale_uploads()
    except OSError:  # a sweep problem must not block uploads
        pass
    archive_name = _display_name(getattr(archive, "name", None), ARCHIVE_NAME)
    size = _size(archive)
    if size > limits.max_bytes:
        raise ValidationError(
            {
                "archive": f"{archive_name} is {size} bytes, more than the limit of "
                f"{limits.max_bytes} (FAIRDERM_UPLOAD_MAX_BYTES)"
            }
        )
    try:
        plan = check_archive(archive, archive_name, limits)
    except UploadRejected as exc:
        raise ValidationError({"archive": [f"{archive_name}: {p}" for p in exc.problems]}) from None
    csv_name = None
    inner_csv: PurePosixPath | None = None
    if metadata_file is not None:
        csv_name = _display_name(getattr(metadata_file, "name", None), "metadata.csv")
        csv_size = _size(metadata_file)
        if csv_size == 0:
            raise ValidationError({"metadata_file": f"{csv_name} is empty"})
        if csv_size + plan.total_bytes > limits.max_bytes:
            raise ValidationError(
                {
                    "metadata_file": f"{csv_name} and the archive together are larger than "
                    f"{limits.max_bytes} bytes (FAIRDERM_UPLOAD_MAX_BYTES)"
                }
            )
    else:
        inner_csv = _choose_csv(plan, archive_name)
    folder = upload_root() / uuid.uuid4().hex
    folder.mkdir(parents=True, mode=0o700)
    try:
        _copy(archive, folder / ARCHIVE_NAME, limits.max_bytes, "archive", archive_name)
        (folder / NAME_FILE).write_text(archive_name)
        files = folder / FILES_DIR
        if metadata_file is not None and csv_name is not None:
            (folder / METADATA_DIR).mkdir(mode=0o700)
            metadata = folder / METADATA_DIR / csv_name
            _copy(metadata_file, metadata, limits.max_bytes, "metadata_file", csv_name)
            images_dir = files
        else:
            metadata = files.joinpath(*inner_csv.parts)  # type: ignore[union-attr]
            images_dir = metadata.parent
        # With remote storage the import may run on another machine: keep the staged files
        # in the storage too (a shared volume or a single machine needs no copy).
        storage.uploads().publish_tree(folder)
    except BaseException:
        discard_staging(folder)
        raise
    return StagedUpload(
        folder, metadata, images_dir, archive_name, len(plan.members), plan.total_bytes
    )


def _choose_csv(plan: ArchivePlan, archive_name: str) -> PurePosixPath:
    """The metadata CSV inside the archive: the only CSV, or the only one named metadata.csv."""
    candidates = plan.csv_members
    if not candidates:
        raise ValidationError(
            {
                "metadata_file": f"{archive_name} holds no CSV file: upload the metadata CSV "
                "separately or put it in the zip"
            }
        )
    if len(candidates) == 1:
        return candidates[0]
    named = [c for c in candidates if c.name.casefold() == "metadata.csv"]
    if len(named) == 1:
        return named[0]
    listed = ", ".join(str(c) for c in candidates[:5]) + (" ..." if len(candidates) > 5 else "")
    raise ValidationError(
        {
            "metadata_file": f"{archive_name} holds several CSV files ({listed}): upload the "
            "metadata CSV separately, or name it metadata.csv"
        }
    )


def mark_staging(folder: Path, dataset_pk: int) -> None:
    """Record which dataset a staging folder belongs to (for ``sweep_stale_uploads``).

    The import may already have ended and removed the folder (an eager task): then nothing
    is written, and the folder is not recreated.
    """
    try:
        fd = os.open(folder / MARKER_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({"dataset": dataset_pk}))
    storage.uploads().publish(folder / MARKER_NAME)


# --- Extracting, in the worker ---------------------------------------------------------------


def fetch_staged(folder: Path) -> None:
    """Download a staging folder that another machine staged (remote storage only)."""
    storage.uploads().fetch_tree(folder.name)


def extract_staged(folder: Path) -> None:
    """Extract ``folder/upload.zip`` into ``folder/files/`` and delete the zip.

    The archive is checked again (settings may have changed since the upload) and every
    member is streamed with its size enforced: one that inflates past its declared size, or
    an archive past ``UPLOAD_MAX_BYTES``, is refused (``UploadRejected``). Files are created
    with ``O_EXCL | O_NOFOLLOW`` inside a folder this function created, so nothing can be
    written outside ``folder/files/``. Does nothing when the zip is gone (already extracted).
    """
    archive = folder / ARCHIVE_NAME
    if not archive.is_file():
        return
    limits = UploadLimits.from_settings()
    root = folder / FILES_DIR
    root.mkdir(mode=0o700, exist_ok=True)
    real_root = root.resolve()
    try:
        name = (folder / NAME_FILE).read_text().strip() or ARCHIVE_NAME
    except OSError:
        name = ARCHIVE_NAME
    total = 0
    with archive.open("rb") as handle:
        plan = check_archive(handle, name, limits)
        try:
            with zipfile.ZipFile(handle) as zf:
                for member in plan.members:
                    target = real_root.joinpath(*member.path.parts)
                    if os.path.commonpath([real_root, target]) != str(real_root):
                        raise UploadRejected(name, [f"{member.info.filename!r}: outside staging"])
                    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                    fd = os.open(target, flags, 0o600)
                    written = 0
                    with os.fdopen(fd, "wb") as out, zf.open(member.info) as source:
                        while chunk := source.read(CHUNK_BYTES):
                            written += len(chunk)
                            total += len(chunk)
                            if written > member.info.file_size:
                                raise UploadRejected(
                                    name,
                                    [
                                        f"{member.info.filename!r}: inflates past its declared "
                                        f"size of {member.info.file_size} bytes"
                                    ],
                                )
                            if total > limits.max_bytes:
                                raise UploadRejected(
                                    name,
                                    [
                                        f"more than {limits.max_bytes} bytes once extracted "
                                        "(FAIRDERM_UPLOAD_MAX_BYTES)"
                                    ],
                                )
                            out.write(chunk)
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
            raise UploadRejected(name, [f"cannot be extracted: {exc}"]) from None
        except OSError as exc:
            raise UploadRejected(name, [f"cannot be extracted: {exc.strerror or exc}"]) from None
    archive.unlink()


# --- Cleaning up -----------------------------------------------------------------------------


#: Task arguments name staged files as ``upload://<uuid>/<path>``: relative to UPLOAD_DIR, so a
#: worker whose UPLOAD_DIR is another folder (another machine, remote storage) finds them.
STAGED_SCHEME = "upload://"


def staged_reference(path: Path) -> str:
    """``upload://<uuid>/...`` for a path inside the staging area (for task arguments)."""
    return STAGED_SCHEME + Path(path).resolve().relative_to(upload_root().resolve()).as_posix()


def resolve_reference(value: str | Path) -> Path:
    """The local path of a task argument: a ``upload://`` reference or a plain path."""
    text = str(value)
    if not text.startswith(STAGED_SCHEME):
        return Path(value)
    relative = PurePosixPath(text[len(STAGED_SCHEME) :])
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"metadata: {text!r} is not a reference inside the staging area")
    return upload_root().joinpath(*relative.parts)


def staging_folder_for(path: str | Path) -> Path | None:
    """The staging folder (``UPLOAD_DIR/<uuid>``) that ``path`` lies in, or None."""
    root = upload_root().resolve()
    resolved = Path(path).resolve()
    if resolved == root or os.path.commonpath([root, resolved]) != str(root):
        return None
    return root / resolved.relative_to(root).parts[0]


def discard_staging(folder: Path) -> None:
    """Remove a staging folder (only ever a direct child of ``UPLOAD_DIR``)."""
    root = upload_root().resolve()
    folder = Path(folder)
    if folder.resolve().parent != root or folder.is_symlink():
        return
    shutil.rmtree(folder, ignore_errors=True)
    try:
        storage.uploads().delete_tree(folder.name)
    except Exception:  # the stale-upload sweep tries again; the import's outcome stands
        logger.exception("could not remove the stored copy of staging folder %s", folder.name)


def sweep_stale_uploads(max_age: float = STALE_SECONDS) -> list[Path]:
    """Remove staging folders older than ``max_age`` seconds whose import is not pending.

    A folder is kept while its dataset (recorded by ``mark_staging``) is still importing:
    its task may be waiting in the queue. Returns the folders removed.
    """
    from backend.datasets.models import Dataset

    root = upload_root()
    if not root.is_dir():
        return []
    removed = []
    now = time.time()
    for folder in root.iterdir():
        if not folder.is_dir() or folder.is_symlink():
            continue
        if now - folder.stat().st_mtime < max_age:
            continue
        try:
            pk = json.loads((folder / MARKER_NAME).read_text())["dataset"]
        except (OSError, ValueError, KeyError, TypeError):
            pk = None
        if (
            pk is not None
            and Dataset.objects.filter(pk=pk, status=Dataset.Status.IMPORTING).exists()
        ):
            continue
        discard_staging(folder)
        removed.append(folder)
    return removed
