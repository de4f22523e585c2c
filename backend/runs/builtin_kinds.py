"""Registers the run kinds that FairDerm ships with (more arrive with later features)."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from backend.datasets.models import Dataset, Origin, TrainingSet
from backend.runs.downstream_inputs import check_inputs as check_downstream_inputs
from backend.runs.kinds import RunKind, register
from backend.runs.models import Run
from generation.conditional.config import ConditionalDiffusionConfig
from generation.fast_config import FastPathConfig
from generation.plans import GenerationConfig
from generation.sd_finetune.config import LoraTrainingConfig, TextualInversionConfig
from validation.downstream.config import ExperimentConfig
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
    models = [p for p in parents if p.kind in (Run.Kind.TRAIN_CONDITIONAL, Run.Kind.TRAIN_LORA)]
    if len(models) != 1:
        raise ValidationError(
            {
                "parents": "a generate run needs exactly one model: a train-conditional or "
                "train-lora parent run"
            }
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
        description="Generate an FST-balanced synthetic set from a trained conditional model or SD LoRA.",
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
            "sd-img2img-light-to-dark": lambda: GenerationConfig(
                rule="per_cell",
                count=100,
                fsts=(5, 6),
                mode="img2img",
                strength=0.6,
                guidance_scale=7.5,
                sampler="dpmsolver++",
                batch_size=16,
            ),
            # The fast path on a CUDA GPU (see docs/performance.md): bf16, channels_last,
            # compiled UNet with CUDA graphs, PNGs written on 8 threads.
            "sd-txt2img-fast-gpu": lambda: GenerationConfig(
                rule="per_cell",
                count=100,
                guidance_scale=7.5,
                sampler="dpmsolver++",
                num_inference_steps=25,
                batch_size=32,
                **{
                    name: value
                    for name, value in FastPathConfig.gpu().to_dict().items()
                    if name in GenerationConfig.FAST_FIELDS
                },
            ),
        },
        check_inputs=_check_generation_inputs,
    )
)

register(
    RunKind(
        kind=Run.Kind.TRAIN_TEXTUAL_INVERSION,
        config_type=TextualInversionConfig,
        executor_path="backend.runs.executors.train_sd.execute_textual_inversion",
        uses_gpu=True,
        description="Learn one Stable Diffusion token per FST x diagnosis (or FST, or FST group).",
        presets={
            "sd15-fst-diagnosis": lambda: TextualInversionConfig(
                base_model="runwayml/stable-diffusion-v1-5", train_steps=3000
            ),
            "sd15-fst-group": lambda: TextualInversionConfig(
                base_model="runwayml/stable-diffusion-v1-5",
                token_scheme="fst_group",
                train_steps=3000,
            ),
        },
        check_inputs=_check_training_inputs,
    )
)

register(
    RunKind(
        kind=Run.Kind.TRAIN_LORA,
        config_type=LoraTrainingConfig,
        executor_path="backend.runs.executors.train_sd.execute_lora",
        uses_gpu=True,
        description="LoRA-fine-tune Stable Diffusion on captions naming skin type and diagnosis.",
        presets={
            "sd15-rank8": lambda: LoraTrainingConfig(base_model="runwayml/stable-diffusion-v1-5"),
            "sd15-rank8-on-learned-tokens": lambda: LoraTrainingConfig(
                base_model="runwayml/stable-diffusion-v1-5",
                caption_template="dermoscopy image of {diagnosis} on {token} skin",
                textual_inversion="parent",
            ),
            "sd21-base-rank16-text-encoder": lambda: LoraTrainingConfig(
                base_model="stabilityai/stable-diffusion-2-1-base",
                rank=16,
                alpha=16,
                train_text_encoder=True,
            ),
        },
        check_inputs=_check_training_inputs,
    )
)

register(
    RunKind(
        kind=Run.Kind.DOWNSTREAM,
        config_type=ExperimentConfig,
        executor_path="backend.runs.executors.downstream.execute",
        uses_gpu=True,
        description=(
            "Baseline vs synthetic-augmented classifiers, evaluated per FST on a locked "
            "external test set (AUROC with CIs, EOD, calibration, go/no-go inputs)."
        ),
        presets={
            name: (lambda name=name: ExperimentConfig.preset(name))
            for name in ExperimentConfig.PRESETS
        },
        check_inputs=check_downstream_inputs,
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
