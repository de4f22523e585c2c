"""The fast Stable Diffusion path: one pipeline preparation and one decode step, configured once.

``FastPathConfig`` says how a pipeline runs (dtype, memory format, fused attention projections,
``torch.compile`` mode and CUDA graphs, fp8 matrix products, VAE decode batch, PNG writer
threads); it never changes *what* is sampled (scheduler, steps, guidance and batch size stay in
``generation.plans.GenerationConfig`` and ``SDSampler``). ``prepare_pipeline`` applies it to a
loaded pipeline, in place, once; ``SDSampler(fast=...)`` then samples latents with the stock
diffusers loop (classifier-free guidance batched as ``[uncond, cond]``, SDPA attention) and
decodes them with :func:`decode_latents`, which converts to 8-bit on the device and copies
only the bytes to the CPU. ``generate_images(writer_threads=...)`` encodes the PNGs on threads.

With ``fuse_lora`` LoRA adapters are fused into the weights before anything else
(:func:`fuse_loras`): one shared adapter into the base weights, per-FST adapters into an
:class:`AdapterBank` that the sampler switches by copying weights in place, so compiled code
and CUDA graphs stay valid.

The defaults are the plain path (fp32, nothing compiled) and run anywhere; on the CPU they give
the same pixels as a stock ``pipe(...)`` call. :meth:`FastPathConfig.gpu` is the fast preset.
Options that need hardware are refused elsewhere with a ``ValueError`` naming the option:
``fp16`` and ``cuda_graphs`` need CUDA, ``fp8`` an NVIDIA Hopper GPU (compute capability 9.x).

fp8 here means the UNet's attention and feed-forward ``Linear`` layers run as e4m3 matrix
products (``torch._scaled_mm``) with one scale per weight row and one per activation row; the
convolutions (about 55% of the UNet's FLOPs at 512 px) and attention itself stay bf16. It
changes the pixels: use it only where :func:`image_agreement` against the bf16 images of the
same seeds holds (LPIPS < 0.02 per image, the issue's threshold), as the generation benchmark
checks.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from generation.fast_config import COMPILE_MODES, DTYPE_NAMES, FastPathConfig
from validation.checks import check_int

logger = logging.getLogger(__name__)

__all__ = [
    "COMPILE_MODES",
    "DTYPE_NAMES",
    "FAST_ATTR",
    "FastPathConfig",
    "Fp8Linear",
    "convert_linears_to_fp8",
    "decode_latents",
    "AdapterBank",
    "fuse_loras",
    "has_lora",
    "image_agreement",
    "pixel_differences",
    "mark_step",
    "prepare_pipeline",
]

#: Attribute of a prepared pipeline holding what :func:`prepare_pipeline` did.
FAST_ATTR = "fairderm_fast_path"
#: Largest finite float8 e4m3 value.
E4M3_MAX = 448.0


# --- fp8 -----------------------------------------------------------------------------------


class Fp8Linear(torch.nn.Module):
    """A ``Linear`` layer as an fp8 e4m3 matrix product with per-row scales.

    The weight is quantised once, one scale per output row; each input row (token) is
    quantised on the fly with its own scale. ``torch._scaled_mm`` multiplies in fp8 and
    returns the input's dtype (bf16 on CUDA). Under ``torch.compile`` the quantisation fuses
    into neighbouring kernels.
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / E4M3_MAX
        self.register_buffer("weight_fp8", (weight / scale).to(torch.float8_e4m3fn))
        self.register_buffer("weight_scale", scale.t().contiguous())  # 1 x out
        bias = linear.bias.detach().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        scale = rows.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / E4M3_MAX
        quantised = (rows.float() / scale).to(torch.float8_e4m3fn)
        out = torch._scaled_mm(
            quantised,
            self.weight_fp8.t(),
            scale_a=scale,
            scale_b=self.weight_scale,
            out_dtype=x.dtype,
        )
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, e4m3"


def has_lora(module: torch.nn.Module) -> bool:
    """Whether peft LoRA layers are injected into ``module``."""
    return any(hasattr(child, "lora_A") for child in module.modules())


def convert_linears_to_fp8(module: torch.nn.Module, keep: frozenset[str] = frozenset()) -> int:
    """Replace the attention and feed-forward ``Linear`` layers of ``module`` by ``Fp8Linear``.

    Converted: plain ``torch.nn.Linear`` layers inside attention (``attn*``) and feed-forward
    (``ff``) blocks whose sizes are multiples of 16 (fp8 products need that). Left alone:
    everything else, including layers wrapped by peft (LoRA keeps running in full precision)
    and the layers at the module paths in ``keep`` (those an ``AdapterBank`` writes into).

    Returns:
        `int`: How many layers were converted.
    """
    targets: list[tuple[torch.nn.Module, str, torch.nn.Linear]] = []
    for name, parent in module.named_modules():
        if "lora_" in name or hasattr(parent, "lora_A"):
            continue
        if not any(part.startswith("attn") or part == "ff" for part in name.split(".")):
            continue
        for child_name, child in parent.named_children():
            if (
                f"{name}.{child_name}" not in keep
                and type(child) is torch.nn.Linear
                and child.in_features % 16 == 0
                and child.out_features % 16 == 0
            ):
                targets.append((parent, child_name, child))
    for parent, child_name, child in targets:
        setattr(parent, child_name, Fp8Linear(child))
    return len(targets)


# --- preparing and decoding ------------------------------------------------------------------


def _inductor_cache_dir_chosen() -> bool:
    """Whether ``TORCHINDUCTOR_CACHE_DIR`` was chosen by someone, not filled in by torch.

    Inductor writes its default folder into the variable the first time it is asked for it,
    and importing diffusers already does that (torch 2.11 and 2.14), so "the variable is set"
    does not mean "the user set it": a value equal to torch's default counts as unset.
    """
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not current:
        return False
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch layout: keep whatever is set
        return True
    return os.path.abspath(current) != os.path.abspath(default_cache_dir())


#: Attribute of a prepared pipeline holding its :class:`AdapterBank` (per-adapter fusion).
BANK_ATTR = "fairderm_adapter_bank"


class AdapterBank:
    """LoRA adapters fused into one set of weights each; :meth:`activate` copies one in place.

    Built by :func:`fuse_loras` from a pipeline with several adapters (a per-FST LoRA). For
    every weight an adapter changes, each adapter's ``W + delta`` is summed in fp32 from
    peft's own ``get_delta_weight`` and rounded once to the model's dtype; peft's layers are
    then removed. ``activate`` copies an adapter's weights into the model's own tensors, in
    place, so a compiled UNet and the CUDA graphs recorded from it (which read the weights
    at fixed addresses) see the new values without recompiling. A switch costs one device
    copy of the changed weights and never drifts: nothing is ever subtracted.

    Args:
        targets (`dict[str, torch.nn.Module]`): The layers whose ``weight`` adapters change,
            by ``"<component>.<module path>"``.
        weights (`dict[str, dict[str, torch.Tensor]]`): Adapter name to that adapter's fused
            weight for every target.
    """

    def __init__(
        self, targets: dict[str, torch.nn.Module], weights: dict[str, dict[str, torch.Tensor]]
    ):
        for name, fused in weights.items():
            if fused.keys() != targets.keys():
                raise ValueError(f"weights: adapter {name!r} does not cover every target layer")
        self.targets = targets
        self._weights = weights
        #: The adapter whose weights are in the model (``None``: the base weights).
        self.active: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._weights))

    def target_paths(self, component: str) -> frozenset[str]:
        """Module paths, within ``component`` (``"unet"``...), of the layers adapters change."""
        prefix = f"{component}."
        return frozenset(k.removeprefix(prefix) for k in self.targets if k.startswith(prefix))

    def match_targets(self) -> None:
        """Store every fused weight in its layer's current dtype and device (after a cast)."""
        for fused in self._weights.values():
            for key, layer in self.targets.items():
                weight = layer.weight
                fused[key] = fused[key].to(device=weight.device, dtype=weight.dtype)

    @torch.no_grad()
    def activate(self, name: str) -> None:
        """Copy adapter ``name``'s weights into the model (nothing to do if already there)."""
        if name not in self._weights:
            raise ValueError(f"name: no adapter {name!r} in the bank ({', '.join(self.names)})")
        if name == self.active:
            return
        for key, layer in self.targets.items():
            layer.weight.copy_(self._weights[name][key])
        self.active = name


def _lora_layers(model: torch.nn.Module) -> dict[str, Any]:
    from peft.tuners.lora import LoraLayer

    return {path: m for path, m in model.named_modules() if isinstance(m, LoraLayer)}


def _listed_adapters(pipe: Any) -> dict[str, list[str]]:
    """``{component: [adapter names]}``; empty without peft layers (then peft is not needed)."""
    if not (has_lora(pipe.unet) or has_lora(pipe.text_encoder)):
        return {}
    return pipe.get_list_adapters()


def fuse_loras(pipe: Any) -> str:
    """Fuse the pipeline's LoRA adapters into its weights and remove peft's layers.

    One adapter (a shared LoRA): diffusers' ``fuse_lora`` (scale 1, the scale sampling uses)
    on every component that carries it (UNet, text encoder), then ``unload_lora_weights``,
    which drops the adapter layers and keeps the fused weights. Several adapters (per-FST):
    an :class:`AdapterBank`, stored on the pipeline as ``pipe.fairderm_adapter_bank``, whose
    ``activate`` selects an adapter instead of ``set_adapters``.

    Returns:
        `str`: ``"none"`` (no adapter loaded), ``"shared"`` or ``"per-adapter"``.

    Raises:
        `ValueError`: If an adapter is a DoRA adapter (its delta is not ``B @ A``).
    """
    listed = _listed_adapters(pipe)
    names = sorted({name for component in listed.values() for name in component})
    if not names:
        return "none"
    components = sorted(component for component, adapters in listed.items() if adapters)
    layers = {c: _lora_layers(getattr(pipe, c)) for c in components}
    for component, found in layers.items():
        for path, layer in found.items():
            if any(layer.use_dora.get(name, False) for name in names):
                raise ValueError(f"fuse_lora: {component}.{path} is a DoRA adapter; not fusable")
    if len(names) == 1:
        pipe.fuse_lora(components=components, lora_scale=1.0, adapter_names=names)
        pipe.unload_lora_weights()
        return "shared"
    targets: dict[str, torch.nn.Module] = {}
    weights: dict[str, dict[str, torch.Tensor]] = {name: {} for name in names}
    with torch.no_grad():
        for component, found in layers.items():
            for path, layer in found.items():
                base = layer.get_base_layer()
                key = f"{component}.{path}"
                targets[key] = base
                original = base.weight.detach().float()
                for name in names:
                    fused = original
                    if name in layer.lora_A:
                        fused = original + layer.get_delta_weight(name).float()
                    weights[name][key] = fused.to(base.weight.dtype).contiguous()
    pipe.unload_lora_weights()
    for key, base in targets.items():
        component, path = key.split(".", 1)
        if getattr(pipe, component).get_submodule(path) is not base:
            raise RuntimeError(f"fuse_lora: {key} was not restored by unload_lora_weights")
    setattr(pipe, BANK_ATTR, AdapterBank(targets, weights))
    return "per-adapter"


def prepare_pipeline(pipe: Any, config: FastPathConfig) -> dict[str, Any]:
    """Apply ``config`` to ``pipe`` (a diffusers Stable Diffusion pipeline) in place, once.

    On the pipeline's current device: fuses LoRA adapters into the weights (``fuse_lora``, see
    :func:`fuse_loras`), casts to ``config.dtype``, sets SDPA attention
    (``AttnProcessor2_0``, or its fused form with ``fuse_qkv``), channels_last, fp8 layers,
    and compiles the UNet (and the VAE decoder with ``compile_vae``). On CUDA it also turns on
    ``torch.backends.cudnn.benchmark`` (process-wide: fixed shapes pick their fastest
    convolution once). Compilation is lazy: the first batch of each shape compiles.

    Returns:
        `dict`: What was done (the config, the device, how LoRA adapters were fused, fp8
        layers converted), also stored on
        the pipeline as ``pipe.fairderm_fast_path``. Calling again with the same config returns
        it unchanged.

    Raises:
        `ValueError`: If the device cannot run an option (see ``FastPathConfig.check_device``),
        if ``fuse_qkv`` is asked with LoRA adapters loaded, or if the pipeline was already
        prepared with another config.
    """
    from diffusers.models.attention_processor import AttnProcessor2_0

    if not isinstance(config, FastPathConfig):
        raise ValueError(f"config: expected a FastPathConfig, got {type(config).__name__}")
    device = pipe.device
    config.check_device(device)
    previous = getattr(pipe, FAST_ATTR, None)
    if previous is not None:
        if previous["config"] == config.to_dict():
            return previous
        raise ValueError(
            "config: this pipeline was already prepared with another fast-path config; "
            "load a fresh pipeline instead"
        )
    # Checked before anything changes: fusing LoRA adapters (or not) is decided here.
    listed = _listed_adapters(pipe) if config.fuse_qkv else {}
    if len(listed.get("unet", [])) > 1:
        raise ValueError(
            "fuse_qkv: not possible with several LoRA adapters (per-FST): the fused "
            "projections would copy the weights that switching adapters changes; turn it off"
        )
    if any(listed.values()) and not config.fuse_lora:
        raise ValueError(
            "fuse_qkv: not possible with LoRA adapters loaded (the fused projections would "
            "bypass them); turn on fuse_lora, or turn fuse_qkv off"
        )
    lora_fusion = fuse_loras(pipe) if config.fuse_lora else "none"
    for component in pipe.components.values():
        # Only modules of another dtype: diffusers warns on every dtype cast.
        if isinstance(component, torch.nn.Module):
            first = next(component.parameters(), None)
            if first is not None and first.dtype != config.torch_dtype:
                component.to(dtype=config.torch_dtype)
    for model in (pipe.unet, pipe.vae):
        if config.fuse_qkv:
            model.fuse_qkv_projections()  # sets FusedAttnProcessor2_0 (SDPA on fused q, k, v)
        else:
            model.set_attn_processor(AttnProcessor2_0())
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
    bank: AdapterBank | None = getattr(pipe, BANK_ATTR, None)
    if bank is not None:
        bank.match_targets()
    # Layers an adapter bank writes into stay as they are (fp8 would copy their weights).
    keep = bank.target_paths("unet") if bank is not None else frozenset()
    fp8_layers = convert_linears_to_fp8(pipe.unet, keep=keep) if config.fp8 else 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    mode = config.torch_compile_mode
    if mode is not None:
        if config.compile_cache_dir and not _inductor_cache_dir_chosen():
            os.makedirs(config.compile_cache_dir, exist_ok=True)
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = config.compile_cache_dir
        pipe.unet.compile(mode=mode, dynamic=False)
        if config.compile_vae:
            pipe.vae.decoder.compile(mode=mode, dynamic=False)
    info = {
        "config": config.to_dict(),
        "device": str(device),
        "torch_compile_mode": mode,
        "lora_fusion": lora_fusion,
        "fp8_linear_layers": fp8_layers,
        "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR") if mode else None,
    }
    setattr(pipe, FAST_ATTR, info)
    return info


def mark_step(config: FastPathConfig | None) -> None:
    """Tell inductor's CUDA graphs that a new, independent call begins (no-op without them)."""
    if config is not None and config.cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()


@torch.no_grad()
def decode_latents(
    pipe: Any, latents: torch.Tensor, batch_size: int = 0, config: FastPathConfig | None = None
) -> list[Image.Image]:
    """Decode SD latents to PIL images, ``batch_size`` latents per VAE call (0: all at once).

    The arithmetic is the stock pipeline's (``vae.decode(latents / scaling_factor)``, then
    ``x * 0.5 + 0.5`` clamped to [0, 1], then ``round(x * 255)`` in float32), done on the
    pipeline's device; only the 8-bit pixels are copied to the CPU.
    """
    check_int("batch_size", batch_size, 0, 1 << 20)
    vae = pipe.vae
    scaled = latents / vae.config.scaling_factor
    images: list[Image.Image] = []
    for chunk in scaled.split(batch_size or max(1, len(scaled))):
        mark_step(config)
        pixels = vae.decode(chunk, return_dict=False)[0]
        pixels = (pixels * 0.5 + 0.5).clamp(0, 1)
        array = (pixels.permute(0, 2, 3, 1).float() * 255).round().to(torch.uint8).cpu().numpy()
        images.extend(Image.fromarray(np.ascontiguousarray(row)) for row in array)
    return images


def image_agreement(
    reference: list[Image.Image],
    candidate: list[Image.Image],
    *,
    device: str | torch.device = "cpu",
    net: str = "alex",
    torch_home: str | None = None,
) -> dict[str, Any]:
    """How far ``candidate`` images are from ``reference`` images of the same seeds.

    LPIPS (``validation.metrics.backbones.LpipsEmbedder`` at the images' own size; its weights
    are labelled official or not) and pixel differences: mean and max LPIPS, mean absolute
    difference in 8-bit levels, and the lowest PSNR in dB.
    """
    from validation.metrics.backbones import LpipsEmbedder

    if len(reference) != len(candidate) or not reference:
        raise ValueError(
            f"candidate: needs one image per reference image, got {len(candidate)} for {len(reference)}"
        )
    embedder = LpipsEmbedder(net, size=0, device=device, torch_home=torch_home)
    ref = np.stack([np.asarray(image.convert("RGB")) for image in reference])
    cand = np.stack([np.asarray(image.convert("RGB")) for image in candidate])
    if ref.shape != cand.shape:
        raise ValueError(f"candidate: image shape {cand.shape[1:]} differs from {ref.shape[1:]}")
    lpips: list[float] = []
    for start in range(0, len(ref), 8):
        pair = [
            torch.from_numpy(batch[start : start + 8]).permute(0, 3, 1, 2).float() / 255.0
            for batch in (ref, cand)
        ]
        a, b = (embedder.forward(x)["lpips"].float() for x in pair)
        lpips.extend(((a - b) ** 2).sum(dim=1).cpu().tolist())
    mean_abs, psnr = pixel_differences(ref, cand)
    return {
        "images": len(ref),
        "lpips_mean": float(np.mean(lpips)),
        "lpips_max": float(np.max(lpips)),
        "lpips_weights": embedder.weights.to_dict()["label"],
        "mean_abs_diff_8bit": float(np.mean(mean_abs)),
        "psnr_min_db": min(psnr),
    }


def pixel_differences(
    reference: np.ndarray, candidate: np.ndarray
) -> tuple[list[float], list[float]]:
    """Per image of two ``N x H x W x C`` 8-bit stacks: mean absolute difference in levels,
    and PSNR in dB (``inf`` for identical images)."""
    diff = (reference.astype(np.float64) - candidate.astype(np.float64)).reshape(len(reference), -1)
    mse = (diff**2).mean(axis=1)
    psnr = [float("inf") if m == 0 else float(10 * np.log10(255.0**2 / m)) for m in mse]
    return np.abs(diff).mean(axis=1).tolist(), psnr
