"""Sampling a fine-tuned Stable Diffusion through the project's generation path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from generation.conditional.data import TrainingRecord
from generation.generate import batches, generate_images, read_provenance
from generation.plans import balanced_plan
from generation.sd_finetune.config import LoraTrainingConfig
from generation.stable_diffusion import load_sd_pipeline
from generation.tiny_sd import TinySDConfig, save_tiny_sd

RES = 32


def train(tiny: Path, records: list[TrainingRecord], out: Path, **overrides: Any) -> Path:
    """A LoRA trained two steps on the tiny pipeline (non-identity: gaussian init, lr 0.02)."""
    from generation.sd_finetune.lora import train_lora

    config = LoraTrainingConfig(
        base_model=str(tiny),
        fsts=(1, 5),
        resolution=RES,
        batch_size=2,
        train_steps=2,
        learning_rate=0.02,
        mixed_precision="no",
        rank=2,
        **overrides,
    )
    return train_lora(config, records, out).output_path


@pytest.fixture(scope="module")
def lora_folder(
    tmp_path_factory: pytest.TempPathFactory, sd_records: list[TrainingRecord]
) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("sd-sampling")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        tiny = save_tiny_sd(root / "tiny-sd", TinySDConfig(image_size=RES))
        yield tiny, train(tiny, sd_records, root / "run")


@pytest.fixture(scope="module")
def more_loras(
    lora_folder: tuple[Path, Path], sd_records: list[TrainingRecord]
) -> Iterator[dict[str, Path]]:
    """A shared adapter on the UNet and the text encoder, and per-FST adapters on both."""
    tiny, shared = lora_folder
    root = shared.parent.parent
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield {
            "unet": shared,
            "unet+text-encoder": train(
                tiny, sd_records, root / "text", train_text_encoder=True, alpha=8
            ),
            "per-fst": train(
                tiny, sd_records, root / "per-fst", adapters="per_fst", train_text_encoder=True
            ),
        }


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_txt2img_through_generate_images_matches_a_stock_pipeline_call(
    lora_folder: tuple[Path, Path], tmp_path: Path
) -> None:
    from generation.sd_finetune.sampling import SDSampler

    tiny, lora = lora_folder
    sampler = SDSampler.from_lora(str(tiny), lora, num_inference_steps=2, guidance_scale=3.0)
    assert sampler.batch_key is None  # one shared adapter: batches follow the plan
    plan = balanced_plan([1, 5], ["nevus", "melanoma"], 1, 7)
    images = generate_images(sampler, plan, tmp_path, batch_size=4, provenance=sampler.provenance())
    assert len(images) == 4
    provenance = read_provenance(images[0].path)
    assert provenance["model"]["base_model"]["standin"] is True
    assert provenance["model"]["lora_training"]["rank"] == 2
    assert provenance["mode"] == "txt2img"

    stock = load_sd_pipeline(tiny)
    stock.load_lora_weights(str(lora))
    stock.set_progress_bar_config(disable=True)
    first = plan[0]
    expected = stock(
        sampler.prompt(first),
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(first.seed),
        height=RES,
        width=RES,
    ).images[0]
    with Image.open(images[0].path) as ours:
        assert np.abs(np.asarray(ours, np.int16) - np.asarray(expected, np.int16)).max() <= 1


def test_img2img_at_two_strengths_records_source_and_lesion_preservation(
    lora_folder: tuple[Path, Path], sd_records: list[TrainingRecord], tmp_path: Path
) -> None:
    from generation.sd_finetune.sampling import SDSampler

    tiny, lora = lora_folder
    light = {}
    for record in sd_records:
        if record.fst == 1:
            light.setdefault(record.diagnosis, []).append(Path(record.path))
    plan = balanced_plan([5], ["nevus", "melanoma"], 2, 3)
    pixels = {}
    for strength in (0.3, 0.9):
        sampler = SDSampler.from_lora(
            str(tiny), lora, num_inference_steps=4, mode="img2img", strength=strength, sources=light
        )
        out = tmp_path / f"s{strength}"
        images = generate_images(sampler, plan, out, batch_size=2, provenance=sampler.provenance())
        for image in images:
            provenance = read_provenance(image.path)
            assert provenance["strength"] == strength and provenance["mode"] == "img2img"
            assert (
                provenance["source_image"]
                == sampler.source_for(next(i for i in plan if i.index == image.index)).name
            )
            assert provenance["source_image"].startswith(f"1-{image.diagnosis}-")
            assert set(provenance["lesion_preservation"]) == {
                "found",
                "ssim",
                "mask_iou",
                "lesion_share",
            }
        with Image.open(images[0].path) as png:
            pixels[strength] = np.asarray(png, np.int16)
    assert np.abs(pixels[0.3] - pixels[0.9]).max() > 0


def test_img2img_needs_sources_and_a_valid_strength(lora_folder: tuple[Path, Path]) -> None:
    from generation.sd_finetune.sampling import SDSampler

    tiny, lora = lora_folder
    with pytest.raises(ValueError, match="^sources: img2img needs source images"):
        SDSampler.from_lora(str(tiny), lora, mode="img2img")
    with pytest.raises(ValueError, match="^strength: "):
        SDSampler.from_lora(str(tiny), lora, strength=0.0)


def generated_pixels(sampler: Any, out: Path) -> np.ndarray:
    plan = balanced_plan([1, 5], ["nevus", "melanoma"], 1, 7)
    images = generate_images(sampler, plan, out, batch_size=4, provenance=sampler.provenance())
    arrays = []
    for image in images:
        with Image.open(image.path) as png:
            arrays.append(np.asarray(png, np.int16))
    return np.stack(arrays)


@pytest.mark.parametrize("layout", ["unet", "unet+text-encoder"])
def test_a_shared_lora_fused_into_the_base_weights_makes_the_same_images(
    lora_folder: tuple[Path, Path], more_loras: dict[str, Path], tmp_path: Path, layout: str
) -> None:
    from generation.fast import FastPathConfig, has_lora
    from generation.sd_finetune.sampling import SDSampler

    tiny, _ = lora_folder
    lora = more_loras[layout]

    def make(fast: FastPathConfig) -> SDSampler:
        return SDSampler.from_lora(
            str(tiny), lora, num_inference_steps=2, guidance_scale=3.0, fast=fast
        )

    unfused, fused = make(FastPathConfig()), make(FastPathConfig(fuse_lora=True))
    with_text = layout == "unet+text-encoder"
    assert has_lora(unfused.pipe.unet) and has_lora(unfused.pipe.text_encoder) == with_text
    assert not has_lora(fused.pipe.unet) and not has_lora(fused.pipe.text_encoder)
    assert fused.provenance()["lora_fusion"] == "shared"
    assert unfused.provenance()["lora_fusion"] == "none"
    assert fused.provenance()["fast_path"]["fuse_lora"] is True
    reference = generated_pixels(unfused, tmp_path / "unfused")
    assert np.abs(generated_pixels(fused, tmp_path / "fused") - reference).max() <= 1
    # The adapter matters: without it the images differ, so the fused weights carry it.
    unfused.pipe.disable_lora()
    assert np.abs(generated_pixels(unfused, tmp_path / "base") - reference).max() > 2
    # With no peft layers left, the projections may be fused too.
    both = make(FastPathConfig(fuse_lora=True, fuse_qkv=True))
    assert np.abs(generated_pixels(both, tmp_path / "both") - reference).max() <= 2


def test_per_fst_adapters_fused_into_weight_banks_make_the_same_images(
    lora_folder: tuple[Path, Path], more_loras: dict[str, Path], tmp_path: Path
) -> None:
    from generation.fast import BANK_ATTR, FastPathConfig, has_lora
    from generation.sd_finetune.sampling import SDSampler

    tiny, _ = lora_folder
    lora = more_loras["per-fst"]
    fused = SDSampler.from_lora(
        str(tiny), lora, num_inference_steps=2, fast=FastPathConfig(fuse_lora=True)
    )
    plain = SDSampler.from_lora(str(tiny), lora, num_inference_steps=2, fast=FastPathConfig())
    assert has_lora(plain.pipe.unet) and has_lora(plain.pipe.text_encoder)
    assert not has_lora(fused.pipe.unet) and not has_lora(fused.pipe.text_encoder)
    assert fused.adapters == {1: "fst1", 5: "fst5"}
    assert fused.provenance()["lora_fusion"] == "per-adapter"
    bank = getattr(fused.pipe, BANK_ATTR)
    assert bank.names == ("fst1", "fst5") and bank.active is None
    assert {key.split(".")[0] for key in bank.targets} == {"unet", "text_encoder"}
    # generate_images gives it one skin type per batch (one adapter per model call).
    plan = balanced_plan([1, 5], ["nevus", "melanoma"], 1, 7)
    assert fused.batch_key is not None
    assert [{i.fst for i in b} for b in batches(plan, 4, fused.batch_key)] == [{1}, {5}]
    reference = generated_pixels(plain, tmp_path / "plain")
    assert np.abs(generated_pixels(fused, tmp_path / "fused") - reference).max() <= 1
    # The two adapters differ, so which one is active matters.
    plain.pipe.set_adapters(["fst5"])
    as_fst5 = SDSampler(
        pipe=plain.pipe,
        caption_template=plain.caption_template,
        resolution=plain.resolution,
        num_inference_steps=2,
        embeddings=plain.embeddings,
    )
    assert np.abs(generated_pixels(as_fst5, tmp_path / "all-fst5") - reference).max() > 2
    # Switching copies in place (a compiled model keeps its weights' addresses), and never
    # drifts: back on an adapter, the weights are exactly what they were.
    key, layer = next(iter(bank.targets.items()))
    address = layer.weight.data_ptr()
    bank.activate("fst1")
    first = layer.weight.detach().clone()
    bank.activate("fst5")
    assert not torch.equal(layer.weight, first) and layer.weight.data_ptr() == address
    bank.activate("fst1")
    assert torch.equal(layer.weight, first) and layer.weight.data_ptr() == address
    with pytest.raises(ValueError, match="^name: no adapter 'fst3'"):
        bank.activate("fst3")
    with pytest.raises(ValueError, match="^fuse_qkv: not possible with several LoRA adapters"):
        SDSampler.from_lora(str(tiny), lora, fast=FastPathConfig(fuse_lora=True, fuse_qkv=True))
