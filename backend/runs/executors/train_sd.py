"""Executors of ``train-textual-inversion`` and ``train-lora`` runs on Stable Diffusion.

The base model (a hub id or folder in the config) is read from the worker's Hugging Face
cache; with ``HF_HUB_OFFLINE=1`` a model missing from the cache fails the run with a message
naming the cache folder. A LoRA run whose config says ``textual_inversion: "parent"`` uses the
tokens of its textual-inversion parent run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from backend.runs.execution import RunContext
from backend.runs.executors.common import (
    prepare_training,
    register_training_outputs,
    restore_checkpoints,
    training_summary,
)
from backend.runs.executors.train_conditional import RunCallbacks
from backend.runs.models import Run
from generation.sd_finetune.config import LoraTrainingConfig, TextualInversionConfig

#: ``LoraTrainingConfig.textual_inversion`` value meaning "the tokens of my parent run".
FROM_PARENT = "parent"


def _summary(result: Any, records: list[Any]) -> dict[str, Any]:
    return {
        **training_summary(result, len(records)),
        "base_model": result.base_model,
        # Results of the offline test kit are never results of Stable Diffusion.
        "standin_weights": bool(result.base_model.get("standin")),
    }


def _finish(ctx: RunContext, result: Any, summary: dict[str, Any]) -> dict[str, Any]:
    return register_training_outputs(
        ctx,
        summary,
        checkpoint=result.checkpoint_path,
        model=result.output_path,
        stopped=result.stopped,
        final_step=result.final_step,
        total_steps=result.total_steps,
        final_loss=result.final_loss,
    )


def execute_textual_inversion(ctx: RunContext, config: TextualInversionConfig) -> dict[str, Any]:
    from generation.sd_finetune.textual_inversion import learned_tokens, train_textual_inversion

    records = prepare_training(ctx, fsts=config.fsts, diagnoses=config.diagnoses)
    result = train_textual_inversion(
        config, records, ctx.workdir, device=ctx.device, callbacks=RunCallbacks(ctx)
    )
    summary = _summary(result, records)
    if result.output_path is not None:
        summary["tokens"] = list(learned_tokens(result.output_path))
    return _finish(ctx, result, summary)


def execute_lora(ctx: RunContext, config: LoraTrainingConfig) -> dict[str, Any]:
    from generation.sd_finetune.lora import train_lora

    if config.textual_inversion == FROM_PARENT:
        parent = ctx.run.parents.filter(kind=Run.Kind.TRAIN_TEXTUAL_INVERSION).first()
        if parent is None:
            raise ValueError(
                'textual_inversion: "parent" but the run has no textual-inversion parent'
            )
        tokens = parent.artifacts.get(name="model").fetch()
        config = dataclasses.replace(config, textual_inversion=str(tokens))
    records = prepare_training(ctx, fsts=config.fsts, diagnoses=config.diagnoses)
    if config.adapters == "per_fst":  # one adapter (and checkpoint folder) per skin type
        for fst in config.fsts:
            restore_checkpoints(ctx.workdir / f"fst{fst}" / "checkpoints")
    datasets = ", ".join(sorted(d.name for d in ctx.run.datasets.all()))
    result = train_lora(
        config,
        records,
        ctx.workdir,
        device=ctx.device,
        callbacks=RunCallbacks(ctx),
        dataset=f"run #{ctx.run.pk}: {datasets}",
    )
    return _finish(ctx, result, _summary(result, records))
