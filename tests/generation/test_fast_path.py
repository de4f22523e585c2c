"""The fast Stable Diffusion path on the tiny pipeline: same images, validated settings, fp8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generation.fast import (
    FastPathConfig,
    Fp8Linear,
    convert_linears_to_fp8,
    decode_latents,
    image_agreement,
    prepare_pipeline,
)
from generation.generate import generate_images, read_provenance
from generation.plans import GenerationConfig, balanced_plan
from generation.sd_finetune.config import DEFAULT_CAPTION
from generation.sd_finetune.sampling import SDSampler
from generation.stable_diffusion import swap_scheduler
from generation.tiny_sd import TinySDConfig, build_tiny_sd_pipeline

RES = 64


def sampler(fast: FastPathConfig | None) -> SDSampler:
    pipe = swap_scheduler(build_tiny_sd_pipeline(TinySDConfig(image_size=RES)), "dpmsolver++")
    return SDSampler(
        pipe=pipe,
        caption_template=DEFAULT_CAPTION,
        resolution=RES,
        num_inference_steps=3,
        guidance_scale=7.5,
        fast=fast,
    )


def pixels(paths: list[Path]) -> np.ndarray:
    arrays = []
    for path in paths:
        with Image.open(path) as image:
            arrays.append(np.asarray(image.convert("RGB"), dtype=np.int16))
    return np.stack(arrays)


@pytest.fixture(scope="module")
def plain_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, np.ndarray]:
    """Seven images of the plain path (stock pipeline call), batches of 4 then 3."""
    plan = balanced_plan([1, 6], ["nevus", "melanoma"], 2, 11)[:7]
    plain = sampler(None)
    out = tmp_path_factory.mktemp("plain")
    images = generate_images(plain, plan, out, batch_size=4, provenance=plain.provenance())
    return plan, pixels([image.path for image in images])


def test_fast_path_defaults_give_the_plain_paths_pixels_through_writer_threads(
    plain_images: tuple[list, np.ndarray], tmp_path: Path
) -> None:
    plan, expected = plain_images
    # Decode two latents per VAE call and pad the short last batch: neither changes a pixel.
    fast = sampler(FastPathConfig(vae_batch_size=2, pad_batches=True, writer_threads=3))
    unet_batches: list[int] = []
    fast.pipe.unet.register_forward_pre_hook(lambda module, args: unet_batches.append(len(args[0])))
    images = generate_images(
        fast, plan, tmp_path, batch_size=4, provenance=fast.provenance(), writer_threads=3
    )
    assert [image.index for image in images] == [item.index for item in plan]
    assert np.array_equal(pixels([image.path for image in images]), expected)
    # Guidance doubles each batch; the last batch of 3 ran padded to 4.
    assert set(unet_batches) == {8}
    assert read_provenance(images[0].path)["fast_path"]["vae_batch_size"] == 2


def test_channels_last_and_fused_projections_stay_within_one_level(
    plain_images: tuple[list, np.ndarray], tmp_path: Path
) -> None:
    plan, expected = plain_images
    fast = sampler(FastPathConfig(channels_last=True, fuse_qkv=True, vae_batch_size=3))
    assert fast.pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    images = generate_images(fast, plan, tmp_path, batch_size=4, provenance=fast.provenance())
    difference = np.abs(pixels([image.path for image in images]) - expected)
    assert difference.max() <= 1
    assert (difference > 0).mean() < 1e-3


def test_decode_latents_is_the_pipelines_own_decoding() -> None:
    pipe = build_tiny_sd_pipeline(TinySDConfig(image_size=RES))
    latents = torch.randn(3, 4, RES // 2, RES // 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    expected = pipe.image_processor.postprocess(decoded, output_type="pil")
    for ours, theirs in zip(decode_latents(pipe, latents, 2), expected, strict=True):
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"dtype": "fp64"}, "dtype"),
        ({"compile_mode": "fast"}, "compile_mode"),
        ({"cuda_graphs": True}, "cuda_graphs"),
        ({"compile_vae": True}, "compile_vae"),
        ({"fp8": True}, "fp8"),
        ({"channels_last": "yes"}, "channels_last"),
        ({"vae_batch_size": -1}, "vae_batch_size"),
        ({"writer_threads": 65}, "writer_threads"),
    ],
)
def test_invalid_settings_are_refused_naming_the_setting(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}:"):
        FastPathConfig(**kwargs)
    with pytest.raises(ValueError, match=rf"^{name}:"):
        GenerationConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"dtype": "fp16"}, "dtype"),
        ({"compile_mode": "default", "cuda_graphs": True}, "cuda_graphs"),
        ({"dtype": "bf16", "fp8": True}, "fp8"),
    ],
)
def test_settings_the_cpu_cannot_run_are_refused_before_anything_changes(
    kwargs: dict, name: str
) -> None:
    config = FastPathConfig(**kwargs)
    with pytest.raises(ValueError, match=rf"^{name}:"):
        config.check_device("cpu")
    pipe = build_tiny_sd_pipeline(TinySDConfig(image_size=RES))
    with pytest.raises(ValueError, match=rf"^{name}:"):
        prepare_pipeline(pipe, config)
    assert pipe.unet.dtype == torch.float32
    assert not hasattr(pipe, "fairderm_fast_path")


def test_a_pipeline_is_prepared_once_and_never_with_another_config() -> None:
    pipe = build_tiny_sd_pipeline(TinySDConfig(image_size=RES))
    first = prepare_pipeline(pipe, FastPathConfig(dtype="bf16"))
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    assert prepare_pipeline(pipe, FastPathConfig(dtype="bf16")) is first
    with pytest.raises(ValueError, match="^config:"):
        prepare_pipeline(pipe, FastPathConfig(dtype="fp32"))


def test_fused_projections_are_refused_with_lora_adapters() -> None:
    from peft import LoraConfig

    pipe = build_tiny_sd_pipeline(TinySDConfig(image_size=RES))
    pipe.unet.add_adapter(LoraConfig(r=2, target_modules=["to_q", "to_v"]))
    with pytest.raises(ValueError, match="^fuse_qkv:"):
        prepare_pipeline(pipe, FastPathConfig(fuse_qkv=True))


def test_generation_config_carries_the_fast_path_and_round_trips() -> None:
    config = GenerationConfig(dtype="bf16", channels_last=True, compile_mode="default", cuda_graphs=True, writer_threads=8)  # fmt: skip
    assert GenerationConfig.from_dict(config.to_dict()) == config
    fast = config.fast_path("/cache")
    assert (fast.dtype, fast.torch_compile_mode, fast.compile_cache_dir) == (
        "bf16",
        "reduce-overhead",
        "/cache",
    )
    assert fast.static_batches
    assert config.uses_fast_path and not GenerationConfig(writer_threads=8).uses_fast_path


def test_compile_cache_dir_is_used_although_torch_filled_in_its_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # Importing diffusers makes inductor write its default folder into the variable.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    pipe = build_tiny_sd_pipeline(TinySDConfig(image_size=RES))
    cache = tmp_path / "inductor"
    info = prepare_pipeline(
        pipe, FastPathConfig(compile_mode="default", compile_cache_dir=str(cache))
    )
    assert info["inductor_cache_dir"] == str(cache) and cache.is_dir()
    # A folder the user chose is kept.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    pipe = build_tiny_sd_pipeline(TinySDConfig(image_size=RES))
    info = prepare_pipeline(
        pipe, FastPathConfig(compile_mode="default", compile_cache_dir=str(cache))
    )
    assert info["inductor_cache_dir"] == str(tmp_path / "mine")


def _scaled_mm_on_cpu() -> bool:
    try:
        Fp8Linear(torch.nn.Linear(16, 16))(torch.randn(2, 16, dtype=torch.bfloat16))
    except (RuntimeError, NotImplementedError):
        return False
    return True


@pytest.mark.skipif(not _scaled_mm_on_cpu(), reason="this torch has no CPU fp8 matrix product")
def test_fp8_linear_approximates_the_linear_layer() -> None:
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    torch.nn.init.normal_(linear.weight, generator=generator)
    torch.nn.init.normal_(linear.bias, generator=generator)
    fp8 = Fp8Linear(linear.to(torch.bfloat16))
    x = torch.randn(3, 5, 64, generator=generator).to(torch.bfloat16)
    expected, got = linear(x).float(), fp8(x).float()
    assert got.shape == (3, 5, 48) and fp8.weight_fp8.dtype == torch.float8_e4m3fn
    error = ((got - expected).norm() / expected.norm()).item()
    assert 0 < error < 0.1  # quantised (not exact), yet close: e4m3 keeps 3 mantissa bits


@pytest.mark.skipif(not _scaled_mm_on_cpu(), reason="this torch has no CPU fp8 matrix product")
def test_fp8_conversion_touches_only_attention_and_feed_forward_layers() -> None:
    pipe = build_tiny_sd_pipeline(TinySDConfig(image_size=RES))
    unet = pipe.unet.to(torch.bfloat16)
    sample = torch.randn(2, 4, RES // 2, RES // 2, generator=torch.Generator().manual_seed(1))
    states = torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(2))
    inputs = (sample.to(torch.bfloat16), torch.tensor([500, 500]), states.to(torch.bfloat16))
    with torch.no_grad():
        expected = unet(*inputs).sample.float()
        converted = convert_linears_to_fp8(unet)
        got = unet(*inputs).sample.float()
    names = [name for name, module in unet.named_modules() if isinstance(module, Fp8Linear)]
    assert converted == len(names) > 0
    assert all(".attn" in name or ".ff." in name for name in names)
    assert type(unet.time_embedding.linear_1) is torch.nn.Linear
    assert 0 < ((got - expected).norm() / expected.norm()).item() < 0.1


def test_image_agreement_measures_distance_to_reference_images(tmp_path: Path) -> None:
    from validation.metrics.weights import LPIPS_SQUEEZE, stage_standin

    stage_standin(LPIPS_SQUEEZE, tmp_path)
    rng = np.random.default_rng(0)
    reference = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]  # fmt: skip
    noisy = [
        Image.fromarray(np.clip(np.asarray(im, np.int16) + rng.integers(-40, 41, (32, 32, 3)), 0, 255).astype(np.uint8))
        for im in reference
    ]  # fmt: skip
    same = image_agreement(reference, reference, net="squeeze", torch_home=str(tmp_path))
    assert same["lpips_max"] == 0 and same["psnr_min_db"] == float("inf")
    assert "non-official" in same["lpips_weights"]
    differs = image_agreement(reference, noisy, net="squeeze", torch_home=str(tmp_path))
    assert differs["lpips_mean"] > 0 and 10 < differs["psnr_min_db"] < 40
    assert differs["mean_abs_diff_8bit"] > 5
    with pytest.raises(ValueError, match="^candidate:"):
        image_agreement(reference, noisy[:2], net="squeeze", torch_home=str(tmp_path))


def test_fp8_conversion_leaves_the_layers_it_is_told_to_keep() -> None:
    """An adapter bank writes into its layers: fp8 must not replace them by copies."""
    unet = build_tiny_sd_pipeline(TinySDConfig(image_size=RES)).unet
    every = sorted(
        name
        for name, module in unet.named_modules()
        if type(module) is torch.nn.Linear and (".attn" in name or ".ff." in name)
    )
    keep = frozenset(name for name in every if name.endswith(("to_q", "to_v")))
    assert keep and len(keep) < len(every)
    converted = convert_linears_to_fp8(unet, keep=keep)
    kept = {name for name, module in unet.named_modules() if type(module) is torch.nn.Linear}
    assert keep <= kept
    assert converted == sum(isinstance(m, Fp8Linear) for m in unet.modules()) > 0
    assert converted == len([n for n in every if n not in keep and n not in kept])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_compiled_unet_sees_adapter_switches_without_recompiling() -> None:
    """The adapter bank's in-place copies reach inductor's compiled UNet: each adapter's output
    equals eager peft's, and switching adds no graph (CPU inductor; CUDA graphs unchecked)."""
    from peft import LoraConfig
    from torch._dynamo.utils import counters

    from generation.fast import BANK_ATTR

    torch._dynamo.reset()
    # One ResNet per block: half the layers to compile.
    pipe = build_tiny_sd_pipeline(TinySDConfig(image_size=32, unet_layers_per_block=1))
    for name in ("fst1", "fst5"):
        config = LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
        pipe.unet.add_adapter(config, adapter_name=name)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for path, parameter in pipe.unet.named_parameters():
            if "lora_B" in path:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    inputs = (
        torch.randn(2, 4, 16, 16, generator=generator),
        torch.tensor([10, 10]),
        torch.randn(2, 77, 32, generator=generator),
    )
    eager = {}
    with torch.no_grad():
        for name in ("fst1", "fst5"):
            pipe.unet.set_adapters([name])
            eager[name] = pipe.unet(*inputs).sample
    assert (eager["fst1"] - eager["fst5"]).abs().max() > 1e-3  # the adapters differ
    info = prepare_pipeline(pipe, FastPathConfig(fuse_lora=True, compile_mode="default"))
    assert info["lora_fusion"] == "per-adapter" and info["torch_compile_mode"] == "default"
    bank = getattr(pipe, BANK_ATTR)
    counters.clear()
    with torch.no_grad():
        for name in ("fst1", "fst5", "fst1"):
            bank.activate(name)
            got = pipe.unet(*inputs).sample
            assert torch.allclose(got, eager[name], atol=1e-4), name
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()
