"""Executor of ``downstream`` runs: baseline vs synthetic-augmented classifiers, locked test.

Inputs of a run:
- real training datasets (role ``training``, split into train/val/test): the train split
  trains, the val split selects models and the operating point, the test split is only
  checked for shared lesions;
- synthetic datasets, given directly or through ``generate`` parent runs, each made by a
  model trained on training data only (``check_synthetic_provenance``);
- exactly one dataset locked as an external test set, read only through
  ``locked_test_set``, whose images the library opens after every classifier is trained.

The experiment itself is ``validation.downstream.experiment.run_experiment``. From the CLI::

    python manage.py launch downstream --preset cpu-demo-32px --dataset <real id> \
        --dataset <locked test id> --parent <generate run id> --wait
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.exceptions import ValidationError

from backend import storage
from backend.datasets.models import Dataset, Image, Origin
from backend.runs.downstream_inputs import check_inputs, input_datasets
from backend.runs.execution import RunContext
from backend.runs.executors.common import code_version, register_artifact
from backend.runs.models import Artifact, Run
from validation.downstream.config import ExperimentConfig
from validation.downstream.data import LockedTestSet, Sample
from validation.downstream.experiment import run_experiment
from validation.downstream.report import evidence, summary
from validation.files import atomic_write_text

SPLIT_NAMES = {Image.Split.TRAIN: "train", Image.Split.VAL: "val", Image.Split.TEST: "test"}


# --- Samples ------------------------------------------------------------------------------


def _samples(images: list[Image], split: str | None = None, locked: bool = False) -> list[Sample]:
    paths = storage.media().fetch_many((image.file, image.sha256 or None) for image in images)
    samples = []
    for image, path in zip(images, paths, strict=True):
        fst_range = (
            (image.fst_min, image.fst_max)
            if image.fst is None and image.fst_min is not None and image.fst_max is not None
            else None
        )
        samples.append(
            Sample(
                key=f"{image.dataset.name}/{image.image_id}",
                path=path,
                diagnosis=image.diagnosis,
                malignant=bool(image.malignant),
                fst=image.fst,
                fst_range=fst_range,
                origin=image.origin,
                split=split or SPLIT_NAMES[image.split],
                source=image.dataset.name,
                lesion_id=image.lesion_id,
                patient_id=image.patient_id,
                sha256=image.sha256,
                locked=locked,
            )
        )
    return samples


def labelled(images: Any) -> Any:
    """Images with a benign/malignant label (the binary target needs one)."""
    return (
        images.filter(malignant__isnull=False)
        .select_related("dataset")
        .order_by("dataset_id", "id")
    )


def training_samples(datasets: list[Dataset]) -> dict[str, list[Sample]]:
    """The real train, val and test splits of ``datasets`` as samples (files fetched).

    Raises ``PermissionError`` for a dataset locked as an external test set: this is the
    path training and model selection read, and it never reads one.
    """
    locked = sorted(d.name for d in datasets if d.role == Dataset.Role.EXTERNAL_TEST)
    if locked:
        raise PermissionError(
            f"datasets {locked} are locked as external test sets: no training or model "
            "selection may read them"
        )
    images = labelled(
        Image.objects.filter(dataset__in=datasets, origin=Origin.REAL).exclude(
            split=Image.Split.UNASSIGNED
        )
    )
    by_split: dict[str, list[Image]] = {"train": [], "val": [], "test": []}
    for image in images:
        by_split[SPLIT_NAMES[image.split]].append(image)
    return {split: _samples(rows) for split, rows in by_split.items()}


def synthetic_samples(datasets: list[Dataset]) -> list[Sample]:
    for dataset in datasets:
        if dataset.role == Dataset.Role.EXTERNAL_TEST:
            raise PermissionError(f"{dataset.name} is locked as an external test set")
    images = labelled(Image.objects.filter(dataset__in=datasets, origin=Origin.SYNTHETIC))
    return _samples(list(images), split="train")


def locked_test_set(run: Run) -> LockedTestSet:
    """The single accessor of a downstream run's external test set.

    Returns a ``LockedTestSet``: the rows are queried and the files fetched only when the
    experiment opens it, after every classifier is trained and selected.
    """
    dataset = run.datasets.get(role=Dataset.Role.EXTERNAL_TEST)

    def load() -> list[Sample]:
        return _samples(list(labelled(dataset.images.all())), split="external-test", locked=True)

    return LockedTestSet(dataset.name, load)


# --- Execution ----------------------------------------------------------------------------


def execute(ctx: RunContext, config: ExperimentConfig) -> dict[str, Any]:
    import torch

    run = ctx.run
    datasets, parents = list(run.datasets.all()), list(run.parents.all())
    real, synthetic, locked = input_datasets(datasets, parents)
    try:
        check_inputs(datasets, parents, list(run.training_sets.all()))
    except ValidationError as exc:
        raise ValueError("; ".join(m for ms in exc.message_dict.values() for m in ms)) from None
    if config.uses_synthetic and not synthetic:
        raise ValueError(
            "config: the strategies need synthetic images; add a synthetic dataset or a generate parent"
        )
    threads = int(os.environ.get("DOWNSTREAM_THREADS", "0"))
    if threads > 0:
        torch.set_num_threads(threads)
    splits = training_samples(real)
    pool = synthetic_samples(synthetic) if config.uses_synthetic else []
    ctx.log(
        f"train {len(splits['train'])} real + {len(pool)} synthetic available, val "
        f"{len(splits['val'])}; {len(config.arms)} arms x {len(config.seeds)} seeds on {ctx.device}"
    )
    last_message = [""]

    def on_progress(done: int, total: int, message: str) -> None:
        ctx.progress(done, total)
        arm = message.split(":", 1)[0]
        if arm != last_message[0]:
            ctx.log(f"training {arm}")
            last_message[0] = arm

    results = run_experiment(
        config,
        train=splits["train"],
        val=splits["val"],
        synthetic=pool,
        test_set=locked_test_set(run),
        internal_test=splits["test"],
        device=ctx.device,
        on_progress=on_progress,
        should_stop=ctx.should_stop,
    )
    if results.get("stopped"):
        return {"stopped": True}
    results["evidence"] = evidence(results["weights"], locked[0].format, len(config.seeds))
    results["inputs"] = {
        "training_datasets": [d.name for d in real],
        "synthetic_datasets": [d.name for d in synthetic],
        "external_test": locked[0].name,
        "external_test_format": locked[0].format,
    }
    results["config"] = config.to_dict()
    results["code_commit"] = code_version()
    outputs = ctx.workdir / "downstream"
    predictions = results.pop("predictions")
    atomic_write_text(outputs / "config.json", config.to_json())
    atomic_write_text(outputs / "results.json", json.dumps(results, sort_keys=True))
    atomic_write_text(outputs / "predictions.json", json.dumps(predictions))
    register_artifact(run, "results", Artifact.Kind.REPORT, outputs / "results.json")
    register_artifact(run, "predictions", Artifact.Kind.REPORT, outputs / "predictions.json")
    register_artifact(run, "experiment-config", Artifact.Kind.REPORT, outputs / "config.json")
    gate = results["go_no_go"]
    dark, light = gate["fst_v_vi_improvement"], gate["fst_i_iii_change"]
    if dark.get("available") and light.get("available"):
        ctx.log(
            f"FST V-VI AUROC {dark['relative']:+.1%} relative (target >= +10%), "
            f"FST I-III {light['relative']:+.1%} (target > -2%)"
        )
    return {
        **summary(results),
        "evidence": results["evidence"],
        "seconds": results["seconds"],
        "data": results["data"],
    }
