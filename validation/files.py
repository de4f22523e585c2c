"""Crash-safe file writing and hashing.

Every file FairDerm produces (images, CSVs, checkpoints, reports) is written to a temporary
file in the destination folder, flushed to disk, then renamed over the final name, so a
crash or a full disk leaves either the old file or the complete new one, never half of it.
Temporary names end in ``.tmp`` and start with ``.``, so ``sweep_temp_files`` can remove the
leftovers of a crash at start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
_CHUNK = 1 << 20
# mkstemp/mkdtemp create private (0600/0700) entries; what we publish gets the usual modes.
FILE_MODE = 0o644
DIR_MODE = 0o755


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush ``directory``'s entries (a rename or unlink inside it) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The caller writes the whole file to the yielded path (any library that takes a file name
    works). On an exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file atomically by calling ``writer`` with a binary file object."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer(handle)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success rename it to ``path``.

    ``path`` must not exist yet (a folder cannot be renamed over a non-empty one). On an
    exception the temporary folder and everything in it are removed.
    """
    target = Path(path)
    if target.exists():
        raise FileExistsError(f"path: {target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sweep_temp_files(root: str | os.PathLike[str], *, min_age: float = 0.0) -> list[Path]:
    """Remove the temporary files and folders that an interrupted atomic write left under ``root``.

    Args:
        root: The folder to sweep (recursively).
        min_age: Only remove temporary entries not modified for this many seconds. Where
            another process may be writing into the same folder right now (shards of one
            run, workers sharing a volume), a young temporary file is a write in progress.
    """
    removed: list[Path] = []
    root = Path(root)
    if not root.exists():
        return removed
    now = time.time()
    for candidate in sorted(
        root.rglob(f".*{TEMP_SUFFIX}"), key=lambda p: len(p.parts), reverse=True
    ):
        try:
            if min_age and now - candidate.lstat().st_mtime < min_age:
                continue
        except FileNotFoundError:  # finished (renamed) or removed meanwhile
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(folder: str | os.PathLike[str]) -> str:
    """One hex sha256 for a folder: the hash of its sorted ``relative-path<TAB>file-sha256`` lines.

    Temporary files of interrupted writes are left out, so the hash is stable across crashes.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"folder: {root} is not a directory")
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if any(
            part.startswith(".") and part.endswith(TEMP_SUFFIX)
            for part in path.relative_to(root).parts
        ):
            continue
        digest.update(f"{relative}\t{sha256_file(path)}\n".encode())
    return digest.hexdigest()
