"""Inference pipeline of the FST × diagnosis conditional pixel-space diffusion model.

Inference only, in the shape of diffusers' ``DDPMPipeline``: the components are registered in
``__init__``, the label set is registered to the pipeline config (so ``save_pretrained`` /
``from_pretrained`` round-trip it through ``model_index.json``), and there is one
``@torch.no_grad() __call__``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    ImagePipelineOutput,
    UNet2DModel,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from generation.conditional.config import DEFAULT_DIAGNOSES, DEFAULT_FSTS, SAMPLERS
from generation.conditional.model import LabelCodec

OUTPUT_TYPES = ("pil", "np", "pt")


class ConditionalLesionPipeline(DiffusionPipeline):
    """Generates dermoscopic images for requested (Fitzpatrick skin type, diagnosis) labels.

    Args:
        unet (`UNet2DModel`):
            Class-conditional UNet with ``num_class_embeds == len(fsts) * len(diagnoses) + 1``
            (the last class is the null label of classifier-free guidance).
        scheduler (`SchedulerMixin`):
            The training noise scheduler (a ``DDPMScheduler``); its config (schedule and
            ``prediction_type``) is reused by the DDIM and DPM-Solver++ samplers.
        fsts (`list[int]`, *optional*, defaults to `[1, 2, 3, 4, 5, 6]`): Skin types in class order.
        diagnoses (`list[str]`, *optional*): Diagnosis codes in class order.
    """

    model_cpu_offload_seq = "unet"

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        fsts: list[int] | None = None,
        diagnoses: list[str] | None = None,
    ) -> None:
        super().__init__()
        fsts = [int(f) for f in (fsts if fsts is not None else DEFAULT_FSTS)]
        diagnoses = [str(d) for d in (diagnoses if diagnoses is not None else DEFAULT_DIAGNOSES)]
        codec = LabelCodec(fsts=tuple(fsts), diagnoses=tuple(diagnoses))
        if unet.config.num_class_embeds != codec.num_class_embeds:
            raise ValueError(
                f"unet: has {unet.config.num_class_embeds} class embeddings, the labels need "
                f"{codec.num_class_embeds} ({len(fsts)} FSTs × {len(diagnoses)} diagnoses + null)"
            )
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(fsts=fsts, diagnoses=diagnoses)

    @property
    def codec(self) -> LabelCodec:
        """The (fst, diagnosis) <-> class-index codec of this model."""
        return LabelCodec(fsts=tuple(self.config.fsts), diagnoses=tuple(self.config.diagnoses))

    def _sampling_scheduler(self, sampler: str) -> SchedulerMixin:
        # Built from the noise-schedule keys only, never via ``from_config``: a saved and a
        # fresh config differ in ``_use_default_values``, which would change the spacing.
        keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
        schedule = {key: self.scheduler.config[key] for key in keys}
        schedule["prediction_type"] = self.scheduler.config.prediction_type
        if sampler == "ddim":
            return DDIMScheduler(**schedule, clip_sample=True, timestep_spacing="trailing")
        # Pixel-space DPM-Solver++ on a weak model diverges (values of ±600): clip every x0
        # prediction to [-1, 1] (thresholding with sample_max_value 1) and clamp the output.
        return DPMSolverMultistepScheduler(
            **schedule,
            algorithm_type="dpmsolver++",
            thresholding=True,
            sample_max_value=1.0,
            timestep_spacing="trailing",
        )

    @torch.no_grad()
    def __call__(
        self,
        fst: int | Sequence[int],
        diagnosis: str | Sequence[str],
        guidance_scale: float = 2.0,
        num_inference_steps: int = 25,
        sampler: str = "ddim",
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        r"""Generate one image per (fst, diagnosis) pair.

        Args:
            fst (`int` or `Sequence[int]`):
                Fitzpatrick skin type per image. A single value is repeated to the length of
                ``diagnosis``.
            diagnosis (`str` or `Sequence[str]`):
                Diagnosis code per image. A single code is repeated to the length of ``fst``.
            guidance_scale (`float`, *optional*, defaults to 2.0):
                Classifier-free guidance ``s``: ``out = null + s * (cond - null)``, with the
                conditional and null-label passes batched together. ``1`` runs the conditional
                pass alone, ``0`` the unconditional one.
            num_inference_steps (`int`, *optional*, defaults to 25): Denoising steps.
            sampler (`str`, *optional*, defaults to `"ddim"`): ``"ddim"`` or ``"dpmsolver++"``.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*):
                One generator per image makes each image's initial noise depend only on its own
                seed (both samplers are deterministic after that); a single generator draws the
                whole batch.
            output_type (`str`, *optional*, defaults to `"pil"`): ``"pil"``, ``"np"`` (float in
                [0, 1], NHWC) or ``"pt"`` (float in [0, 1], NCHW).
            return_dict (`bool`, *optional*, defaults to `True`):
                Return an ``ImagePipelineOutput`` instead of a tuple.

        Returns:
            [`~pipelines.ImagePipelineOutput`] or `tuple`: the generated images.
        """
        fsts, diagnoses = _pair_labels(fst, diagnosis)
        batch_size = len(fsts)
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, int | float):
            raise ValueError(f"guidance_scale: expected a number, got {guidance_scale!r}")
        if not 0 <= guidance_scale <= 50:
            raise ValueError(f"guidance_scale: {guidance_scale} is not in 0..50")
        train_steps = self.scheduler.config.num_train_timesteps
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
            raise ValueError(
                f"num_inference_steps: expected an integer, got {num_inference_steps!r}"
            )
        if not 1 <= num_inference_steps <= train_steps:
            raise ValueError(
                f"num_inference_steps: {num_inference_steps} is not in 1..{train_steps}"
            )
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler: {sampler!r} is not one of {SAMPLERS}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type: {output_type!r} is not one of {OUTPUT_TYPES}")
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"generator: {len(generator)} generators for {batch_size} images")

        codec = self.codec
        try:
            labels = codec.encode_many(fsts, diagnoses)
        except ValueError as error:
            raise ValueError(str(error)) from None
        device = self._execution_device
        labels = labels.to(device)
        null = torch.full_like(labels, codec.null_index)

        size = self.unet.config.sample_size
        shape = (batch_size, self.unet.config.in_channels, size, size)
        scheduler = self._sampling_scheduler(sampler)
        scheduler.set_timesteps(num_inference_steps, device=device)
        image = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        image = image * scheduler.init_noise_sigma

        for t in self.progress_bar(scheduler.timesteps):
            model_input = scheduler.scale_model_input(image, t)
            if guidance_scale == 1:
                output = self.unet(model_input, t, class_labels=labels).sample
            elif guidance_scale == 0:
                output = self.unet(model_input, t, class_labels=null).sample
            else:
                both = self.unet(
                    torch.cat([model_input, model_input]), t, class_labels=torch.cat([labels, null])
                ).sample
                conditional, unconditional = both.chunk(2)
                output = unconditional + guidance_scale * (conditional - unconditional)
            if sampler == "ddim":
                # Re-derive the noise from the clipped x0: without it, guidance that overshoots
                # [-1, 1] at the extreme skin types (I, VI) shifts their tone after clipping.
                step = scheduler.step(output, t, image, use_clipped_model_output=True)
            else:
                step = scheduler.step(output, t, image)
            image = step.prev_sample

        image = (image.clamp(-1, 1) / 2 + 0.5).float()
        if output_type == "pt":
            images: torch.Tensor | np.ndarray | list = image.cpu()
        else:
            images = image.cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                images = self.numpy_to_pil(images)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


def _pair_labels(
    fst: int | Sequence[int], diagnosis: str | Sequence[str]
) -> tuple[list[int], list[str]]:
    fsts = [fst] if isinstance(fst, int) else list(fst)
    diagnoses = [diagnosis] if isinstance(diagnosis, str) else list(diagnosis)
    if isinstance(fst, int) and not isinstance(diagnosis, str):
        fsts = fsts * len(diagnoses)
    if isinstance(diagnosis, str) and not isinstance(fst, int):
        diagnoses = diagnoses * len(fsts)
    if not fsts:
        raise ValueError("fst: no labels given")
    if len(fsts) != len(diagnoses):
        raise ValueError(f"fst: {len(fsts)} skin types for {len(diagnoses)} diagnoses")
    for value in fsts:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"fst: {value!r} is not an integer skin type")
    for code in diagnoses:
        if not isinstance(code, str):
            raise ValueError(f"diagnosis: {code!r} is not a code string")
    return [int(v) for v in fsts], diagnoses
