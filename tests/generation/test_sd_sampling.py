"""Sampling a fine-tuned Stable Diffusion through the project's generation path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generation.conditional.data import TrainingRecord
from generation.generate import generate_images, read_provenance
from generation.plans import balanced_plan
from generation.sd_finetune.config import LoraTrainingConfig
from generation.stable_diffusion import load_sd_pipeline
from generation.tiny_sd import TinySDConfig, save_tiny_sd

RES = 32


@pytest.fixture(scope="module")
def lora_folder(
    tmp_path_factory: pytest.TempPathFactory, sd_records: list[TrainingRecord]
) -> Iterator[tuple[Path, Path]]:
    from generation.sd_finetune.lora import train_lora

    root = tmp_path_factory.mktemp("sd-sampling")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        tiny = save_tiny_sd(root / "tiny-sd", TinySDConfig(image_size=RES))
        config = LoraTrainingConfig(
            base_model=str(tiny),
            fsts=(1, 5),
            resolution=RES,
            batch_size=2,
            train_steps=2,
            learning_rate=0.02,
            mixed_precision="no",
            rank=2,
        )
        result = train_lora(config, sd_records, root / "run")
        yield tiny, result.output_path


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_txt2img_through_generate_images_matches_a_stock_pipeline_call(
    lora_folder: tuple[Path, Path], tmp_path: Path
) -> None:
    from generation.sd_finetune.sampling import SDSampler

    tiny, lora = lora_folder
    sampler = SDSampler.from_lora(str(tiny), lora, num_inference_steps=2, guidance_scale=3.0)
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
