"""The loop both Stable Diffusion fine-tunings share: balanced batches, the denoising loss, mixed
precision, checkpoints and validation samples.

What trains differs (``textual_inversion``: new embedding rows; ``lora``: peft adapters), so each
method hands this loop its trainable parameters and a few hooks. Everything random is derived
from ``(config.seed, step)`` (the batch, the flips, the noise, the timesteps, dropout), so a run
resumed from a checkpoint takes exactly the steps an uninterrupted one would have taken.

Batches are FairSkin-style balanced: each image of a batch first draws a condition (FST x
diagnosis cell) uniformly, then an image of that cell, so rare skin types are seen as often as
common ones.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from PIL import Image

from generation.conditional.checkpoints import (
    CONFIG_NAME,
    MARKER,
    checkpoint_path,
    latest_complete_checkpoint,
    prune_checkpoints,
)
from generation.conditional.data import TrainingRecord
from generation.conditional.training import TrainingCallback
from generation.sd_finetune.config import SDTrainingConfig
from generation.stable_diffusion import load_sd_pipeline, pipeline_provenance
from validation.files import atomic_directory, atomic_write_text, sha256_file

logger = logging.getLogger(__name__)

DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TRAINABLE_FILE = "trainable.safetensors"
_STEP_SALT = 1_000_003


@dataclass
class SDTrainingResult:
    """What a fine-tuning run did.

    Args:
        final_step, total_steps (`int`): Steps done, steps asked for.
        stopped (`bool`): ``should_stop`` ended it early (a checkpoint was written).
        output_path (`Path` or `None`): The saved output folder (``None`` when stopped).
        checkpoint_path (`Path` or `None`): The newest complete checkpoint.
        resumed_from (`int` or `None`): The step it resumed from.
        final_loss (`float` or `None`): Mean loss of the last logged steps.
        loss_history (`list[float]`): Loss of every step (of this and earlier attempts).
        seconds (`float`): Wall time of this attempt.
        base_model (`dict`): Provenance of the base weights (``standin`` for the test kit).
    """

    final_step: int
    total_steps: int
    stopped: bool = False
    output_path: Path | None = None
    checkpoint_path: Path | None = None
    resumed_from: int | None = None
    final_loss: float | None = None
    loss_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    base_model: dict[str, Any] = field(default_factory=dict)


def step_seed(seed: int, step: int) -> int:
    """The seed of everything random in step ``step`` (0-based) of a run seeded ``seed``."""
    return (seed * _STEP_SALT + step) % (2**63 - 1)


def load_pipeline(config: SDTrainingConfig, device: str | torch.device) -> StableDiffusionPipeline:
    """The base pipeline, fp32, on ``device``, with the safety checker off (see the loader)."""
    return load_sd_pipeline(config.base_model, device=device)


def training_scheduler(pipe: StableDiffusionPipeline) -> DDPMScheduler:
    """A DDPM scheduler with the base model's noise schedule (for ``add_noise`` in training)."""
    return DDPMScheduler.from_config(pipe.scheduler.config)


class ImageCells:
    """Training images grouped by (FST, diagnosis) cell, drawn balanced and deterministically."""

    def __init__(self, records: Sequence[TrainingRecord], config: SDTrainingConfig):
        cells: dict[tuple[int, str], list[TrainingRecord]] = {}
        for record in records:
            if record.fst in config.fsts and record.diagnosis in config.diagnoses:
                cells.setdefault((int(record.fst), record.diagnosis), []).append(record)
        if not cells:
            raise ValueError(
                f"records: none with FST in {list(config.fsts)} and diagnosis in "
                f"{list(config.diagnoses)}"
            )
        self.cells = sorted(cells.items())
        self.resolution = config.resolution

    @property
    def conditions(self) -> list[tuple[int, str]]:
        return [key for key, _ in self.cells]

    def draw(self, batch_size: int, generator: torch.Generator) -> list[TrainingRecord]:
        cells = torch.randint(len(self.cells), (batch_size,), generator=generator).tolist()
        picked = []
        for cell in cells:
            members = self.cells[cell][1]
            picked.append(members[int(torch.randint(len(members), (1,), generator=generator))])
        return picked

    def pixels(self, records: Sequence[TrainingRecord], generator: torch.Generator) -> torch.Tensor:
        """A batch in [-1, 1], shape (B, 3, R, R): resized, centre-cropped, randomly flipped."""
        flips = torch.rand(len(records), generator=generator).tolist()
        arrays = []
        for record, flip in zip(records, flips, strict=True):
            with Image.open(record.path) as source:
                image = source.convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize(
                (self.resolution, self.resolution), Image.Resampling.BICUBIC
            )
            if flip < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            arrays.append(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def tokenize(pipe: StableDiffusionPipeline, captions: Sequence[str]) -> torch.Tensor:
    return pipe.tokenizer(
        list(captions),
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def diffusion_loss(
    pipe: StableDiffusionPipeline,
    scheduler: DDPMScheduler,
    pixels: torch.Tensor,
    encode: Callable[[], torch.Tensor],
    generator: torch.Generator,
    autocast: Any,
) -> torch.Tensor:
    """The standard latent-diffusion loss: MSE between the UNet's prediction and its target.

    ``encode()`` returns the states the UNet cross-attends to (the text encoder's output, plus
    any condition tokens). The target is the noise (``epsilon``) or the velocity
    (``v_prediction``), as the base model's scheduler config says. The loss is computed in
    fp32 whatever the autocast dtype.
    """
    device = pipe.unet.device
    with torch.no_grad():
        moments = pipe.vae.encode(pixels.to(device, pipe.vae.dtype)).latent_dist
        latents = moments.sample(generator) * pipe.vae.config.scaling_factor
    latents = latents.float()
    noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(device)
    timesteps = torch.randint(
        0,
        scheduler.config.num_train_timesteps,
        (latents.shape[0],),
        generator=generator,
        device=generator.device,
    ).to(device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    with autocast():
        hidden = encode()
        prediction = pipe.unet(noisy.to(pipe.unet.dtype), timesteps, hidden).sample
    return F.mse_loss(prediction.float(), target.float())


def sample_grid(
    pipe: StableDiffusionPipeline,
    prompts: Sequence[str],
    *,
    steps: int,
    seed: int,
    resolution: int,
    inputs: Callable[[Sequence[str]], dict[str, Any]] | None = None,
) -> Image.Image:
    """One image per prompt from the training modules themselves, side by side.

    ``inputs(prompts)`` gives the pipeline's text arguments (default ``{"prompt": prompts}``;
    condition embeddings pass ``prompt_embeds`` instead).
    """
    was_training = pipe.unet.training
    pipe.unet.eval()
    pipe.text_encoder.eval()
    try:
        generator = torch.Generator(device=pipe.unet.device).manual_seed(seed)
        with torch.no_grad():
            text = inputs(prompts) if inputs is not None else {"prompt": list(prompts)}
            images = pipe(
                **text,
                num_inference_steps=steps,
                generator=generator,
                height=resolution,
                width=resolution,
            ).images
    finally:
        if was_training:
            pipe.unet.train()
    grid = Image.new("RGB", (resolution * len(images), resolution))
    for column, image in enumerate(images):
        grid.paste(image, (column * resolution, 0))
    return grid


@dataclass
class Method:
    """What one fine-tuning method gives the shared loop.

    Args:
        parameters: The parameters the optimiser updates (fp32).
        caption: ``caption(record) -> str`` for a training image.
        after_step: Called after every optimiser step (textual inversion restores the old rows).
        state: ``state() -> {name: tensor}`` of everything trained, for checkpoints.
        load_state: Restores ``state()`` output in place.
        weight_decay: AdamW weight decay.
    """

    parameters: list[torch.nn.Parameter]
    caption: Callable[[TrainingRecord], str]
    after_step: Callable[[], None]
    state: Callable[[], dict[str, torch.Tensor]]
    load_state: Callable[[dict[str, torch.Tensor]], None]
    weight_decay: float = 1e-2
    #: ``encode(input_ids, records)``: the cross-attention states (default: the text encoder's).
    encode: Callable[[torch.Tensor, Sequence[TrainingRecord]], torch.Tensor] | None = None
    #: ``sample_inputs(prompts)``: the pipeline's text arguments for validation samples.
    sample_inputs: Callable[[Sequence[str]], dict[str, Any]] | None = None


def train_loop(
    config: SDTrainingConfig,
    pipe: StableDiffusionPipeline,
    method: Method,
    records: Sequence[TrainingRecord],
    output_dir: Path,
    *,
    callbacks: TrainingCallback | None = None,
    sample_prompts: Sequence[str] = (),
) -> SDTrainingResult:
    """Train ``method`` on ``records`` from the newest complete checkpoint in ``output_dir``.

    Returns before saving any final output: the caller saves it when not ``stopped``.
    """
    from safetensors.torch import load_file, save_file

    started = time.monotonic()
    callbacks = callbacks or TrainingCallback()
    device = pipe.unet.device
    cells = ImageCells(records, config)
    scheduler = training_scheduler(pipe)
    weight_dtype = DTYPES[config.mixed_precision]
    use_autocast = weight_dtype != torch.float32

    def autocast() -> Any:
        return torch.autocast(device_type=device.type, dtype=weight_dtype, enabled=use_autocast)

    scaler = torch.amp.GradScaler(
        "cuda", enabled=config.mixed_precision == "fp16" and device.type == "cuda"
    )
    optimizer = torch.optim.AdamW(
        method.parameters, lr=config.learning_rate, weight_decay=method.weight_decay
    )
    root = output_dir / "checkpoints"
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / CONFIG_NAME, config.to_json())
    history: list[float] = []
    step = 0
    resumed_from = None
    latest = latest_complete_checkpoint(root)
    if latest is not None:
        saved = json.loads((latest / CONFIG_NAME).read_text(encoding="utf-8"))
        _check_resumable(config, saved)
        method.load_state(load_file(latest / TRAINABLE_FILE, device=str(device)))
        optimizer.load_state_dict(
            torch.load(latest / "optimizer.pt", map_location=device, weights_only=True)
        )
        state = json.loads((latest / "trainer_state.json").read_text(encoding="utf-8"))
        step, history = int(state["step"]), list(state["loss_history"])
        resumed_from = step
        logger.info("Resuming %s from step %d (%s)", config.KIND, step, latest)

    def checkpoint() -> Path:
        target = checkpoint_path(root, step)
        with atomic_directory(target) as tmp:
            atomic_write_text(tmp / CONFIG_NAME, config.to_json())
            save_file(
                {k: v.detach().float().cpu().contiguous() for k, v in method.state().items()},
                tmp / TRAINABLE_FILE,
            )
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            atomic_write_text(
                tmp / "trainer_state.json",
                json.dumps({"step": step, "loss_history": history}),
            )
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            atomic_write_text(tmp / MARKER, json.dumps({"step": step, "files": files}, indent=1))
        prune_checkpoints(root, config.keep_checkpoints)
        callbacks.on_checkpoint(step, target)
        return target

    pipe.unet.train()
    last_checkpoint = latest
    stopped = False
    while step < config.train_steps:
        if callbacks.should_stop():
            stopped = True
            break
        seed = step_seed(config.seed, step)
        torch.manual_seed(seed)  # dropout
        batch_generator = torch.Generator().manual_seed(seed)
        noise_generator = torch.Generator(device=device).manual_seed(seed)
        batch = cells.draw(config.batch_size, batch_generator)
        pixels = cells.pixels(batch, batch_generator)
        input_ids = tokenize(pipe, [method.caption(record) for record in batch]).to(device)

        def encode(ids: torch.Tensor = input_ids, records: list[TrainingRecord] = batch) -> Any:
            if method.encode is not None:
                return method.encode(ids, records)
            return pipe.text_encoder(ids)[0]

        loss = diffusion_loss(pipe, scheduler, pixels, encode, noise_generator, autocast)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss: {loss.item()} at step {step}; lower learning_rate")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(method.parameters, 1.0)
        scaler.step(optimizer)
        scaler.update()
        method.after_step()
        step += 1
        history.append(round(float(loss.item()), 6))
        callbacks.on_step(step, config.train_steps, history[-1], {"grad_norm": float(grad_norm)})
        if config.sample_every and step % config.sample_every == 0 and sample_prompts:
            callbacks.on_sample_grid(
                step,
                sample_grid(
                    pipe,
                    sample_prompts,
                    steps=config.validation_steps,
                    seed=config.seed,
                    resolution=config.resolution,
                    inputs=method.sample_inputs,
                ),
            )
        if step % config.checkpoint_every == 0 or step == config.train_steps:
            last_checkpoint = checkpoint()
    if (
        stopped
        and step
        and (last_checkpoint is None or not last_checkpoint.name.endswith(f"{step:07d}"))
    ):
        last_checkpoint = checkpoint()
    tail = history[-10:]
    return SDTrainingResult(
        final_step=step,
        total_steps=config.train_steps,
        stopped=stopped,
        checkpoint_path=last_checkpoint,
        resumed_from=resumed_from,
        final_loss=round(sum(tail) / len(tail), 6) if tail else None,
        loss_history=history,
        seconds=time.monotonic() - started,
        base_model=pipeline_provenance(pipe).to_dict(),
    )


def _check_resumable(config: SDTrainingConfig, saved: dict[str, Any]) -> None:
    current = config.to_dict()
    changed = sorted(
        k for k in current if k not in config.RESUMABLE_CHANGES and saved.get(k) != current[k]
    )
    if changed:
        raise ValueError(
            f"config: differs from the checkpoint's in {', '.join(changed)}; "
            "use a new output folder to start over"
        )


def cast_frozen(
    pipe: StableDiffusionPipeline, dtype: torch.dtype, *, keep_text_encoder: bool
) -> None:
    """Cast the frozen base weights to ``dtype`` (the text encoder too unless it trains)."""
    pipe.vae.to(dtype=dtype)
    pipe.unet.to(dtype=dtype)
    if not keep_text_encoder:
        pipe.text_encoder.to(dtype=dtype)


def sample_conditions(
    conditions: Sequence[tuple[int, str]], limit: int = 8
) -> list[tuple[int, str]]:
    """The conditions of the validation samples: lightest to darkest skin, at most ``limit``."""
    ordered = sorted(conditions, key=lambda c: (c[0], c[1]))
    if len(ordered) > limit:
        picks = np.linspace(0, len(ordered) - 1, limit).round().astype(int)
        ordered = [ordered[i] for i in picks]
    return ordered


__all__ = [
    "DTYPES",
    "ImageCells",
    "Method",
    "SDTrainingResult",
    "cast_frozen",
    "sample_conditions",
    "diffusion_loss",
    "load_pipeline",
    "sample_grid",
    "step_seed",
    "tokenize",
    "train_loop",
]
