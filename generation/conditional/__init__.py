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
