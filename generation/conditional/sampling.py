"""Sampling helpers around ``ConditionalLesionPipeline``: label grids and a ``generate_images`` adapter."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from generation.conditional.config import SAMPLERS, ConditionalDiffusionConfig
from generation.conditional.pipeline import ConditionalLesionPipeline
from generation.plans import GenerationItem
from validation.files import sha256_file

CONFIG_NAME = "fairderm_config.json"


def render_sample_grid(
    pipeline: ConditionalLesionPipeline,
    *,
    seed: int,
    guidance_scale: float,
    num_inference_steps: int,
    sampler: str = "ddim",
) -> Image.Image:
    """One image per label: rows are the pipeline's FSTs (I..VI), columns its diagnoses.

    Each cell's noise comes from its own generator seeded ``seed + cell index``, so grids made
    at different training steps show the same noise and are directly comparable.

    Args:
        pipeline (`ConditionalLesionPipeline`): The model to sample (use the EMA weights).
        seed (`int`): Base seed.
        guidance_scale (`float`), num_inference_steps (`int`), sampler (`str`): Sampling settings.

    Returns:
        A ``PIL.Image`` of ``len(diagnoses) * size`` × ``len(fsts) * size`` pixels.
    """
    codec = pipeline.codec
    fsts = [fst for fst in codec.fsts for _ in codec.diagnoses]
    diagnoses = [code for _ in codec.fsts for code in codec.diagnoses]
    generators = [
        torch.Generator().manual_seed((seed + index) % 2**63) for index in range(len(fsts))
    ]
    images = pipeline(
        fsts,
        diagnoses,
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
        sampler=sampler,
        generator=generators,
        output_type="pil",
    ).images
    size = images[0].width
    grid = Image.new("RGB", (size * len(codec.diagnoses), size * len(codec.fsts)))
    for index, image in enumerate(images):
        row, column = divmod(index, len(codec.diagnoses))
        grid.paste(image, (column * size, row * size))
    return grid


@dataclass
class ConditionalPipelineSampler:
    """Adapter from ``ConditionalLesionPipeline`` to the ``generate_images`` sampler protocol.

    Args:
        pipeline (`ConditionalLesionPipeline`): The loaded model.
        guidance_scale (`float`, defaults to `2.0`), num_inference_steps (`int`, defaults to `25`),
        sampler (`str`, defaults to `"ddim"`): Sampling settings, recorded by ``provenance()``.
        model_path (`str`, *optional*), model_sha256 (`str`, *optional*):
            Where the weights came from and the sha256 of the UNet weights file (set by
            ``from_pretrained``), recorded by ``provenance()``.
    """

    pipeline: ConditionalLesionPipeline
    guidance_scale: float = 2.0
    num_inference_steps: int = 25
    sampler: str = "ddim"
    model_path: str | None = None
    model_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: {self.sampler!r} is not one of {SAMPLERS}")
        self.pipeline.set_progress_bar_config(disable=True)

    @classmethod
    def from_pretrained(
        cls, model_dir: str | os.PathLike[str], *, device: str = "cpu", **settings: Any
    ) -> ConditionalPipelineSampler:
        """Load an exported ``model/`` folder (``train_conditional`` output).

        Args:
            model_dir (`str` or `os.PathLike`): The pipeline folder.
            device (`str`, *optional*, defaults to `"cpu"`): Torch device.
            settings: ``guidance_scale``, ``num_inference_steps``, ``sampler``.
        """
        folder = Path(model_dir)
        pipeline = ConditionalLesionPipeline.from_pretrained(folder)
        weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
        return cls(
            pipeline=pipeline.to(device),
            model_path=str(folder),
            model_sha256=sha256_file(weights) if weights.is_file() else None,
            **settings,
        )

    def __call__(
        self, items: Sequence[GenerationItem], generators: Sequence[torch.Generator]
    ) -> list[Image.Image]:
        """Generate ``items`` (one generator each) as PIL images."""
        return self.pipeline(
            [item.fst for item in items],
            [item.diagnosis for item in items],
            guidance_scale=self.guidance_scale,
            num_inference_steps=self.num_inference_steps,
            sampler=self.sampler,
            generator=list(generators),
            output_type="pil",
        ).images

    def provenance(self) -> dict[str, Any]:
        """The sampling settings and model identity, for ``generate_images(provenance=...)``."""
        return {
            "model": "fairderm-conditional-unet",
            "model_path": self.model_path,
            "model_sha256": self.model_sha256,
            "guidance_scale": self.guidance_scale,
            "num_inference_steps": self.num_inference_steps,
            "sampler": self.sampler,
            "labels": self.pipeline.codec.to_dict(),
        }


def load_model_config(model_dir: str | os.PathLike[str]) -> ConditionalDiffusionConfig:
    """Read the FairDerm config stored beside an exported pipeline or in a checkpoint.

    Args:
        model_dir (`str` or `os.PathLike`): An exported ``model/`` or a checkpoint folder.
    """
    path = Path(model_dir) / CONFIG_NAME
    return ConditionalDiffusionConfig.from_json(path.read_text(encoding="utf-8"))
