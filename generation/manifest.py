"""The record of a generated folder's image hashes: ``SHA256SUMS`` plus an append-only journal.

``SHA256SUMS`` holds ``<sha256>  <name>`` lines sorted by name, in ``sha256sum``'s format, so
``sha256sum -c SHA256SUMS`` checks a finished folder by hand. Rewriting it after every batch
costs time that grows with the folder (parsing and writing 60k lines is about 70 ms, paid
once per batch under the folder lock), so a running generation appends each batch's lines to
``SHA256SUMS.journal`` instead, and the journal is folded into ``SHA256SUMS`` when a run
starts and when it ends (``compact_manifest``). ``read_manifest`` reads both, so a record read
mid-run or after a crash is complete.

Guarantees (the crash tests in ``tests/validation/test_crash_writes.py`` hold them):

- A listed hash is never stale: lines are appended only after their files are in place, and a
  name's line is dropped (by compaction, which clears the journal) before its file is
  written again.
- Nothing listed is lost: the journal is fsynced after each append; compaction replaces
  ``SHA256SUMS`` atomically before it removes the journal, so a crash in between leaves the
  same lines in both, which read back as one.
- A torn last journal line (a crash or power loss inside an append) is ignored by readers and
  cut off by the next append; any other malformed line is an error naming the file and line.

Shards of a run may share a folder: every change holds an exclusive ``flock`` on the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from validation.files import atomic_write_text, fsync_dir

logger = logging.getLogger(__name__)

#: The folder's record of image hashes: ``<sha256>  <name>`` lines, sorted by name.
MANIFEST_NAME = "SHA256SUMS"
#: Lines appended since ``SHA256SUMS`` was last rewritten, in the same format, oldest first.
JOURNAL_NAME = f"{MANIFEST_NAME}.journal"
_LINE = re.compile(r"([0-9a-f]{64})  ([^/\\\r\n]+)")
#: How far back from the end an append looks for the end of the last whole journal line.
_TAIL_CHUNK = 4096


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the folder itself: shards of a run share one folder."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _parse(path: Path, text: str, record: dict[str, str], *, torn_tail_ok: bool) -> None:
    """Add the lines of ``text`` (the file ``path``) to ``record``, later lines winning."""
    lines = text.split("\n")
    # ``text`` ends with "\n" when its last line is whole: ``split`` then ends with "".
    tail = lines.pop()
    if tail and not torn_tail_ok:
        lines.append(tail)  # SHA256SUMS is written whole: a last line without "\n" is a line
    elif tail:
        logger.warning("Ignoring the torn last line of %s", path)
    for number, line in enumerate(lines, start=1):
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"output_dir: {path} line {number} is not '<sha256>  <name>'")
        record[match.group(2)] = match.group(1)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None


def read_manifest(output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Image name to hex sha256, as recorded in ``output_dir``'s ``SHA256SUMS`` and journal.

    Returns an empty dict for a folder with no record. Raises ``ValueError`` naming the file
    and line of a malformed line (a torn last line of the journal is skipped instead).

    Args:
        output_dir (`str` or `os.PathLike`): A folder written by ``generate_images``.
    """
    folder = Path(output_dir)
    record: dict[str, str] = {}
    for name, torn_tail_ok in ((MANIFEST_NAME, False), (JOURNAL_NAME, True)):
        text = _read_text(folder / name)
        if text is not None:
            _parse(folder / name, text, record, torn_tail_ok=torn_tail_ok)
    return record


def _lines(record: Mapping[str, str]) -> str:
    for name, digest in record.items():
        if _LINE.fullmatch(f"{digest}  {name}") is None:
            raise ValueError(f"record: {name!r} -> {digest!r} is not a file name and a sha256")
    return "".join(f"{record[name]}  {name}\n" for name in sorted(record))


def append_to_manifest(output_dir: str | os.PathLike[str], add: Mapping[str, str]) -> None:
    """Record ``add`` (image name to hex sha256) by appending to the journal and fsyncing it.

    Costs the same whatever the folder holds. The files named must already be in place.
    """
    if not add:
        return
    folder = Path(output_dir)
    data = _lines(add).encode("utf-8")
    with folder_lock(folder):
        path = folder / JOURNAL_NAME
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _cut_torn_tail(fd, path)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(folder)


def _cut_torn_tail(fd: int, path: Path) -> None:
    """Truncate the journal after its last whole line, so an append never glues onto a torn one."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    logger.warning("Cutting a torn last line (%d bytes) off %s", size - end, path)
    os.ftruncate(fd, end)


def compact_manifest(
    output_dir: str | os.PathLike[str],
    add: Mapping[str, str] | None = None,
    remove: Iterable[str] = (),
) -> None:
    """Fold the journal into ``SHA256SUMS``, dropping the ``remove`` names and recording ``add``.

    ``SHA256SUMS`` is rewritten atomically, then the journal removed. An unreadable record is
    replaced by ``add`` (with a warning): callers re-list the files they find whole. Nothing is
    written when the journal is absent and nothing would change.
    """
    folder = Path(output_dir)
    add = dict(add or {})
    remove = set(remove)
    with folder_lock(folder):
        journal = folder / JOURNAL_NAME
        try:
            record = read_manifest(folder)
            rewrite = journal.exists()
        except ValueError as error:
            logger.warning("Rewriting the unreadable record of %s (%s)", folder, error)
            record, rewrite = {}, True
        rewrite = (
            rewrite
            or bool(remove & record.keys())
            or any(record.get(k) != v for k, v in add.items())
        )
        if not rewrite:
            return
        for name in remove:
            record.pop(name, None)
        record.update(add)
        atomic_write_text(folder / MANIFEST_NAME, _lines(record))
        if journal.exists():
            journal.unlink()
            fsync_dir(folder)
