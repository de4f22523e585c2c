"""FST × diagnosis class-conditional diffusion, trained from scratch with FairSkin-style balancing.

The embedded default model of FairDerm: it needs no pretrained weights. A diffusers
``UNet2DModel`` with one class embedding per (Fitzpatrick skin type, diagnosis) cell plus a null
class for classifier-free guidance, trained with v-prediction, EMA and three balancing levels
(``balancing``), checkpointed atomically and resumably (``checkpoints``), and exported as a
``ConditionalLesionPipeline``.

Typical use::

    config = ConditionalDiffusionConfig.preset("cpu-demo-32px", diagnoses=("nevus", "melanoma"))
    result = train_conditional(config, records, run_dir, callbacks=my_callbacks)
    sampler = ConditionalPipelineSampler.from_pretrained(result.model_path)
    images = generate_images(sampler, balanced_plan(range(1, 7), config.diagnoses, 50, 0), ...)
"""

import importlib
from typing import TYPE_CHECKING, Any

# The public API is imported lazily (PEP 562): ``generation.conditional.config`` must stay
# importable without torch and diffusers, because the web process validates run configs with
# it and should not pay for (or hold) the ML stack.
_EXPORTS: dict[str, str] = {
    "BalancedBatchSampler": "generation.conditional.balancing",
    "BalancingConfig": "generation.conditional.config",
    "ConditionalDiffusionConfig": "generation.conditional.config",
    "ConditionalLesionPipeline": "generation.conditional.pipeline",
    "ConditionalPipelineSampler": "generation.conditional.sampling",
    "DEFAULT_DIAGNOSES": "generation.conditional.config",
    "LabelCodec": "generation.conditional.model",
    "LesionImageDataset": "generation.conditional.data",
    "LossReweighter": "generation.conditional.balancing",
    "TrainingCallback": "generation.conditional.training",
    "TrainingRecord": "generation.conditional.data",
    "TrainingResult": "generation.conditional.training",
    "build_unet": "generation.conditional.model",
    "cell_counts": "generation.conditional.balancing",
    "cell_sampling_weights": "generation.conditional.balancing",
    "diversity_loss": "generation.conditional.balancing",
    "export_pipeline": "generation.conditional.training",
    "is_complete": "generation.conditional.checkpoints",
    "latest_complete_checkpoint": "generation.conditional.checkpoints",
    "list_checkpoints": "generation.conditional.checkpoints",
    "load_model_config": "generation.conditional.sampling",
    "load_training_image": "generation.conditional.data",
    "make_noise_scheduler": "generation.conditional.training",
    "predicted_clean_image": "generation.conditional.training",
    "rarity_weights": "generation.conditional.balancing",
    "render_sample_grid": "generation.conditional.sampling",
    "train_conditional": "generation.conditional.training",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from generation.conditional.balancing import (
        BalancedBatchSampler,
        LossReweighter,
        cell_counts,
        cell_sampling_weights,
        diversity_loss,
        rarity_weights,
    )
    from generation.conditional.checkpoints import (
        is_complete,
        latest_complete_checkpoint,
        list_checkpoints,
    )
    from generation.conditional.config import (
        DEFAULT_DIAGNOSES,
        BalancingConfig,
        ConditionalDiffusionConfig,
    )
    from generation.conditional.data import LesionImageDataset, TrainingRecord, load_training_image
    from generation.conditional.model import LabelCodec, build_unet
    from generation.conditional.pipeline import ConditionalLesionPipeline
    from generation.conditional.sampling import (
        ConditionalPipelineSampler,
        load_model_config,
        render_sample_grid,
    )
    from generation.conditional.training import (
        TrainingCallback,
        TrainingResult,
        export_pipeline,
        make_noise_scheduler,
        predicted_clean_image,
        train_conditional,
    )

__all__ = [
    "DEFAULT_DIAGNOSES",
    "BalancedBatchSampler",
    "BalancingConfig",
    "ConditionalDiffusionConfig",
    "ConditionalLesionPipeline",
    "ConditionalPipelineSampler",
    "LabelCodec",
    "LesionImageDataset",
    "LossReweighter",
    "TrainingCallback",
    "TrainingRecord",
    "TrainingResult",
    "build_unet",
    "cell_counts",
    "cell_sampling_weights",
    "diversity_loss",
    "export_pipeline",
    "is_complete",
    "latest_complete_checkpoint",
    "list_checkpoints",
    "load_model_config",
    "load_training_image",
    "make_noise_scheduler",
    "predicted_clean_image",
    "rarity_weights",
    "render_sample_grid",
    "train_conditional",
]
