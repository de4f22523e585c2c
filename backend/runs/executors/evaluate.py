"""Executor of ``evaluate`` runs: a real split and a synthetic set in, quality metrics out.

Inputs (checked at launch in ``builtin_kinds``):

* the real reference: the run's real datasets, restricted to ``config.real_split``;
* the synthetic set: the run's synthetic datasets and the sets its ``generate`` parents made;
* the memorization audit's training images: those the synthetic set's model was trained on
  (generate run -> train run -> its train split), else the real datasets' train split.

The results JSON goes to ``Run.result`` (trimmed) and to the ``metrics`` report artifact
(complete); flagged memorization pairs are saved side by side as the ``memorization-pairs``
artifact. Features are cached under ``ARTIFACTS_ROOT/metrics-cache``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings

from backend import storage
from backend.datasets.models import Dataset, Image, Origin
from backend.runs.execution import RunContext, RunStopped
from backend.runs.executors.common import register_artifact, training_images
from backend.runs.models import Artifact, Run
from validation.files import atomic_write_text
from validation.metrics import ImageItem, MetricsConfig, evaluate, write_pair_images

#: Flagged pairs kept in ``Run.result`` (all are in the report artifact).
MAX_PAIRS_IN_RESULT = 50


def synthetic_datasets(run: Run) -> list[Dataset]:
    sets = list(run.datasets.filter(origin=Origin.SYNTHETIC))
    for parent in run.parents.filter(kind=Run.Kind.GENERATE):
        sets += list(parent.generated_datasets.all())
    return sets


def real_images(run: Run, split: str) -> list[Image]:
    images = Image.objects.filter(
        dataset__in=run.datasets.filter(origin=Origin.REAL), origin=Origin.REAL
    )
    if split != "all":
        images = images.filter(split=split)
    return list(images.select_related("dataset").order_by("dataset_id", "id"))


def training_reference(run: Run, synthetic: list[Dataset]) -> tuple[list[Image], str]:
    """The training images behind the synthetic set, and where they came from."""
    for dataset in synthetic:
        generator = dataset.generated_by
        model_run = (
            generator.parents.filter(
                kind__in=(Run.Kind.TRAIN_CONDITIONAL, Run.Kind.TRAIN_LORA)
            ).first()
            if generator
            else None
        )
        if model_run is not None:
            try:
                return training_images(model_run), f"training images of run #{model_run.pk}"
            except PermissionError:
                continue
    images = Image.objects.filter(
        dataset__in=run.datasets.filter(origin=Origin.REAL), origin=Origin.REAL
    ).exclude(split__in=[Image.Split.VAL, Image.Split.TEST])
    return list(
        images.select_related("dataset").order_by("dataset_id", "id")
    ), "train split of the real datasets"


def _items(images: list[Image]) -> list[ImageItem]:
    """The images as metric inputs, with local paths (fetched first where files are remote)."""
    paths = storage.media().fetch_many((image.file, image.sha256 or None) for image in images)
    return [
        ImageItem(
            path=path,
            fst=image.fst,
            diagnosis=image.diagnosis or None,
            sha256=image.sha256,
            key=f"{image.dataset.name}/{image.image_id}",
        )
        for image, path in zip(images, paths, strict=True)
    ]


def execute(ctx: RunContext, config: MetricsConfig) -> dict[str, Any]:
    run = ctx.run
    synthetic_sets = synthetic_datasets(run)
    synthetic = list(
        Image.objects.filter(dataset__in=synthetic_sets)
        .select_related("dataset")
        .order_by("dataset_id", "id")
    )
    real = real_images(run, config.real_split)
    real_names = ", ".join(d.name for d in run.datasets.filter(origin=Origin.REAL))
    if not real:
        raise ValueError(
            f"real_split: no real images in split {config.real_split!r} of {real_names}; pick another split or 'all'"
        )
    if not synthetic:
        raise ValueError("synthetic: the synthetic set has no images")
    train, train_source = (
        training_reference(run, synthetic_sets) if "memorization" in config.metrics else ([], "")
    )
    ctx.log(
        f"evaluating {len(synthetic)} synthetic images ({', '.join(d.name for d in synthetic_sets)}) against "
        f"{len(real)} real images ({real_names}, split {config.real_split}); metrics {', '.join(config.metrics)}; device {ctx.device}"
    )
    if train:
        ctx.log(f"memorization audit against {len(train)} {train_source}")
    last_stage = [""]

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage != last_stage[0]:
            ctx.log(stage)
            last_stage[0] = stage
        ctx.progress(done, total)
        if ctx.should_stop():
            raise RunStopped("evaluation stopped")

    result = evaluate(
        _items(real),
        _items(synthetic),
        config,
        train=_items(train) if "memorization" in config.metrics else None,
        device=ctx.device,
        cache_dir=Path(settings.ARTIFACTS_ROOT) / "metrics-cache",
        real_label=f"{real_names} / {config.real_split}",
        on_progress=on_progress,
    )
    result["inputs"] = {
        "real": {"datasets": real_names, "split": config.real_split, "n": len(real)},
        "synthetic": {
            "datasets": [d.name for d in synthetic_sets],
            "dataset_ids": [d.pk for d in synthetic_sets],
            "n": len(synthetic),
        },
        "train": {"source": train_source, "n": len(train)},
    }
    pairs_dir = ctx.workdir / "memorization-pairs"
    if write_pair_images(result, pairs_dir, limit=MAX_PAIRS_IN_RESULT):
        register_artifact(run, "memorization-pairs", Artifact.Kind.IMAGES, pairs_dir)
    report = atomic_write_text(
        ctx.workdir / "metrics.json", json.dumps(result, indent=1, default=str)
    )
    register_artifact(run, "metrics", Artifact.Kind.REPORT, report)
    for row in result["summary"]:
        value = row["value"]
        ctx.log(
            f"{row['metric']}: {value if not isinstance(value, float) else round(value, 6)} ({row['weights']})"
        )
    return trimmed(result)


def trimmed(result: dict[str, Any]) -> dict[str, Any]:
    """The result without per-image lists that only the report artifact needs."""
    out = dict(result)
    if "lpips" in out:
        out["lpips"] = {k: v for k, v in out["lpips"].items() if k != "nearest_real"}
    if "memorization" in out:
        audit = dict(out["memorization"])
        audit["flagged"] = audit["flagged"][:MAX_PAIRS_IN_RESULT]
        out["memorization"] = audit
    return out
