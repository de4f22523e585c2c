"""Train the FST × diagnosis conditional diffusion model from scratch, resumably.

``train_conditional`` is a plain function over small parts (dataset, UNet, EMA, optimiser,
batch sampler, loss reweighter); progress, checkpoints, sample grids and cancellation go
through a ``TrainingCallback``. It draws all its randomness from seeded private generators,
so a run resumed from a checkpoint ends with the same weights as an uninterrupted one (on the
same device and thread count).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from PIL import Image

from generation.conditional.balancing import (
    BalancedBatchSampler,
    LossReweighter,
    cell_counts,
    cell_sampling_weights,
    diversity_loss,
    rarity_weights,
)
from generation.conditional.checkpoints import (
    CONFIG_NAME,
    check_resumable,
    checkpoint_path,
    is_complete,
    latest_complete_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from generation.conditional.config import ConditionalDiffusionConfig
from generation.conditional.data import LesionImageDataset, TrainingRecord
from generation.conditional.model import LabelCodec, build_unet
from generation.conditional.pipeline import ConditionalLesionPipeline
from generation.conditional.sampling import render_sample_grid
from validation.files import atomic_directory, atomic_write_text, sweep_temp_files

logger = logging.getLogger(__name__)

#: Keep decoded training images in memory when they fit in this many bytes.
CACHE_LIMIT_BYTES = 2 << 30


class TrainingCallback:
    """Hooks of ``train_conditional``; subclass and override what you need (all no-ops here).

    ``should_stop`` is polled before every step; returning ``True`` makes the run write a
    checkpoint and return with ``stopped=True`` (cancellation, soft time limits). It is called
    every step, so keep it cheap (cache a database flag for a few seconds).
    """

    def on_step(self, step: int, total_steps: int, loss: float, info: dict[str, Any]) -> None:
        """After each optimiser step; ``info`` holds loss parts, lr, grad norm, timings."""

    def on_checkpoint(self, step: int, path: Path) -> None:
        """After a complete checkpoint is in place."""

    def on_sample_grid(self, step: int, image: Image.Image) -> None:
        """A fixed-seed EMA sample grid: rows FSTs, columns diagnoses."""

    def should_stop(self) -> bool:
        """Return ``True`` to checkpoint and stop."""
        return False


@dataclass
class TrainingResult:
    """What ``train_conditional`` did.

    Args:
        final_step (`int`): Optimiser steps completed in total.
        total_steps (`int`): ``config.train_steps``.
        stopped (`bool`): ``should_stop`` ended the run early.
        model_path (`Path` or `None`): The exported pipeline folder (``None`` when stopped).
        checkpoint_path (`Path` or `None`): The newest checkpoint.
        resumed_from (`int` or `None`): Step of the checkpoint the run resumed from.
        loss_history (`list[tuple[int, float]]`): ``(step, mean loss of the window ending there)``.
        final_loss (`float` or `None`): Mean loss of the last window.
        seconds (`float`): Wall time of this call.
    """

    final_step: int
    total_steps: int
    stopped: bool
    model_path: Path | None
    checkpoint_path: Path | None
    resumed_from: int | None
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    final_loss: float | None = None
    seconds: float = 0.0


def _derived_seed(seed: int, offset: int) -> int:
    return (seed + offset) % 2**63


def make_noise_scheduler(config: ConditionalDiffusionConfig) -> DDPMScheduler:
    """The training ``DDPMScheduler`` of ``config`` (schedule and prediction type).

    Args:
        config (`ConditionalDiffusionConfig`): The run configuration.
    """
    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=True,
    )


def predicted_clean_image(
    scheduler: DDPMScheduler,
    model_output: torch.Tensor,
    noisy: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """``x0_hat`` from a v- or epsilon-prediction: ``sqrt(a) x_t - sqrt(1-a) v`` or ``(x_t - sqrt(1-a) eps) / sqrt(a)``.

    Args:
        scheduler (`DDPMScheduler`): Gives ``alphas_cumprod`` (``a``) and the prediction type.
        model_output (`torch.Tensor`): The UNet output.
        noisy (`torch.Tensor`): ``x_t``.
        timesteps (`torch.Tensor`): ``t`` per sample.
    """
    alphas = scheduler.alphas_cumprod.to(noisy.device, noisy.dtype)[timesteps].view(-1, 1, 1, 1)
    if scheduler.config.prediction_type == "v_prediction":
        return alphas.sqrt() * noisy - (1 - alphas).sqrt() * model_output
    return (noisy - (1 - alphas).sqrt() * model_output) / alphas.sqrt()


def _training_step(
    *,
    config: ConditionalDiffusionConfig,
    unet: UNet2DModel,
    ema: EMAModel,
    optimizer: torch.optim.Optimizer,
    scheduler: DDPMScheduler,
    reweighter: LossReweighter,
    diversity_weights: torch.Tensor,
    codec: LabelCodec,
    images: torch.Tensor,
    cells: torch.Tensor,
    generator: torch.Generator,
    step: int,
) -> tuple[float, dict[str, Any]]:
    """One optimiser step; ``step`` counts this step. Returns (total loss, info)."""
    device = images.device
    batch = images.shape[0]
    noise = torch.randn(images.shape, generator=generator).to(device)
    timesteps = torch.randint(0, config.num_train_timesteps, (batch,), generator=generator)
    dropped = torch.rand(batch, generator=generator) < config.cond_drop_prob
    timesteps, dropped = timesteps.to(device), dropped.to(device)
    labels = torch.where(dropped, torch.full_like(cells, codec.null_index), cells)

    noisy = scheduler.add_noise(images, noise, timesteps)
    if config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(images, noise, timesteps)
    else:
        target = noise
    with torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=config.mixed_precision == "bf16"
    ):
        output = unet(noisy, timesteps, class_labels=labels).sample
    per_sample = ((output.float() - target.float()) ** 2).flatten(1).mean(dim=1)
    diffusion = (reweighter.sample_weights(cells) * per_sample).mean()
    loss = diffusion
    diversity_value = 0.0
    balancing = config.balancing
    if balancing.diversity and balancing.diversity_weight > 0:
        x0_hat = predicted_clean_image(scheduler, output.float(), noisy, timesteps)
        max_t = balancing.diversity_max_timestep * (config.num_train_timesteps - 1)
        eligible = (~dropped) & (timesteps <= max_t)
        diversity = diversity_loss(
            x0_hat, images, cells, eligible, diversity_weights, balancing.diversity_target_ratio
        )
        loss = loss + balancing.diversity_weight * diversity
        diversity_value = float(diversity.detach())

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(unet.parameters(), config.max_grad_norm)
    optimizer.step()
    ema.step(unet.parameters())
    reweighter.observe(cells, per_sample.detach(), step)
    info = {
        "diffusion_loss": float(diffusion.detach()),
        "unweighted_loss": float(per_sample.detach().mean()),
        "diversity_loss": diversity_value,
        "grad_norm": float(grad_norm),
        "lr": optimizer.param_groups[0]["lr"],
        "ema_decay": float(ema.cur_decay_value or 0.0),
    }
    return float(loss.detach()), info


def _sampling_pipeline(
    config: ConditionalDiffusionConfig,
    unet: UNet2DModel,
    ema: EMAModel,
    scheduler: DDPMScheduler,
    holder: dict[str, UNet2DModel],
) -> ConditionalLesionPipeline:
    """A pipeline over a separate UNet holding the current EMA weights."""
    if "unet" not in holder:
        holder["unet"] = UNet2DModel.from_config(unet.config).to(unet.device)
        holder["unet"].eval()
    ema.copy_to(holder["unet"].parameters())
    pipeline = ConditionalLesionPipeline(
        unet=holder["unet"],
        scheduler=scheduler,
        fsts=list(config.fsts),
        diagnoses=list(config.diagnoses),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def export_pipeline(
    pipeline: ConditionalLesionPipeline, config: ConditionalDiffusionConfig, target: Path
) -> Path:
    """Save ``pipeline`` plus ``fairderm_config.json`` atomically at ``target`` (replacing it).

    Args:
        pipeline (`ConditionalLesionPipeline`): The model to export (EMA weights).
        config (`ConditionalDiffusionConfig`): Written beside it.
        target (`Path`): The folder, e.g. ``output_dir/model``.
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.replaced-{os.getpid()}-{time.time_ns()}.tmp")
        target.rename(old)
    with atomic_directory(target) as tmp:
        pipeline.save_pretrained(tmp)
        atomic_write_text(tmp / CONFIG_NAME, config.to_json())
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def train_conditional(
    config: ConditionalDiffusionConfig,
    records: Sequence[TrainingRecord],
    output_dir: str | os.PathLike[str],
    *,
    device: str = "cpu",
    callbacks: TrainingCallback | None = None,
    resume: bool = True,
) -> TrainingResult:
    """Train the conditional model and export its EMA weights as a pipeline.

    Writes ``output_dir/checkpoints/step-XXXXXXX/`` every ``config.checkpoint_every`` steps
    (and at the last step, and when stopped), keeping the newest ``config.keep_checkpoints``,
    and on completion ``output_dir/model/`` (``ConditionalLesionPipeline.save_pretrained``
    plus ``fairderm_config.json``).

    Args:
        config (`ConditionalDiffusionConfig`): The run.
        records (`Sequence[TrainingRecord]`): Training images; every label must be in the config.
        output_dir (`str` or `os.PathLike`): The run folder.
        device (`str`, *optional*, defaults to `"cpu"`): Torch device, e.g. ``"cuda"``.
        callbacks (`TrainingCallback`, *optional*): Progress, checkpoint, grid and stop hooks.
        resume (`bool`, *optional*, defaults to `True`):
            Continue from the newest complete checkpoint in ``output_dir`` (broken newer ones
            are skipped). With ``False`` the folder must not hold checkpoints yet.

    Returns:
        A ``TrainingResult``.
    """
    started = time.perf_counter()
    if not isinstance(config, ConditionalDiffusionConfig):
        raise ValueError(
            f"config: expected a ConditionalDiffusionConfig, got {type(config).__name__}"
        )
    callbacks = callbacks if callbacks is not None else TrainingCallback()
    output_dir = Path(output_dir)
    checkpoint_root = output_dir / "checkpoints"
    torch_device = torch.device(device)
    codec = LabelCodec.from_config(config)

    records = list(records)
    generator = torch.Generator().manual_seed(_derived_seed(config.seed, 1))
    bytes_needed = len(records) * 3 * config.image_size**2 * 4
    dataset = LesionImageDataset(
        records,
        config.image_size,
        codec,
        random_flip=config.random_flip,
        random_rotate90=config.random_rotate90,
        generator=generator,
        cache=bytes_needed <= CACHE_LIMIT_BYTES,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(output_dir)

    unet = build_unet(config).to(torch_device)
    unet.train()
    ema = EMAModel(
        unet.parameters(), decay=config.ema_decay, model_cls=UNet2DModel, model_config=unet.config
    )
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = make_noise_scheduler(config)
    counts = cell_counts(dataset.cells, codec.num_cells)
    sampler = BalancedBatchSampler(
        cell_sampling_weights(dataset.cells, codec, config.balancing),
        config.batch_size,
        seed=_derived_seed(config.seed, 2),
    )
    reweighter = LossReweighter(counts, config.balancing)
    diversity_weights = rarity_weights(counts, config.balancing.diversity_rarity_power)

    step, resumed_from = 0, None
    history: list[tuple[int, float]] = []
    window = [0.0, 0]
    latest = latest_complete_checkpoint(checkpoint_root)
    if latest is not None and not resume:
        raise ValueError(
            f"output_dir: {output_dir} already holds checkpoints; pass resume=True or use a new folder"
        )
    if latest is not None:
        saved = ConditionalDiffusionConfig.from_json(
            (latest / CONFIG_NAME).read_text(encoding="utf-8")
        )
        check_resumable(saved, config)
        state = load_checkpoint(
            latest,
            unet=unet,
            ema=ema,
            optimizer=optimizer,
            sampler=sampler,
            generator=generator,
            reweighter=reweighter,
            device=torch_device,
        )
        step = resumed_from = int(state["step"])
        history = [(int(s), float(v)) for s, v in state["loss_history"]]
        window = [float(state["loss_window"][0]), int(state["loss_window"][1])]
        logger.info("Resuming %s from step %d", output_dir, step)
        if step > config.train_steps:
            logger.warning(
                "Checkpoint step %d is past train_steps %d; exporting it as is",
                step,
                config.train_steps,
            )
    else:
        logger.info(
            "Training %s: %d params, %d records in %d cells, %d steps on %s",
            output_dir,
            sum(p.numel() for p in unet.parameters()),
            len(dataset),
            sum(1 for n in counts if n > 0),
            config.train_steps,
            torch_device,
        )

    sampling_holder: dict[str, UNet2DModel] = {}

    def write_checkpoint() -> Path:
        path = save_checkpoint(
            checkpoint_root,
            step,
            config=config,
            unet=unet,
            ema=ema,
            optimizer=optimizer,
            sampler=sampler,
            generator=generator,
            reweighter=reweighter,
            trainer_state={"loss_history": history, "loss_window": window},
        )
        prune_checkpoints(checkpoint_root, config.keep_checkpoints)
        callbacks.on_checkpoint(step, path)
        return path

    stopped = False
    loop_start, loop_first_step = time.perf_counter(), step
    while step < config.train_steps:
        if callbacks.should_stop():
            stopped = True
            break
        indices = sampler.draw()
        pairs = [dataset[i] for i in indices]
        images = torch.stack([image for image, _ in pairs]).to(torch_device)
        cells = torch.tensor([cell for _, cell in pairs], dtype=torch.long, device=torch_device)
        loss, info = _training_step(
            config=config,
            unet=unet,
            ema=ema,
            optimizer=optimizer,
            scheduler=scheduler,
            reweighter=reweighter,
            diversity_weights=diversity_weights,
            codec=codec,
            images=images,
            cells=cells,
            generator=generator,
            step=step + 1,
        )
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {step + 1}")
        step += 1
        window[0] += loss
        window[1] += 1
        if step % config.log_every == 0 or step == config.train_steps:
            history.append((step, window[0] / window[1]))
            window = [0.0, 0]
            logger.info("step %d/%d loss %.4f", step, config.train_steps, history[-1][1])
        elapsed = time.perf_counter() - loop_start
        info["seconds_per_step"] = elapsed / (step - loop_first_step)
        info["eta_seconds"] = info["seconds_per_step"] * (config.train_steps - step)
        info["cell_weights"] = list(reweighter.weights)
        callbacks.on_step(step, config.train_steps, loss, info)
        if step % config.checkpoint_every == 0 or step == config.train_steps:
            write_checkpoint()
        if config.sample_every and step % config.sample_every == 0:
            pipeline = _sampling_pipeline(config, unet, ema, scheduler, sampling_holder)
            grid = render_sample_grid(
                pipeline,
                seed=config.seed,
                guidance_scale=config.guidance_scale,
                num_inference_steps=config.num_inference_steps,
                sampler=config.sampler,
            )
            callbacks.on_sample_grid(step, grid)

    newest = checkpoint_path(checkpoint_root, step)
    if step > 0 and not is_complete(newest, verify=False):
        newest = write_checkpoint()
    final_checkpoint = newest if step > 0 else None
    model_path = None
    if not stopped:
        pipeline = _sampling_pipeline(config, unet, ema, scheduler, sampling_holder)
        model_path = export_pipeline(pipeline, config, output_dir / "model")
        logger.info("Exported the EMA model to %s", model_path)
    else:
        logger.info("Stopped at step %d of %d", step, config.train_steps)
    return TrainingResult(
        final_step=step,
        total_steps=config.train_steps,
        stopped=stopped,
        model_path=model_path,
        checkpoint_path=final_checkpoint,
        resumed_from=resumed_from,
        loss_history=history,
        final_loss=history[-1][1] if history else None,
        seconds=time.perf_counter() - started,
    )
