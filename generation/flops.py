"""Counting the matrix FLOPs of a model, for throughput as a share of the hardware's peak.

``torch.utils.flop_counter.FlopCounterMode`` counts what runs on the tensor cores: matrix
products (``mm``, ``addmm``, ``bmm``, ``_scaled_mm``), convolutions (forward and backward) and
fused attention; element-wise work (norms, activations, the scheduler) is not counted. One
multiply-add counts as two FLOPs.

:func:`sd_flops_per_image` counts on "meta" copies of a pipeline's models, built from their
configs: no memory, no arithmetic, the same shapes (the count depends on the architecture and
the sizes, not on the weights, their dtype or the device). On a meta device attention runs as
plain matrix products, which FlopCounterMode counts like the fused kernels' formulas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from validation.checks import check_int

#: Tokens of an SD 1.x/2.x prompt.
PROMPT_TOKENS = 77


def flop_counter() -> FlopCounterMode:
    """A ``FlopCounterMode`` that also counts fused attention on the CPU.

    torch has formulas for the CUDA attention kernels only; the CPU's
    ``_scaled_dot_product_flash_attention_for_cpu`` (and its backward) do the same matrix
    products and get the same formulas here, so CPU and GPU counts agree.
    """
    from torch.utils import flop_counter as formulas

    def forward(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
        return int(formulas.sdpa_flop_count(query, key, value))

    def backward(grad: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
        return int(formulas.sdpa_backward_flop_count(grad, query, key, value))

    mapping: dict[Any, Any] = {}
    for name, formula in (
        ("_scaled_dot_product_flash_attention_for_cpu", forward),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", backward),
    ):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            mapping[op] = formula
    return FlopCounterMode(display=False, custom_mapping=mapping)


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """Run ``fn()`` under :func:`flop_counter`: total FLOPs and FLOPs per aten operator."""
    with flop_counter() as counter:
        fn()
    by_op: dict[str, int] = {}
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        by_op[str(op)] = by_op.get(str(op), 0) + int(flops)
    return int(counter.get_total_flops()), by_op


def meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An untrained copy of a diffusers or transformers model on the meta device."""
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError(f"model: {type(model).__name__} has no config to rebuild it from")
    with torch.device("meta"):
        if hasattr(type(model), "from_config") and not hasattr(config, "to_dict"):
            copy = type(model).from_config(config)  # diffusers: a FrozenDict config
        else:
            copy = type(model)(config)  # transformers: a PretrainedConfig
    return copy.eval()


def sd_flops_per_image(
    pipe: Any,
    *,
    height: int,
    width: int,
    unet_calls: int,
    guidance: bool = True,
) -> dict[str, Any]:
    """Matrix FLOPs of one txt2img image from a Stable Diffusion pipeline.

    Args:
        pipe: A diffusers Stable Diffusion pipeline (its ``unet``, ``vae`` and
            ``text_encoder`` configs are used; the models themselves are not run).
        height, width (`int`): Image size in pixels.
        unet_calls (`int`): UNet evaluations per image (``len(scheduler.timesteps)`` after
            sampling: 25 for DPM-Solver++ at 25 steps, 51 for PNDM at 50).
        guidance (`bool`, defaults to `True`): Classifier-free guidance doubles the UNet's
            batch (and the text encoder's: the empty prompt is encoded per image).

    Returns:
        `dict`: ``unet_per_call`` (one UNet evaluation of one image, guidance included),
        ``unet``, ``vae_decode``, ``text_encoder`` and ``total`` per image, plus the UNet's
        split by operator (fractions of ``unet_per_call``).
    """
    check_int("height", height, 8, 1 << 16)
    check_int("width", width, 8, 1 << 16)
    check_int("unet_calls", unet_calls, 1, 100_000)
    rows = 2 if guidance else 1
    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    latent_h, latent_w = height // vae_scale, width // vae_scale
    unet = meta_copy(pipe.unet)
    vae = meta_copy(pipe.vae)
    text = meta_copy(pipe.text_encoder)
    channels = pipe.unet.config.in_channels
    cross = pipe.unet.config.cross_attention_dim
    latents = torch.zeros(rows, channels, latent_h, latent_w, device="meta")
    states = torch.zeros(rows, PROMPT_TOKENS, cross, device="meta")
    timestep = torch.zeros(rows, dtype=torch.long, device="meta")
    ids = torch.zeros(rows, PROMPT_TOKENS, dtype=torch.long, device="meta")
    with torch.no_grad():
        unet_flops, unet_ops = count_flops(lambda: unet(latents, timestep, states))
        vae_flops, _ = count_flops(
            lambda: vae.decode(latents[:1, : vae.config.latent_channels], return_dict=False)
        )
        text_flops, _ = count_flops(lambda: text(ids))
    unet_total = unet_flops * unet_calls
    return {
        "height": height,
        "width": width,
        "unet_calls": unet_calls,
        "guidance": guidance,
        "unet_per_call": unet_flops,
        "unet": unet_total,
        "vae_decode": vae_flops,
        "text_encoder": text_flops,
        "total": unet_total + vae_flops + text_flops,
        "unet_split": {op: round(flops / unet_flops, 4) for op, flops in unet_ops.items()}
        if unet_flops
        else {},
    }
