"""Starting dataset imports: the one code path used by the CLI, the admin, the API and the demo.

- ``import_now`` / ``import_in_background``: files already on the server (the CLI reads any
  path; the admin and the API first pass them through ``check_server_paths``).
- ``import_upload_now`` / ``import_upload_in_background``: an uploaded zip (and optional
  separate CSV), checked and staged by ``backend.datasets.uploads``; the import extracts it
  and removes the staging folder.

Bad requests raise ``ValidationError`` keyed by the field at fault (``name``, ``format``,
``role``, ``archive``, ``metadata_file``, ``images_dir``, ``metadata``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from backend.datasets.formats import READERS
from backend.datasets.importing import ImportSummary, run_import
from backend.datasets.models import Dataset, Origin
from backend.datasets.uploads import (
    discard_staging,
    mark_staging,
    stage_upload,
    staged_reference,
)


def validate_import_request(*, name: str, format: str, role: str) -> None:
    """Check a new import's name, format and role; ``ValidationError`` naming the field."""
    if format not in Dataset.Format.values:
        raise ValidationError({"format": f"unknown format {format!r}"})
    if format not in READERS:
        raise ValidationError({"format": f"the {format} importer is not available yet"})
    if role not in Dataset.Role.values:
        raise ValidationError({"role": f"unknown role {role!r}"})
    if not name.strip():
        raise ValidationError({"name": "a dataset needs a name"})
    if len(name) > Dataset._meta.get_field("name").max_length:
        raise ValidationError({"name": "a dataset name has at most 200 characters"})
    if Dataset.objects.filter(name=name).exists():
        raise ValidationError({"name": f"a dataset named {name!r} already exists"})


def _create_importing_dataset(
    *, name: str, format: str, source: str, role: str, user: Any
) -> Dataset:
    validate_import_request(name=name, format=format, role=role)
    return Dataset.objects.create(
        name=name,
        format=format,
        role=role,
        origin=Origin.REAL,
        source=source,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )


def import_now(
    *,
    name: str,
    format: str,
    metadata: str | Path,
    images_dir: str | Path,
    role: str = "training",
    user: Any = None,
) -> ImportSummary:
    """Create the dataset and import the files in this process; return the summary."""
    dataset = _create_importing_dataset(
        name=name, format=format, source=str(metadata), role=role, user=user
    )
    return run_import(dataset.pk, metadata, images_dir)


def import_in_background(
    *,
    name: str,
    format: str,
    metadata: str | Path,
    images_dir: str | Path,
    role: str = "training",
    user: Any = None,
    source: str | None = None,
) -> Dataset:
    """Create the dataset and queue its import on the ``cpu`` queue once the transaction commits."""
    from worker.tasks import import_dataset

    with transaction.atomic():
        dataset = _create_importing_dataset(
            name=name,
            format=format,
            source=source if source is not None else str(metadata),
            role=role,
            user=user,
        )
        kwargs = {
            "dataset_pk": dataset.pk,
            "metadata": str(metadata),
            "images_dir": str(images_dir),
        }
        transaction.on_commit(lambda: import_dataset.apply_async(kwargs=kwargs))
    return dataset


def import_roots() -> list[Path]:
    """The folders (resolved) that the admin and the API may import server files from."""
    return [Path(root).resolve() for root in settings.IMPORT_ROOTS]


def _inside(root: Path, path: Path) -> bool:
    return os.path.commonpath([root, path]) == str(root)


def _stat_is(path: Path, test: Callable[[Path], bool]) -> bool:
    """``path.is_dir()`` or ``path.is_file()``, false where the path cannot even be looked up.

    ``Path.is_dir`` swallows "no such file" but raises others, such as ENAMETOOLONG for a
    component over 255 bytes: that used to be a 500 for a long path typed into the API.
    """
    try:
        return test(path)
    except OSError:
        return False


def check_server_paths(*, images_dir: str, metadata: str) -> tuple[Path, Path]:
    """Resolve a server import's paths and check they lie inside ``IMPORT_ROOTS``.

    ``images_dir`` must be an absolute path to a folder; ``metadata`` an absolute path to a
    file, or a path relative to ``images_dir``. Both are resolved (symbolic links followed)
    before the check, and compared with ``os.path.commonpath`` rather than a string prefix
    (``/data-other`` is not inside ``/data``). The upload staging area is refused: its folders
    belong to other imports and are deleted when those end.

    Why: the web process can read far more than datasets (settings, secrets, other projects).
    An unchecked path would let a web account, or a stolen session, import or probe any file
    the server can reach, and error messages quote CSV values back. Raises
    ``ValidationError`` keyed by ``images_dir`` or ``metadata``.
    """
    roots = import_roots()
    allowed = ", ".join(str(r) for r in roots) or "(none configured)"
    staging = Path(settings.UPLOAD_DIR).resolve()
    checked: dict[str, Path] = {}
    for field, text in (("images_dir", images_dir), ("metadata", metadata)):
        text = (text or "").strip()
        if not text:
            raise ValidationError({field: "this path is required"})
        if "\x00" in text:
            raise ValidationError({field: "the path contains a NUL byte"})
        try:
            path = Path(text).expanduser()
        except RuntimeError:  # "~someone" for a user this machine does not have
            raise ValidationError({field: f"{text} names an unknown home folder"}) from None
        if not path.is_absolute():
            if field == "images_dir":
                raise ValidationError({field: "give an absolute path on the server"})
            path = checked["images_dir"] / path
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop, for one
            reason = getattr(exc, "strerror", None) or exc
            raise ValidationError({field: f"{text} cannot be resolved: {reason}"}) from None
        if not any(_inside(root, resolved) for root in roots):
            raise ValidationError(
                {field: f"{text} is outside the folders imports may read from: {allowed}"}
            )
        if _inside(staging, resolved):
            raise ValidationError({field: f"{text} is in the upload staging area"})
        checked[field] = resolved
    if not _stat_is(checked["images_dir"], Path.is_dir):
        raise ValidationError({"images_dir": f"{images_dir} is not a folder"})
    if not _stat_is(checked["metadata"], Path.is_file):
        raise ValidationError({"metadata": f"{metadata} is not a file"})
    return checked["images_dir"], checked["metadata"]


def import_server_folder_in_background(
    *,
    name: str,
    format: str,
    images_dir: str,
    metadata: str,
    role: str = "training",
    user: Any = None,
) -> Dataset:
    """``import_in_background`` for paths typed into the admin or the API (checked first)."""
    validate_import_request(name=name, format=format, role=role)
    folder, csv_path = check_server_paths(images_dir=images_dir, metadata=metadata)
    return import_in_background(
        name=name, format=format, metadata=csv_path, images_dir=folder, role=role, user=user
    )


def import_upload_in_background(
    *,
    name: str,
    format: str,
    archive: Any,
    metadata_file: Any | None = None,
    role: str = "training",
    user: Any = None,
) -> Dataset:
    """Check and stage an uploaded zip, create the dataset and queue its import.

    The zip is checked (``backend.datasets.uploads``) before the dataset is created, so a
    refused upload leaves neither a dataset nor a staging folder. The worker extracts it and
    removes the staging folder when the import ends.
    """
    validate_import_request(name=name, format=format, role=role)
    staged = stage_upload(archive, metadata_file)
    try:
        dataset = import_in_background(
            name=name,
            format=format,
            metadata=staged_reference(staged.metadata),
            images_dir=staged_reference(staged.images_dir),
            role=role,
            user=user,
            source=staged.source,
        )
        mark_staging(staged.folder, dataset.pk)
    except BaseException:
        discard_staging(staged.folder)
        raise
    return dataset


def import_upload_now(
    *,
    name: str,
    format: str,
    archive: Any,
    metadata_file: Any | None = None,
    role: str = "training",
    user: Any = None,
) -> ImportSummary:
    """Check, stage and import an uploaded zip in this process; return the summary."""
    validate_import_request(name=name, format=format, role=role)
    staged = stage_upload(archive, metadata_file)
    try:
        dataset = _create_importing_dataset(
            name=name, format=format, source=staged.source, role=role, user=user
        )
    except BaseException:
        discard_staging(staged.folder)
        raise
    return run_import(dataset.pk, staged.metadata, staged.images_dir)
