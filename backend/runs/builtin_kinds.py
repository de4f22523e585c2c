"""Registers the run kinds that FairDerm ships with (more arrive with later features)."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from backend.datasets.models import Dataset, Origin, TrainingSet
from backend.runs.kinds import RunKind, register
from backend.runs.models import Run
from generation.conditional.config import ConditionalDiffusionConfig
from generation.plans import GenerationConfig
from validation.metrics.config import MetricsConfig


def _refuse_locked(datasets: list[Dataset], purpose: str) -> None:
    locked = [d.name for d in datasets if d.role == Dataset.Role.EXTERNAL_TEST]
    if locked:
        raise ValidationError(
            {
                "datasets": f"{', '.join(locked)} is locked as an external test set: {purpose} may not read it"
            }
        )


def _check_training_inputs(
    datasets: list[Dataset], parents: list[Run], training_sets: list[TrainingSet]
) -> None:
    if not datasets and not training_sets:
        raise ValidationError(
            {"datasets": "a training run needs at least one dataset or training set"}
        )
    _refuse_locked(datasets, "training")


def _check_generation_inputs(
    datasets: list[Dataset], parents: list[Run], training_sets: list[TrainingSet]
) -> None:
    models = [p for p in parents if p.kind == Run.Kind.TRAIN_CONDITIONAL]
    if len(models) != 1:
        raise ValidationError(
            {"parents": "a generate run needs exactly one train-conditional parent run"}
        )
    if (
        models[0].status != Run.Status.SUCCEEDED
        or not models[0].artifacts.filter(name="model").exists()
    ):
        raise ValidationError(
            {"parents": f"run #{models[0].pk} has no trained model yet ({models[0].status})"}
        )
    # The reference counts that condition a generation plan may not come from a test set.
    _refuse_locked(datasets, "generation conditioning")


register(
    RunKind(
        kind=Run.Kind.TRAIN_CONDITIONAL,
        config_type=ConditionalDiffusionConfig,
        executor_path="backend.runs.executors.train_conditional.execute",
        uses_gpu=True,
        description="Train the FST x diagnosis conditional diffusion model from scratch (FairSkin balancing).",
        presets={
            name: (lambda name=name: ConditionalDiffusionConfig.preset(name))
            for name in ConditionalDiffusionConfig.PRESETS
        },
        check_inputs=_check_training_inputs,
    )
)

register(
    RunKind(
        kind=Run.Kind.GENERATE,
        config_type=GenerationConfig,
        executor_path="backend.runs.executors.generate.execute",
        uses_gpu=True,
        description="Generate an FST-balanced synthetic set from a trained conditional model.",
        presets={
            "10-per-cell": lambda: GenerationConfig(rule="per_cell", count=10),
            "10k-per-fst": lambda: GenerationConfig(
                rule="per_fst", count=10_000, spread="real", batch_size=256
            ),
            "fst-v-vi-to-25-percent": lambda: GenerationConfig(
                rule="fst_share", share=0.25, share_fsts=(5, 6)
            ),
            "30k-benign-30k-malignant": lambda: GenerationConfig(
                rule="per_malignancy", count=30_000, batch_size=256
            ),
        },
        check_inputs=_check_generation_inputs,
    )
)


def _check_evaluation_inputs(
    datasets: list[Dataset], parents: list[Run], training_sets: list[TrainingSet]
) -> None:
    """An evaluate run compares a synthetic set (datasets or generate parents) with real data."""
    if training_sets:
        raise ValidationError(
            {"training_sets": "an evaluate run takes datasets and generate runs, not training sets"}
        )
    if not any(d.origin == Origin.REAL for d in datasets):
        raise ValidationError(
            {"datasets": "an evaluate run needs at least one real dataset as the reference"}
        )
    others = [p for p in parents if p.kind != Run.Kind.GENERATE]
    if others:
        raise ValidationError(
            {"parents": f"run #{others[0].pk} is a {others[0].kind} run; give generate runs"}
        )
    for parent in parents:
        if parent.status != Run.Status.SUCCEEDED or not parent.generated_datasets.exists():
            raise ValidationError(
                {"parents": f"run #{parent.pk} has no synthetic set yet ({parent.status})"}
            )
    if not parents and not any(d.origin == Origin.SYNTHETIC for d in datasets):
        raise ValidationError(
            {
                "datasets": "an evaluate run needs a synthetic set: a synthetic dataset or a generate parent run"
            }
        )


register(
    RunKind(
        kind=Run.Kind.EVALUATE,
        config_type=MetricsConfig,
        executor_path="backend.runs.executors.evaluate.execute",
        uses_gpu=True,
        description="Quality metrics of a synthetic set against a real split: FID, KID, IS, LPIPS, tone fidelity, memorization.",
        presets={
            name: (lambda name=name: MetricsConfig.preset(name)) for name in MetricsConfig.PRESETS
        },
        check_inputs=_check_evaluation_inputs,
    )
)
