"""One storage layer for every file FairDerm keeps: local disk, a shared volume, or S3.

Training, sampling and metric code needs real files, so it reads and writes under the local
roots: ``MEDIA_ROOT`` (imported, uploaded and generated images) and ``ARTIFACTS_ROOT`` (run
folders: checkpoints, models, sample grids, plans). Where those files are *kept* is the
``media`` and ``artifacts`` entries of ``settings.STORAGES``; a ``Mirror`` keeps a local root
and its storage in step:

- ``FAIRDERM_STORAGE=local`` (the default): the storage is the local root itself
  (``LocalRootStorage``), on one machine or on a shared volume mounted at the same path on
  every machine. Nothing is ever copied and every call below is a no-op.
- ``FAIRDERM_STORAGE=s3``: an S3-compatible bucket (django-storages) keeps the files; each
  machine's local roots are a cache. Code ``publish``-es a file after its atomic local write
  (a checkpoint folder with its completion marker last), and ``fetch``-es one before it reads
  it: downloaded to a temporary name, checked against its sha256 when that is known, then
  renamed, so a cache never holds a half-downloaded file.

Names in a storage are the file's path relative to its local root, with ``/`` separators, so
``Image.file`` and ``Artifact.path`` work for both.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

from validation.files import atomic_path, sha256_file

logger = logging.getLogger(__name__)

#: Parallel downloads when a whole folder or many images are fetched.
FETCH_THREADS = 8


class LocalRootStorage(FileSystemStorage):
    """A FileSystemStorage whose folder is a setting, read at every use (MEDIA_ROOT, ...).

    Files are overwritten in place (names are chosen by the code: content hashes, run folders),
    and tests or commands that change the setting move the storage with it.
    """

    def __init__(self, root_setting: str = "MEDIA_ROOT", **kwargs: Any):
        if not hasattr(settings, root_setting):
            raise ValueError(f"root_setting: no setting named {root_setting!r}")
        self.root_setting = root_setting
        kwargs.setdefault("allow_overwrite", True)
        super().__init__(**kwargs)

    @property  # type: ignore[override]
    def base_location(self) -> str:
        return str(getattr(settings, self.root_setting))

    @property  # type: ignore[override]
    def location(self) -> str:
        return os.path.abspath(self.base_location)


class StorageIntegrityError(OSError):
    """A downloaded file does not have the sha256 the database recorded for it."""


@dataclass(frozen=True)
class Mirror:
    """A local folder and the storage that keeps its files (see the module docstring).

    Args:
        alias (`str`): The ``settings.STORAGES`` entry, e.g. ``"media"``.
        root_setting (`str`): The setting naming the local folder, e.g. ``"MEDIA_ROOT"``.
        prefix (`str`, defaults to ``""``): Names in the storage start with it, e.g.
            ``"uploads/"`` for the upload staging area kept in the media storage.
        storage_override (`Storage`, *optional*): Use this storage instead of ``storages[alias]``.
    """

    alias: str
    root_setting: str
    prefix: str = ""
    storage_override: Storage | None = None

    @property
    def storage(self) -> Storage:
        return self.storage_override if self.storage_override is not None else storages[self.alias]

    @property
    def root(self) -> Path:
        return Path(getattr(settings, self.root_setting))

    @property
    def remote(self) -> bool:
        """Whether files must be copied between the local folder and the storage."""
        storage = self.storage
        if isinstance(storage, LocalRootStorage):
            return False  # local mode: every root is on this disk or on a shared volume
        if isinstance(storage, FileSystemStorage):
            return Path(storage.location, self.prefix).resolve() != self.root.resolve()
        return True

    # --- names and paths ------------------------------------------------------------------

    def name_of(self, path: str | os.PathLike[str]) -> str:
        """The storage-relative name of a local ``path`` under the root (``ValueError`` if outside)."""
        resolved = Path(path).resolve()
        try:
            relative = resolved.relative_to(self.root.resolve())
        except ValueError:
            raise ValueError(
                f"path: {path} is not under {self.root_setting} ({self.root})"
            ) from None
        return relative.as_posix()

    def path(self, name: str) -> Path:
        """The local path of ``name`` (which may not exist on this machine yet)."""
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise ValueError(f"name: {name!r} is not a relative path inside {self.root_setting}")
        return self.root.joinpath(*pure.parts)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    # --- writing ----------------------------------------------------------------------------

    def publish(self, path: str | os.PathLike[str]) -> str:
        """Keep the local file ``path`` (already written completely) in the storage; return its name."""
        name = self.name_of(path)
        if self.remote:
            with open(path, "rb") as handle:
                saved = self.storage.save(self.key(name), File(handle, name=name))
            if saved != self.key(name):
                raise OSError(
                    f"{self.alias} storage kept {name!r} as {saved!r}; it must overwrite in place"
                )
        return name

    def publish_many(self, paths: Iterable[str | os.PathLike[str]]) -> list[str]:
        """``publish`` several files, in parallel when remote."""
        paths = list(paths)
        if not self.remote or len(paths) < 2:
            return [self.publish(p) for p in paths]
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            return list(pool.map(self.publish, paths))

    def publish_tree(self, folder: str | os.PathLike[str], *, last: str | None = None) -> str:
        """Publish every file under ``folder``; the file named ``last`` (a completion marker) last.

        A reader that sees the marker in the storage therefore finds every other file too.
        """
        folder = Path(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        marker = [p for p in files if last is not None and p.name == last and p.parent == folder]
        self.publish_many([p for p in files if p not in marker])
        for path in marker:
            self.publish(path)
        return self.name_of(folder)

    def delete(self, name: str) -> None:
        if self.remote:
            self.storage.delete(self.key(name))

    def delete_tree(self, name: str) -> None:
        """Remove every stored file under the folder ``name`` (remote storage only)."""
        if self.remote:
            for file_name in list(self.walk(name)):
                self.storage.delete(self.key(file_name))

    # --- reading ----------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        """Whether ``name`` is kept: in the storage, or on this disk when the storage is local."""
        if not self.remote:
            return self.path(name).is_file()
        return bool(self.storage.exists(self.key(name)))

    def walk(self, name: str) -> Iterator[str]:
        """Names of every file under the folder ``name`` in the storage (the local folder if local)."""
        if not self.remote:
            folder = self.path(name)
            if folder.is_dir():
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        yield self.name_of(path)
            return
        try:
            dirs, files = self.storage.listdir(self.key(name))
        except FileNotFoundError:
            return
        for file_name in sorted(files):
            yield f"{name.rstrip('/')}/{file_name}"
        for sub in sorted(dirs):
            yield from self.walk(f"{name.rstrip('/')}/{sub}")

    def folders(self, name: str) -> list[str]:
        """Names of the folders directly under the folder ``name``."""
        if not self.remote:
            folder = self.path(name)
            return (
                sorted(self.name_of(p) for p in folder.iterdir() if p.is_dir())
                if folder.is_dir()
                else []
            )
        try:
            dirs, _ = self.storage.listdir(self.key(name))
        except FileNotFoundError:
            return []
        return [f"{name.rstrip('/')}/{d}" for d in sorted(dirs)]

    def fetch(self, name: str, *, sha256: str | None = None) -> Path:
        """The local path of ``name``, downloaded first when this machine does not hold it.

        With ``sha256``, a cached copy that does not match is downloaded again, and a download
        that does not match raises ``StorageIntegrityError`` (the cache keeps no bad file).
        Raises ``FileNotFoundError`` naming the file when the storage does not have it.
        """
        local = self.path(name)
        if not self.remote:
            return local
        if local.is_file() and (sha256 is None or sha256_file(local) == sha256):
            return local
        try:
            with atomic_path(local) as tmp:
                with self.storage.open(self.key(name), "rb") as source, open(tmp, "wb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
                if sha256 is not None and (found := sha256_file(tmp)) != sha256:
                    raise StorageIntegrityError(
                        f"{self.alias} storage: {name} has sha256 {found[:12]}..., "
                        f"expected {sha256[:12]}...; not cached"
                    )
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{self.alias} storage has no file {self.key(name)!r} (needed at {local})"
            ) from None
        except Exception as exc:
            if _is_missing(exc):
                raise FileNotFoundError(
                    f"{self.alias} storage has no file {self.key(name)!r} (needed at {local})"
                ) from None
            raise
        return local

    def fetch_if_stored(self, name: str) -> Path | None:
        """``fetch(name)`` if the storage keeps it, else None (for optional files like plan.json)."""
        local = self.path(name)
        if not self.remote:
            return local if local.is_file() else None
        if local.is_file():
            return local
        try:
            return self.fetch(name)
        except FileNotFoundError:
            return None

    def fetch_latest(self, name: str) -> Path | None:
        """Like ``fetch_if_stored``, but a cached copy is replaced by the stored one.

        For small files that are rewritten in place during a run (e.g. a tone-gate record).
        """
        local = self.path(name)
        if not self.remote:
            return local if local.is_file() else None
        if not self.exists(name):
            return local if local.is_file() else None
        local.unlink(missing_ok=True)
        return self.fetch(name)

    def fetch_many(self, wanted: Iterable[tuple[str, str | None]]) -> list[Path]:
        """``fetch`` each ``(name, sha256)`` in parallel; paths in the same order."""
        wanted = list(wanted)
        if not self.remote:
            return [self.path(name) for name, _ in wanted]
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            return list(pool.map(lambda pair: self.fetch(pair[0], sha256=pair[1]), wanted))

    def fetch_tree(self, name: str, *, refresh: bool = False) -> Path:
        """Download every stored file under the folder ``name`` that this machine lacks.

        With ``refresh``, files already cached are downloaded again (for files that are
        rewritten in place, like a tone-gate replacement).
        """
        if self.remote:
            names = list(self.walk(name))
            missing = [n for n in names if refresh or not self.path(n).is_file()]
            if refresh:
                for n in missing:
                    self.path(n).unlink(missing_ok=True)
            self.fetch_many((n, None) for n in missing)
        return self.path(name)


def _is_missing(exc: BaseException) -> bool:
    """Whether a storage backend's error means "no such file" (botocore reports 404s its own way)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        return code in {"404", "NoSuchKey", "NotFound"}
    return False


def media() -> Mirror:
    """Images: imported (content-addressed), generated, and study copies."""
    return Mirror("media", "MEDIA_ROOT")


def artifacts() -> Mirror:
    """Run folders: checkpoints, models, sample grids, plans and provenance."""
    return Mirror("artifacts", "ARTIFACTS_ROOT")


def uploads() -> Mirror:
    """The upload staging area: a web process stages a zip, a worker elsewhere imports it."""
    return Mirror("media", "UPLOAD_DIR", prefix="uploads/")
