"""The settings of the fast Stable Diffusion path (``generation.fast``), without importing torch.

Kept apart from ``generation.fast`` so that config modules (``generation.plans``) stay light
for the web app; see ``generation.fast`` for what each setting does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from validation.checks import check_bool, check_int

if TYPE_CHECKING:
    import torch

#: Pipeline weight dtypes by name (``torch.float32``, ``torch.float16``, ``torch.bfloat16``).
DTYPE_NAMES: tuple[str, ...] = ("fp32", "fp16", "bf16")
#: ``compile_mode`` values: no compilation, inductor's default, or inductor with autotuning.
COMPILE_MODES: tuple[str, ...] = ("none", "default", "max-autotune")


@dataclass(frozen=True)
class FastPathConfig:
    """How a Stable Diffusion pipeline runs (see ``generation.fast``); validated on creation.

    Args:
        dtype (`str`, defaults to ``"fp32"``): Weight and activation dtype: ``"fp32"``,
            ``"fp16"`` (CUDA only) or ``"bf16"``.
        channels_last (`bool`, defaults to `False`): NHWC memory format for the UNet and VAE
            (faster convolutions on tensor cores).
        fuse_lora (`bool`, defaults to `False`): Fuse LoRA adapters into the weights and drop
            peft's layers, so the UNet compiles and converts to fp8 as a plain model does: one
            shared adapter into the base weights (diffusers' ``fuse_lora``, UNet and text
            encoder); per-FST adapters into one weight bank each, copied in place when the
            sampler switches skin type (``generation.fast.AdapterBank``).
            ``prepare_pipeline`` records which (``lora_fusion``).
        fuse_qkv (`bool`, defaults to `False`): One matrix product for q, k, v (self-attention)
            and k, v (cross-attention), through diffusers' ``fuse_qkv_projections``. Refused
            while LoRA adapters are loaded (the fused layers would bypass them) and with
            per-FST adapters (it would copy the weights a switch changes), so for a LoRA model
            only with ``fuse_lora`` and one shared adapter.
        compile_mode (`str`, defaults to ``"none"``): ``torch.compile`` the UNet: ``"none"``,
            ``"default"`` or ``"max-autotune"`` (slower to compile, tunes matrix kernels).
        compile_vae (`bool`, defaults to `False`): Also compile the VAE decoder (needs
            ``compile_mode``).
        cuda_graphs (`bool`, defaults to `False`): Replay the compiled UNet as CUDA graphs
            (inductor's ``reduce-overhead``/``max-autotune`` modes); needs ``compile_mode`` and
            CUDA.
        fp8 (`bool`, defaults to `False`): fp8 attention and feed-forward projections (see
            ``generation.fast``); needs ``dtype="bf16"`` and a Hopper GPU.
        vae_batch_size (`int`, defaults to 0): Latents decoded per VAE call; 0 decodes the whole
            batch at once.
        pad_batches (`bool`, defaults to `False`): Pad a short batch (the plan's last) to the
            largest batch seen, with copies of its last item that are dropped afterwards, so a
            compiled model never sees a new shape. Always on when ``compile_mode`` is set.
            Padding changes no image: every item's noise comes from its own generator.
        writer_threads (`int`, defaults to 4): Threads encoding and writing PNGs
            (``generate_images(writer_threads=...)``); 0 writes in the sampling thread.
        compile_cache_dir (`str`, defaults to ``""``): Keep inductor's compiled kernels here
            (``TORCHINDUCTOR_CACHE_DIR``, set for this process unless it already names a
            folder other than torch's default), so a new worker process reuses them instead
            of compiling again. Empty keeps torch's default (a folder under the system's
            temporary directory).
    """

    dtype: str = "fp32"
    channels_last: bool = False
    fuse_lora: bool = False
    fuse_qkv: bool = False
    compile_mode: str = "none"
    compile_vae: bool = False
    cuda_graphs: bool = False
    fp8: bool = False
    vae_batch_size: int = 0
    pad_batches: bool = False
    writer_threads: int = 4
    compile_cache_dir: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype: {self.dtype!r} is not one of {', '.join(DTYPE_NAMES)}")
        for name in (
            "channels_last",
            "fuse_lora",
            "fuse_qkv",
            "compile_vae",
            "cuda_graphs",
            "fp8",
            "pad_batches",
        ):
            check_bool(name, getattr(self, name))
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"compile_mode: {self.compile_mode!r} is not one of {', '.join(COMPILE_MODES)}"
            )
        if self.cuda_graphs and self.compile_mode == "none":
            raise ValueError(
                "cuda_graphs: needs compile_mode 'default' or 'max-autotune' (the graphs are "
                "inductor's, recorded from the compiled UNet)"
            )
        if self.compile_vae and self.compile_mode == "none":
            raise ValueError("compile_vae: needs compile_mode 'default' or 'max-autotune'")
        if self.fp8 and self.dtype != "bf16":
            raise ValueError(
                f"fp8: needs dtype 'bf16' (the fp8 products return bf16), got {self.dtype!r}"
            )
        check_int("vae_batch_size", self.vae_batch_size, 0, 4096)
        check_int("writer_threads", self.writer_threads, 0, 64)
        if not isinstance(self.compile_cache_dir, str):
            raise ValueError(f"compile_cache_dir: must be a string, got {self.compile_cache_dir!r}")

    @classmethod
    def gpu(cls, **overrides: Any) -> FastPathConfig:
        """The fast preset for a CUDA GPU: bf16, channels_last, a shared LoRA fused into the
        base weights, compiled UNet replayed as CUDA graphs, 8 writer threads. ``fuse_qkv``
        stays off (models with per-FST adapters refuse it; pass ``fuse_qkv=True`` for a model
        without adapters or with one shared adapter) and so does fp8 (until checked, see
        ``generation.fast``)."""
        values: dict[str, Any] = {
            "dtype": "bf16",
            "channels_last": True,
            "fuse_lora": True,
            "compile_mode": "default",
            "cuda_graphs": True,
            "writer_threads": 8,
        }
        return cls(**{**values, **overrides})

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.dtype]

    @property
    def torch_compile_mode(self) -> str | None:
        """The ``torch.compile`` mode: ``None`` when nothing is compiled."""
        if self.compile_mode == "none":
            return None
        if self.compile_mode == "default":
            return "reduce-overhead" if self.cuda_graphs else "default"
        return "max-autotune" if self.cuda_graphs else "max-autotune-no-cudagraphs"

    @property
    def static_batches(self) -> bool:
        """Whether short batches are padded (see ``pad_batches``)."""
        return self.pad_batches or self.compile_mode != "none"

    def check_device(self, device: str | torch.device) -> None:
        """Raise ``ValueError`` naming the option that ``device`` cannot run."""
        import torch

        device = torch.device(device)
        if device.type != "cuda":
            for name, needs in (("dtype", self.dtype == "fp16"), ("cuda_graphs", self.cuda_graphs)):
                if needs:
                    raise ValueError(
                        f"{name}: {getattr(self, name)!r} needs a CUDA GPU, not {device}"
                    )
        if self.fp8:
            capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
            if capability is None or capability[0] != 9:
                where = f"compute capability {capability}" if capability else str(device)
                raise ValueError(
                    f"fp8: needs an NVIDIA Hopper GPU (compute capability 9.x), not {where}"
                )

    def to_dict(self) -> dict[str, Any]:
        """The settings that shape the pixels or the speed (the cache folder is left out)."""
        data = dataclasses.asdict(self)
        data.pop("compile_cache_dir")
        return data
