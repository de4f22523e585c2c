"""Generation from a fine-tuned Stable Diffusion: txt2img, or img2img from light to dark skin.

``SDSampler`` follows the ``generate_images`` sampler protocol, so SD sets get the same plans,
per-image provenance, resumption, sharding and tone gate as the conditional model's.

- ``txt2img``: the caption of each planned (FST, diagnosis), with its learned token if any.
- ``img2img`` (majority to minority): each planned image starts from a real image of the same
  diagnosis on FST I-III (``source_fsts``), picked by the image's seed, and is denoised toward
  the caption of the planned FST with ``strength`` (0 keeps the source, 1 ignores it). Every
  img2img image records its source and a lesion-preservation score
  (``validation.lesion``) beside the tone the gate measures, so users can choose the strength.

With ``fast`` (a ``generation.fast.FastPathConfig``) the pipeline is prepared once for speed
(LoRA adapters fused into the weights, dtype, channels_last, compiled UNet, CUDA graphs, fp8)
and images are decoded by ``generation.fast.decode_latents``; the sampling loop itself stays
diffusers' own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from PIL import Image

from generation.fast import (
    BANK_ATTR,
    FAST_ATTR,
    AdapterBank,
    FastPathConfig,
    decode_latents,
    mark_step,
    prepare_pipeline,
)
from generation.plans import GenerationItem
from generation.sd_finetune.config import caption
from generation.stable_diffusion import load_sd_pipeline, pipeline_provenance
from validation.files import sha256_file
from validation.lesion import lesion_preservation

MODES: tuple[str, ...] = ("txt2img", "img2img")


@dataclass
class SDSampler:
    """Sample planned images from a Stable Diffusion pipeline (see the module docstring).

    Args:
        pipe (`StableDiffusionPipeline`): The pipeline (base weights plus loaded adapters).
        caption_template (`str`): Caption template, as in training.
        tokens (`dict`): ``{(fst, diagnosis): token}`` of learned tokens ("" without).
        resolution (`int`): Output side in pixels.
        guidance_scale (`float`), num_inference_steps (`int`): Sampling settings.
        mode (`str`): ``"txt2img"`` or ``"img2img"``.
        strength (`float`): img2img strength in (0, 1].
        sources (`dict`): img2img only: ``{diagnosis: [source image paths]}``.
        model (`dict`): What identifies the model (hashes, stand-in label), for provenance.
        fast (`FastPathConfig`, *optional*): Prepare the pipeline for speed (in place, on
            creation) and decode on the device; ``None`` keeps the stock pipeline call.
    """

    pipe: StableDiffusionPipeline
    caption_template: str
    tokens: Mapping[tuple[int, str], str] = field(default_factory=dict)
    resolution: int = 512
    guidance_scale: float = 7.5
    num_inference_steps: int = 25
    mode: str = "txt2img"
    strength: float = 0.6
    sources: Mapping[str, Sequence[Path]] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    diagnoses: tuple[str, ...] = ()
    #: Per-image facts of the last call (img2img source, lesion preservation), by item index;
    #: ``generate_images`` stores them in each image's provenance.
    last_details: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Per-FST adapters: ``{fst: adapter name}`` (empty for one shared adapter).
    adapters: dict[int, str] = field(default_factory=dict)
    #: Condition embeddings by FST (per-FST adapters) or under ``None``.
    embeddings: dict[Any, Any] = field(default_factory=dict)
    fast: FastPathConfig | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength: {self.strength!r} is not in (0, 1]")
        if self.mode == "img2img" and not any(self.sources.values()):
            raise ValueError("sources: img2img needs source images (FST I-III of each diagnosis)")
        self.pipe.set_progress_bar_config(disable=True)
        self._img2img: StableDiffusionImg2ImgPipeline | None = None
        #: Largest batch seen; shorter ones are padded to it when ``fast.static_batches``.
        self._static_batch = 0
        if self.fast is not None:
            prepare_pipeline(self.pipe, self.fast)

    @classmethod
    def from_lora(
        cls,
        base_model: str,
        lora_folder: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        scheduler: str | None = None,
        fast: FastPathConfig | None = None,
        **kwargs: Any,
    ) -> SDSampler:
        """Load ``base_model`` with a FairDerm LoRA output (adapters, tokens, embeddings).

        With ``fast``, its dtype replaces ``dtype`` and the pipeline is prepared for speed.
        """
        from generation.sd_finetune.config import condition_token
        from generation.sd_finetune.lora import WEIGHTS_NAME, load_lora_output, read_lora_metadata
        from generation.sd_finetune.textual_inversion import FOLDER as TI_FOLDER
        from generation.sd_finetune.textual_inversion import tokens_config

        if fast is not None:
            fast.check_device(device)  # before loading gigabytes
            dtype = fast.torch_dtype
        pipe = load_sd_pipeline(base_model, device=device, dtype=dtype, scheduler=scheduler)
        loaded = load_lora_output(pipe, lora_folder)
        config = loaded.config
        weights = sorted(loaded.folder.rglob(WEIGHTS_NAME))
        tokens: dict[tuple[int, str], str] = {}
        ti = next(iter(sorted(loaded.folder.rglob(f"{TI_FOLDER}/tokens.json"))), None)
        if ti is not None:
            scheme = tokens_config(ti.parent).token_scheme
            tokens = {
                (f, d): condition_token(scheme, f, d) for f in range(1, 7) for d in config.diagnoses
            }
        model = {
            "kind": "stable-diffusion-lora",
            "adapters": config.adapters,
            "condition_embeddings": config.condition_embeddings,
            "base_model": pipeline_provenance(pipe).to_dict(),
            "lora_sha256": {str(w.relative_to(loaded.folder)): sha256_file(w) for w in weights},
            "lora_training": read_lora_metadata(weights[0]),
        }
        kwargs.setdefault("resolution", config.resolution)
        sampler = cls(
            pipe=pipe,
            caption_template=config.caption_template,
            tokens=tokens,
            model=model,
            diagnoses=tuple(config.diagnoses),
            fast=fast,
            **kwargs,
        )
        sampler.adapters = dict(loaded.adapters)
        sampler.embeddings = dict(loaded.embeddings)
        return sampler

    @property
    def batch_key(self) -> Callable[[GenerationItem], int] | None:
        """With per-FST adapters, ``generate_images`` batches one skin type at a time: a mixed
        batch would run one short model call per adapter (each padded to the full batch on a
        compiled model)."""
        return attrgetter("fst") if self.adapters else None

    def prompt(self, item: GenerationItem) -> str:
        return caption(
            self.caption_template,
            item.fst,
            item.diagnosis,
            self.tokens.get((item.fst, item.diagnosis), ""),
        )

    def source_for(self, item: GenerationItem) -> Path:
        candidates = list(self.sources.get(item.diagnosis, ()))
        if not candidates:
            raise ValueError(f"sources: no FST I-III image of {item.diagnosis} for img2img")
        return sorted(candidates)[item.seed % len(candidates)]

    def __call__(
        self, items: Sequence[GenerationItem], generators: Sequence[torch.Generator]
    ) -> list[Image.Image]:
        """One image per item; with per-FST adapters, each skin type with its own adapter."""
        self.last_details = {}
        if not self.adapters:
            return self._sample(list(items), list(generators), None)
        images: dict[int, Image.Image] = {}
        bank: AdapterBank | None = getattr(self.pipe, BANK_ATTR, None)
        for fst in sorted({item.fst for item in items}):
            if fst not in self.adapters:
                raise ValueError(f"items: the LoRA has no adapter for FST {fst}")
            group = [(i, g) for i, g in zip(items, generators, strict=True) if i.fst == fst]
            if bank is not None:  # adapters fused into weight banks (fast.fuse_lora)
                bank.activate(self.adapters[fst])
            else:
                self.pipe.set_adapters([self.adapters[fst]])
            made = self._sample([i for i, _ in group], [g for _, g in group], fst)
            images.update({i.index: image for (i, _), image in zip(group, made, strict=True)})
        return [images[item.index] for item in items]

    def _text_inputs(self, items: list[GenerationItem], fst: int | None) -> dict[str, Any]:
        prompts = [self.prompt(item) for item in items]
        module = self.embeddings.get(fst, self.embeddings.get(None))
        if module is None:
            return {"prompt": prompts}
        conditions = [(item.fst, item.diagnosis) for item in items]
        return module.pipeline_inputs(self.pipe, prompts, conditions)

    def _sample(
        self, items: list[GenerationItem], generators: list[torch.Generator], fst: int | None
    ) -> list[Image.Image]:
        wanted = len(items)
        if self.fast is not None and self.fast.static_batches:
            # A compiled model recompiles for every new shape: pad to the largest batch with
            # copies of the last item (own generators, same noise), dropped afterwards.
            self._static_batch = max(self._static_batch, wanted)
            extra = self._static_batch - wanted
            items = items + [items[-1]] * extra
            generators = generators + [
                torch.Generator(device=generators[-1].device).manual_seed(items[-1].seed)
                for _ in range(extra)
            ]
        text = self._text_inputs(items, fst)
        output_type = "pil" if self.fast is None else "latent"
        with torch.no_grad():
            mark_step(self.fast)
            if self.mode == "txt2img":
                result = self.pipe(
                    **text,
                    num_inference_steps=self.num_inference_steps,
                    guidance_scale=self.guidance_scale,
                    generator=generators,
                    height=self.resolution,
                    width=self.resolution,
                    output_type=output_type,
                ).images
                return self._images(result)[:wanted]
            if self._img2img is None:
                self._img2img = StableDiffusionImg2ImgPipeline(
                    **self.pipe.components, requires_safety_checker=False
                )
                self._img2img.set_progress_bar_config(disable=True)
            paths = [self.source_for(item) for item in items]
            sources = [_square(path, self.resolution) for path in paths]
            result = self._img2img(
                **text,
                image=sources,
                strength=self.strength,
                num_inference_steps=self.num_inference_steps,
                guidance_scale=self.guidance_scale,
                generator=generators,
                output_type=output_type,
            ).images
            images = self._images(result)[:wanted]
        for item, path, source, image in zip(items, paths, sources, images, strict=False):
            self.last_details[item.index] = {
                "source_image": path.name,
                "source_sha256": sha256_file(path),
                "lesion_preservation": lesion_preservation(source, image).to_dict(),
            }
        return images

    def _images(self, result: Any) -> list[Image.Image]:
        """PIL images from the pipeline's output: decoded here on the fast path."""
        if self.fast is None:
            return list(result)
        return decode_latents(self.pipe, result, self.fast.vae_batch_size, self.fast)

    def provenance(self) -> dict[str, Any]:
        """Sampling settings and model identity, for ``generate_images(provenance=...)``."""
        settings: dict[str, Any] = {
            "sampler": type(self.pipe.scheduler).__name__,
            "mode": self.mode,
            "guidance_scale": self.guidance_scale,
            "num_inference_steps": self.num_inference_steps,
            "resolution": self.resolution,
            "caption_template": self.caption_template,
            "model": self.model,
        }
        if self.mode == "img2img":
            settings["strength"] = self.strength
        if self.fast is not None:
            settings["fast_path"] = self.fast.to_dict()
            # What fuse_lora did: "none", "shared" or "per-adapter" (generation.fast).
            settings["lora_fusion"] = getattr(self.pipe, FAST_ATTR, {}).get("lora_fusion", "none")
        return settings


def _square(path: Path, side: int) -> Image.Image:
    with Image.open(path) as source:
        image = source.convert("RGB")
    short = min(image.size)
    left, top = (image.width - short) // 2, (image.height - short) // 2
    return image.crop((left, top, left + short, top + short)).resize(
        (side, side), Image.Resampling.BICUBIC
    )
