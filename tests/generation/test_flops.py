"""FLOP counting: the SD 1.5 figures of issue #11, CPU attention, scaling with steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from generation.flops import count_flops, sd_flops_per_image
from generation.tiny_sd import TinySDConfig, build_tiny_sd_pipeline


def test_sd15_counts_match_the_issues_per_image_figures() -> None:
    # Issue #11, measured independently: "per image 40.2 TFLOP of UNet at 25 steps plus
    # 2.5 TFLOP of VAE decode" (512 px, guidance on). Built on the meta device: no memory.
    with torch.device("meta"):
        pipe = build_tiny_sd_pipeline(TinySDConfig.sd15())
    flops = sd_flops_per_image(pipe, height=512, width=512, unet_calls=25)
    assert flops["unet"] / 1e12 == pytest.approx(40.2, rel=0.01)
    assert flops["vae_decode"] / 1e12 == pytest.approx(2.5, rel=0.02)
    assert flops["total"] == flops["unet"] + flops["vae_decode"] + flops["text_encoder"]
    assert flops["unet_split"]["aten.convolution"] > 0.5  # convolutions dominate
    assert sum(flops["unet_split"].values()) == pytest.approx(1.0, abs=1e-3)


def test_counts_scale_with_steps_guidance_and_size() -> None:
    pipe = build_tiny_sd_pipeline(TinySDConfig())
    base = sd_flops_per_image(pipe, height=64, width=64, unet_calls=10)
    assert sd_flops_per_image(pipe, height=64, width=64, unet_calls=20)["unet"] == 2 * base["unet"]
    unguided = sd_flops_per_image(pipe, height=64, width=64, unet_calls=10, guidance=False)
    assert unguided["unet"] * 2 == base["unet"]
    larger = sd_flops_per_image(pipe, height=128, width=128, unet_calls=10)
    assert larger["vae_decode"] > 3.9 * base["vae_decode"]  # 4x the pixels (and then some)
    with pytest.raises(ValueError, match="^unet_calls:"):
        sd_flops_per_image(pipe, height=64, width=64, unet_calls=0)


def test_fused_cpu_attention_is_counted_like_its_matrix_products() -> None:
    q, k, v = (torch.randn(2, 3, 40, 16, requires_grad=True) for _ in range(3))
    fused, ops = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    plain, _ = count_flops(lambda: torch.softmax(q @ k.transpose(-1, -2) / 4, -1) @ v)
    assert fused == plain == 2 * 2 * (2 * 3 * 40 * 40 * 16)
    assert any("attention" in op for op in ops)
    backward, _ = count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert backward > 2 * fused
