"""Helpers shared by executors: artifacts, code version, training-data selection."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from backend.datasets.models import Dataset, Image, Origin
from backend.runs.models import Artifact, Run
from validation.files import sha256_file, sha256_tree


@functools.cache
def code_version() -> str:
    """The FairDerm code commit: FAIRDERM_GIT_SHA (set in images) or ``git rev-parse HEAD``."""
    if os.environ.get("FAIRDERM_GIT_SHA"):
        return os.environ["FAIRDERM_GIT_SHA"]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    sha = result.stdout.strip()
    if result.returncode != 0 or not sha:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return f"{sha}-dirty" if dirty else sha


def register_artifact(run: Run, name: str, kind: str, path: Path) -> Artifact:
    """Record a file or folder under ARTIFACTS_ROOT as an artifact of ``run`` (with its sha256)."""
    root = Path(settings.ARTIFACTS_ROOT)
    relative = path.resolve().relative_to(root.resolve())
    if path.is_dir():
        digest = sha256_tree(path)
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    else:
        digest, size = sha256_file(path), path.stat().st_size
    artifact, _ = Artifact.objects.update_or_create(
        run=run,
        name=name,
        defaults={"kind": kind, "path": str(relative), "sha256": digest, "size_bytes": size},
    )
    return artifact


def input_images(run: Run) -> QuerySet[Image]:
    """Every image of the run's datasets and training sets, before any filter."""
    selected = Image.objects.filter(dataset__in=run.datasets.all())
    for training_set in run.training_sets.all():
        selected = selected | training_set.images()
    return selected


def training_images(run: Run, *, fsts: Any = None, diagnoses: Any = None) -> list[Image]:
    """The real training images of the run's datasets and training sets.

    Only the train split (and images not split yet) is read, and never an image of a dataset
    locked as an external test set: that raises ``PermissionError``.
    """
    datasets = list(run.datasets.all())
    sets = list(run.training_sets.all())
    locked = sorted(
        {d.name for d in datasets if d.role == Dataset.Role.EXTERNAL_TEST}
        | {d.name for s in sets for d in s.datasets.all() if d.role == Dataset.Role.EXTERNAL_TEST}
    )
    if locked:
        raise PermissionError(
            f"datasets {locked} are locked as external test sets: no training job may read them"
        )
    images = (
        input_images(run)
        .filter(origin=Origin.REAL, fst__isnull=False)
        .exclude(split__in=[Image.Split.VAL, Image.Split.TEST])
    )
    if fsts is not None:
        images = images.filter(fst__in=list(fsts))
    if diagnoses is not None:
        images = images.filter(diagnosis__in=list(diagnoses))
    return list(images.order_by("dataset_id", "id"))
