"""Helpers shared by executors: artifacts, code version, training-data selection."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from backend import storage
from backend.datasets.models import Dataset, Image, Origin
from backend.runs.models import Artifact, Run
from generation.conditional.checkpoints import MARKER as CHECKPOINT_MARKER_NAME
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
    """Record a file or folder under ARTIFACTS_ROOT as an artifact of ``run`` (with its sha256).

    The files are published to the artifacts storage before the row points at them.
    """
    root = Path(settings.ARTIFACTS_ROOT)
    relative = path.resolve().relative_to(root.resolve())
    mirror = storage.artifacts()
    if path.is_dir():
        digest = sha256_tree(path)
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        mirror.publish_tree(path, last=CHECKPOINT_MARKER_NAME)
    else:
        digest, size = sha256_file(path), path.stat().st_size
        mirror.publish(path)
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


# --- Checkpoints kept in the artifacts storage ----------------------------------------------


def publish_checkpoint(path: Path) -> None:
    """Publish a finished checkpoint folder (marker last) and drop stored ones pruned locally."""
    mirror = storage.artifacts()
    if not mirror.remote:
        return
    mirror.publish_tree(path, last=CHECKPOINT_MARKER_NAME)
    root = path.parent
    for name in mirror.folders(mirror.name_of(root)):
        if not mirror.path(name).is_dir():
            mirror.delete_tree(name)


def restore_checkpoints(root: Path) -> list[Path]:
    """Download the complete checkpoints under ``root`` that this machine lacks; return them.

    A training resumed on another machine (its worker died) thus finds the checkpoints the
    first machine published; the trainer verifies them and resumes from the newest good one.
    """
    mirror = storage.artifacts()
    if not mirror.remote:
        return []
    fetched = []
    for name in mirror.folders(mirror.name_of(root)):
        local = mirror.path(name)
        if (local / CHECKPOINT_MARKER_NAME).is_file():
            continue
        if not mirror.exists(f"{name}/{CHECKPOINT_MARKER_NAME}"):
            continue  # published only in part: its worker died while uploading it
        fetched.append(mirror.fetch_tree(name))
    return fetched


def prepare_training(ctx: Any, *, fsts: Any, diagnoses: Any) -> list[Any]:
    """The run's training images as ``TrainingRecord``s with local paths (fetched if remote),
    after restoring the checkpoints an earlier attempt published; logs what it found."""
    from generation.conditional.data import TrainingRecord

    images = training_images(ctx.run, fsts=fsts, diagnoses=diagnoses)
    if not images:
        raise ValueError(
            f"no training images with FST in {list(fsts)} and diagnosis in {list(diagnoses)}"
        )
    paths = storage.media().fetch_many((image.file, image.sha256 or None) for image in images)
    records = [
        TrainingRecord(path=path, fst=image.fst, diagnosis=image.diagnosis)
        for image, path in zip(images, paths, strict=True)
    ]
    restored = restore_checkpoints(ctx.workdir / "checkpoints")
    if restored:
        ctx.log(f"fetched {len(restored)} checkpoint(s) of an earlier attempt from the storage")
    ctx.log(
        f"training on {len(records)} images from {ctx.run.datasets.count()} dataset(s), "
        f"device {ctx.device}"
    )
    return records


def register_training_outputs(
    ctx: Any,
    summary: dict[str, Any],
    *,
    checkpoint: Path | None,
    model: Path | None,
    stopped: bool,
    final_step: int,
    total_steps: int,
    final_loss: float | None,
) -> dict[str, Any]:
    """Record a training's last checkpoint and model as artifacts; return the run's result.

    A stopped training (cancelled, timed out) keeps its checkpoint and gets ``stopped``.
    """
    if checkpoint is not None:
        register_artifact(ctx.run, "last-checkpoint", Artifact.Kind.CHECKPOINT, checkpoint)
    if stopped or model is None:
        return {**summary, "stopped": True}
    artifact = register_artifact(ctx.run, "model", Artifact.Kind.MODEL, model)
    ctx.progress(final_step, total_steps, final_loss)
    return {**summary, "model": artifact.path, "model_sha256": artifact.sha256}


def training_summary(result: Any, training_images: int) -> dict[str, Any]:
    """The part of a training run's result that every training kind reports."""
    return {
        "final_step": result.final_step,
        "total_steps": result.total_steps,
        "final_loss": result.final_loss,
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 1),
        "training_images": training_images,
    }
