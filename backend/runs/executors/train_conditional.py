"""Executor of ``train-conditional`` runs: dataset rows in, a trained pipeline artifact out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL.Image import Image as PILImage

from backend.runs.execution import RunContext
from backend.runs.executors.common import (
    prepare_training,
    publish_checkpoint,
    register_training_outputs,
    training_summary,
)
from generation.conditional import (
    ConditionalDiffusionConfig,
    TrainingCallback,
    train_conditional,
)


class RunCallbacks(TrainingCallback):
    """Forwards training progress to the run's row; stops when the run is cancelled."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def on_step(self, step: int, total_steps: int, loss: float, info: dict[str, Any]) -> None:
        self.ctx.progress(step, total_steps, loss)

    def on_checkpoint(self, step: int, path: Path) -> None:
        publish_checkpoint(path)
        self.ctx.log(f"checkpoint at step {step}")

    def on_sample_grid(self, step: int, image: PILImage) -> None:
        self.ctx.save_sample_grid(image, step)

    def should_stop(self) -> bool:
        return self.ctx.should_stop()


def execute(ctx: RunContext, config: ConditionalDiffusionConfig) -> dict[str, Any]:
    records = prepare_training(ctx, fsts=config.fsts, diagnoses=config.diagnoses)
    result = train_conditional(
        config, records, ctx.workdir, device=ctx.device, callbacks=RunCallbacks(ctx)
    )
    summary = training_summary(result, len(records))
    return register_training_outputs(
        ctx,
        summary,
        checkpoint=result.checkpoint_path,
        model=result.model_path,
        stopped=result.stopped,
        final_step=result.final_step,
        total_steps=result.total_steps,
        final_loss=result.final_loss,
    )
