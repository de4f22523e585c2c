"""Textual inversion and LoRA on the tiny Stable Diffusion kit, loaded back with stock diffusers.

The kit has random weights (a stand-in, labelled so); these tests check the mechanics that the
real 512 px runs use: only the right parameters train, outputs load with diffusers' own
loaders and reproduce the training modules' images for the same seed, checkpoints resume to
the same weights, and mixed precision keeps the trained parameters in fp32.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file

from generation.conditional.data import TrainingRecord
from generation.conditional.training import TrainingCallback
from generation.sd_finetune.config import (
    LoraTrainingConfig,
    TextualInversionConfig,
    caption,
    condition_token,
)
from generation.stable_diffusion import load_sd_pipeline
from generation.tiny_sd import TinySDConfig, save_tiny_sd

RES = 32


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield save_tiny_sd(root / "tiny-sd", TinySDConfig(image_size=RES))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def base(tiny_folder: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "base_model": str(tiny_folder),
        "fsts": (1, 5),
        "diagnoses": ("nevus", "melanoma"),
        "resolution": RES,
        "batch_size": 2,
        "train_steps": 3,
        "mixed_precision": "no",
        "checkpoint_every": 10,
        "sample_every": 3,
        "validation_steps": 2,
        **overrides,
    }


class Recorder(TrainingCallback):
    def __init__(self, stop_after: int | None = None):
        self.grids: dict[int, PIL.Image.Image] = {}
        self.steps: list[int] = []
        self.stop_after = stop_after

    def on_step(self, step: int, total_steps: int, loss: float, info: dict[str, Any]) -> None:
        self.steps.append(step)

    def on_sample_grid(self, step: int, image: PIL.Image.Image) -> None:
        self.grids[step] = image

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.steps) >= self.stop_after


def stock_grid(pipe: Any, prompts: list[str], seed: int, steps: int) -> np.ndarray:
    """What sample_grid draws, made by a pipeline loaded with stock diffusers calls."""
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(seed)
    images = pipe(
        prompts, num_inference_steps=steps, generator=generator, height=RES, width=RES
    ).images
    return np.concatenate([np.asarray(i, dtype=np.int16) for i in images], axis=1)


def prompts_for(template: str, token_scheme: str | None = None) -> list[str]:
    cells = [(1, "melanoma"), (1, "nevus"), (5, "melanoma"), (5, "nevus")]
    return [
        caption(template, f, d, condition_token(token_scheme, f, d) if token_scheme else "")
        for f, d in cells
    ]


# --- configs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "overrides", "field"),
    [
        (LoraTrainingConfig, {"rank": 0}, "rank"),
        (LoraTrainingConfig, {"resolution": 500}, "resolution"),
        (LoraTrainingConfig, {"mixed_precision": "fp8"}, "mixed_precision"),
        (LoraTrainingConfig, {"caption_template": "a {lesion}"}, "caption_template"),
        (LoraTrainingConfig, {"caption_template": "on {token}"}, "caption_template"),
        (LoraTrainingConfig, {"diagnoses": ("wart",)}, "diagnoses"),
        (LoraTrainingConfig, {"fsts": (7,)}, "fsts"),
        (LoraTrainingConfig, {"target_modules": ("to q",)}, "target_modules"),
        (TextualInversionConfig, {"caption_template": "a {diagnosis}"}, "caption_template"),
        (TextualInversionConfig, {"token_scheme": "cell"}, "token_scheme"),
    ],
)
def test_config_errors_name_the_field(cls: Any, overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        cls(**overrides)


def test_configs_round_trip_and_refuse_the_other_kind() -> None:
    lora = LoraTrainingConfig(rank=4, alpha=16, target_modules=("to_q", "to_v"))
    assert LoraTrainingConfig.from_dict(lora.to_dict()) == lora
    with pytest.raises(ValueError, match="^kind: "):
        TextualInversionConfig.from_dict(lora.to_dict())
    with pytest.raises(ValueError, match="unknown field"):
        LoraTrainingConfig.from_dict({**lora.to_dict(), "rnak": 4})


def test_captions_and_tokens() -> None:
    assert caption(LoraTrainingConfig().caption_template, 5, "melanoma") == (
        "dermoscopy image of melanoma on Fitzpatrick type V skin"
    )
    assert condition_token("fst_diagnosis", 5, "seborrheic_keratosis") == (
        "<fst5-seborrheic-keratosis>"
    )
    assert condition_token("fst_group", 6, "nevus") == "<fst-v-vi>"
    assert condition_token("fst", 2, "nevus") == "<fst2>"


# --- textual inversion ----------------------------------------------------------------------


def test_textual_inversion_trains_only_new_rows_and_loads_with_stock_diffusers(
    tiny_folder: Path, sd_records: list[TrainingRecord], tmp_path: Path
) -> None:
    from generation.sd_finetune.textual_inversion import (
        add_tokens,
        learned_tokens,
        train_textual_inversion,
    )

    # 16 balanced draws over 4 cells: every token appears in some batch (seed 0).
    config = TextualInversionConfig(
        **base(tiny_folder, learning_rate=0.05, train_steps=4, batch_size=4, sample_every=4)
    )
    recorder = Recorder()
    result = train_textual_inversion(config, sd_records, tmp_path / "ti", callbacks=recorder)
    assert result.final_step == 4 and not result.stopped
    assert result.base_model["standin"] is True
    files = learned_tokens(result.output_path)
    tokens = ["<fst1-melanoma>", "<fst1-nevus>", "<fst5-melanoma>", "<fst5-nevus>"]
    assert list(files) == tokens

    # Stock loading: one load_textual_inversion call per file.
    pipe = load_sd_pipeline(tiny_folder)
    reference = load_sd_pipeline(tiny_folder)
    for token, path in files.items():
        pipe.load_textual_inversion(str(path), token=token)
    old = reference.text_encoder.get_input_embeddings().weight
    new = pipe.text_encoder.get_input_embeddings().weight
    assert torch.equal(new[: old.shape[0]], old), "a row of the base vocabulary moved"
    learned = new[old.shape[0] :]
    # The starting rows (initializer word + seeded noise), rebuilt: training moved every one.
    start = load_sd_pipeline(tiny_folder)
    ids = add_tokens(start, tokens, config.initializer_token, config.init_noise, config.seed)
    initial = start.text_encoder.get_input_embeddings().weight[ids]
    assert all(not torch.allclose(a, b) for a, b in zip(learned, initial, strict=True))

    # The tokens change the images, and the stock pipeline draws what training drew.
    prompts = prompts_for(config.caption_template, "fst_diagnosis")
    trained = stock_grid(pipe, prompts, config.seed, config.validation_steps)
    assert np.abs(trained - np.asarray(recorder.grids[4], dtype=np.int16)).max() <= 1
    with torch.no_grad():
        new[old.shape[0] :] = initial
    untrained = stock_grid(pipe, prompts, config.seed, config.validation_steps)
    assert np.abs(trained - untrained).max() > 0


# --- LoRA -------------------------------------------------------------------------------------


def test_lora_output_loads_with_stock_diffusers_and_reproduces_training_samples(
    tiny_folder: Path, sd_records: list[TrainingRecord], tmp_path: Path
) -> None:
    from generation.sd_finetune.lora import WEIGHTS_NAME, read_lora_metadata, train_lora

    # alpha != rank: the scale must survive saving and loading, or the images differ.
    config = LoraTrainingConfig(
        **base(tiny_folder, learning_rate=0.02), rank=4, alpha=16, train_text_encoder=True
    )
    recorder = Recorder()
    result = train_lora(config, sd_records, tmp_path / "lora", callbacks=recorder, dataset="toy")
    assert result.output_path == tmp_path / "lora" / "lora"
    weights = load_file(result.output_path / WEIGHTS_NAME)
    assert any(k.startswith("unet.") for k in weights)
    assert any(k.startswith("text_encoder.") for k in weights)
    ups = [v for k, v in weights.items() if "lora_B" in k or "lora.up" in k]
    assert ups and all(v.abs().max() > 0 for v in ups), "a LoRA B matrix is still zero"

    pipe = load_sd_pipeline(tiny_folder)
    pipe.load_lora_weights(str(result.output_path))
    prompts = prompts_for(config.caption_template)
    adapted = stock_grid(pipe, prompts, config.seed, config.validation_steps)
    assert np.abs(adapted - np.asarray(recorder.grids[3], dtype=np.int16)).max() <= 1
    plain = stock_grid(load_sd_pipeline(tiny_folder), prompts, config.seed, 2)
    assert np.abs(adapted - plain).max() > 0

    meta = read_lora_metadata(result.output_path)
    assert meta["rank"] == 4 and meta["alpha"] == 16 and meta["steps"] == 3
    assert meta["seed"] == config.seed and meta["learning_rate"] == 0.02
    assert meta["caption_template"] == config.caption_template
    assert meta["dataset"] == "toy" and meta["training_images"] == len(sd_records)
    assert meta["base_model"] == str(tiny_folder)
    assert meta["base_model_weights"]["standin"] is True
    assert len(meta["training_images_sha256"]) == 64


def test_a_stopped_lora_run_resumes_to_the_same_weights(
    tiny_folder: Path, sd_records: list[TrainingRecord], tmp_path: Path
) -> None:
    from generation.sd_finetune.lora import WEIGHTS_NAME, train_lora

    config = LoraTrainingConfig(
        **base(tiny_folder, train_steps=4, checkpoint_every=2, sample_every=0, learning_rate=0.02),
        rank=2,
        alpha=4,
        dropout=0.1,
    )
    first = train_lora(config, sd_records, tmp_path / "resumed", callbacks=Recorder(stop_after=3))
    assert first.stopped and first.final_step == 3 and first.output_path is None
    assert first.checkpoint_path is not None and first.checkpoint_path.name == "step-0000003"
    second = train_lora(config, sd_records, tmp_path / "resumed")
    assert second.resumed_from == 3 and second.final_step == 4
    assert len(second.loss_history) == 4
    straight = train_lora(config, sd_records, tmp_path / "straight")
    resumed = load_file(second.output_path / WEIGHTS_NAME)
    reference = load_file(straight.output_path / WEIGHTS_NAME)
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=1e-6)
    assert second.loss_history == straight.loss_history


def test_a_changed_config_is_not_resumed(
    tiny_folder: Path, sd_records: list[TrainingRecord], tmp_path: Path
) -> None:
    from generation.sd_finetune.lora import train_lora

    config = LoraTrainingConfig(**base(tiny_folder, train_steps=2, checkpoint_every=1), rank=2)
    train_lora(config, sd_records, tmp_path / "run", callbacks=Recorder(stop_after=1))
    changed = LoraTrainingConfig(**base(tiny_folder, train_steps=2, checkpoint_every=1), rank=4)
    with pytest.raises(ValueError, match="^config: differs from the checkpoint's in rank"):
        train_lora(changed, sd_records, tmp_path / "run")


def test_bf16_training_keeps_the_adapters_in_fp32(
    tiny_folder: Path, sd_records: list[TrainingRecord], tmp_path: Path
) -> None:
    from generation.sd_finetune import lora

    seen: dict[str, Any] = {}
    original = lora.save_lora

    def spy(pipe: Any, *args: Any, **kwargs: Any) -> Path:
        seen["trained"] = {p.dtype for p in pipe.unet.parameters() if p.requires_grad}
        seen["frozen"] = {p.dtype for p in pipe.unet.parameters() if not p.requires_grad}
        return original(pipe, *args, **kwargs)

    config = LoraTrainingConfig(
        **base(tiny_folder, mixed_precision="bf16", train_steps=2, sample_every=0),
        rank=2,
        gradient_checkpointing=True,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lora, "save_lora", spy)
        result = lora.train_lora(config, sd_records, tmp_path / "bf16")
    assert seen == {"trained": {torch.float32}, "frozen": {torch.bfloat16}}
    assert all(np.isfinite(result.loss_history))


def test_lora_on_learned_tokens_carries_them_along(
    tiny_folder: Path, sd_records: list[TrainingRecord], tmp_path: Path
) -> None:
    from generation.sd_finetune.lora import load_lora, train_lora
    from generation.sd_finetune.textual_inversion import train_textual_inversion

    ti = TextualInversionConfig(
        **base(tiny_folder, train_steps=1, sample_every=0), token_scheme="fst"
    )
    tokens = train_textual_inversion(ti, sd_records, tmp_path / "ti")
    config = LoraTrainingConfig(
        **base(
            tiny_folder,
            train_steps=1,
            sample_every=1,
            caption_template="dermoscopy image of {diagnosis} on {token} skin",
        ),
        textual_inversion=str(tokens.output_path),
        rank=2,
    )
    recorder = Recorder()
    result = train_lora(config, sd_records, tmp_path / "lora", callbacks=recorder)
    assert sorted(p.name for p in (result.output_path / "textual_inversion").iterdir()) == [
        "fairderm_config.json",
        "fst1",
        "fst5",
        "tokens.json",
    ]
    pipe = load_lora(load_sd_pipeline(tiny_folder), result.output_path)
    assert {"<fst1>", "<fst5>"} <= set(pipe.tokenizer.get_vocab())
    cells = [(1, "melanoma"), (1, "nevus"), (5, "melanoma"), (5, "nevus")]
    prompts = [caption(config.caption_template, f, d, f"<fst{f}>") for f, d in cells]
    grid = stock_grid(pipe, prompts, config.seed, config.validation_steps)
    assert np.abs(grid - np.asarray(recorder.grids[1], dtype=np.int16)).max() <= 1


def test_one_lora_per_skin_type_is_selected_at_generation(
    tiny_folder: Path, sd_records: list[TrainingRecord], tmp_path: Path
) -> None:
    from generation.generate import generate_images
    from generation.plans import balanced_plan
    from generation.sd_finetune.lora import WEIGHTS_NAME, read_lora_metadata, train_lora
    from generation.sd_finetune.sampling import SDSampler

    config = LoraTrainingConfig(
        **base(tiny_folder, train_steps=2, sample_every=0, learning_rate=0.02),
        rank=2,
        adapters="per_fst",
    )
    recorder = Recorder()
    result = train_lora(config, sd_records, tmp_path / "per-fst", callbacks=recorder)
    assert recorder.steps == [1, 2, 3, 4] and result.final_step == 4 and result.total_steps == 4
    assert sorted(p.name for p in result.output_path.iterdir()) == [
        "fairderm_config.json",
        "fst1",
        "fst5",
    ]
    for fst in (1, 5):
        meta = read_lora_metadata(result.output_path / f"fst{fst}")
        assert meta["training_images"] == 4  # only that skin type's images
    first = load_file(result.output_path / "fst1" / WEIGHTS_NAME)
    fifth = load_file(result.output_path / "fst5" / WEIGHTS_NAME)
    assert first.keys() == fifth.keys()
    assert any(not torch.equal(first[k], fifth[k]) for k in first)

    sampler = SDSampler.from_lora(str(tiny_folder), result.output_path, num_inference_steps=2)
    assert sampler.adapters == {1: "fst1", 5: "fst5"}
    plan = balanced_plan([1, 5], ["nevus"], 1, 11)
    images = generate_images(sampler, plan, tmp_path / "out", batch_size=2, provenance={})
    for item, image in zip(plan, images, strict=True):
        stock = load_sd_pipeline(tiny_folder)
        stock.load_lora_weights(str(result.output_path / f"fst{item.fst}"))
        stock.set_progress_bar_config(disable=True)
        expected = stock(
            sampler.prompt(item),
            num_inference_steps=2,
            guidance_scale=sampler.guidance_scale,
            generator=torch.Generator().manual_seed(item.seed),
            height=RES,
            width=RES,
        ).images[0]
        with PIL.Image.open(image.path) as ours:
            assert np.abs(np.asarray(ours, np.int16) - np.asarray(expected, np.int16)).max() <= 1


def test_learned_condition_embeddings_train_with_the_lora_and_load_with_it(
    tiny_folder: Path, sd_records: list[TrainingRecord], tmp_path: Path
) -> None:
    from generation.sd_finetune.lora import CONDITIONS_NAME, ConditionEmbeddings, train_lora

    config = LoraTrainingConfig(
        **base(tiny_folder, learning_rate=0.05, caption_template="dermoscopy image of a lesion"),
        rank=2,
        condition_embeddings="fst_diagnosis",
    )
    recorder = Recorder()
    result = train_lora(config, sd_records, tmp_path / "cond", callbacks=recorder)
    saved = ConditionEmbeddings.load(result.output_path / CONDITIONS_NAME)
    start = ConditionEmbeddings(saved.fst.shape[1], config.diagnoses, seed=config.seed)
    assert not torch.allclose(saved.fst, start.fst)  # trained
    assert saved.diagnoses == config.diagnoses and saved.extra_tokens == 2

    # One caption for every image: only the embeddings tell the skin types apart.
    from generation.sd_finetune.lora import load_lora_output

    loaded = load_lora_output(load_sd_pipeline(tiny_folder), result.output_path)
    pipe = loaded.pipe
    pipe.set_progress_bar_config(disable=True)
    module = loaded.embeddings_for(1)
    assert module is not None
    cells = [(1, "melanoma"), (1, "nevus"), (5, "melanoma"), (5, "nevus")]
    prompts = ["dermoscopy image of a lesion"] * 4

    def grid() -> np.ndarray:
        images = pipe(
            **module.pipeline_inputs(pipe, prompts, cells),
            num_inference_steps=config.validation_steps,
            generator=torch.Generator().manual_seed(config.seed),
            height=RES,
            width=RES,
        ).images
        return np.concatenate([np.asarray(i, dtype=np.int16) for i in images], axis=1)

    trained = grid()
    assert np.abs(trained - np.asarray(recorder.grids[3], dtype=np.int16)).max() <= 1
    with torch.no_grad():
        module.fst[4] = module.fst[0]  # FST V made to look like FST I
    assert np.abs(grid()[:, 2 * RES :] - trained[:, 2 * RES :]).max() > 0
