"""The offline tiny Stable Diffusion kit and the SD loader, end to end on the CPU.

Everything runs with ``HF_HUB_OFFLINE=1`` and a private, empty Hugging Face cache (the
``offline_hub`` fixture): nothing is downloaded, ever.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from peft import LoraConfig
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

from generation import tiny_sd
from generation.stable_diffusion import (
    PROVENANCE_ATTR,
    SCHEDULER_NAMES,
    STANDIN_MARKER,
    ModelNotCachedError,
    WeightsProvenance,
    load_sd_pipeline,
    pipeline_provenance,
    swap_scheduler,
    weights_provenance,
)
from generation.tiny_sd import (
    TinySDConfig,
    build_tiny_sd_pipeline,
    build_tiny_tokenizer,
    save_tiny_sd,
    stage_in_hf_cache,
)
from validation.files import TEMP_SUFFIX
from validation.vocabulary import ALL_FST, DIAGNOSES

PROMPT = "dermoscopy image of a melanoma on fitzpatrick skin type VI skin"
OTHER_PROMPT = "dermoscopy image of a seborrheic keratosis on fitzpatrick skin type I skin"
FAIRDERM_PROMPTS = [
    f"dermoscopy image of a {d.label.split(' / ')[0].lower()} on fitzpatrick skin type {f.roman} skin"
    for d in DIAGNOSES.values()
    for f in ALL_FST
] + [
    "a benign skin lesion on light skin tone",
    "a malignant skin lesion on dark skin tone",
    "brown skin tone, basal cell carcinoma, squamous cell carcinoma, actinic keratosis",
]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One stand-in folder per module (built offline in about 0.3 s); tests must not modify it."""
    root = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield save_tiny_sd(root / "tiny-sd")


def _quiet(pipe: StableDiffusionPipeline) -> StableDiffusionPipeline:
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _no_temp_leftovers(folder: Path) -> list[Path]:
    return list(folder.rglob(f"*{TEMP_SUFFIX}"))


# --- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image_size": 63}, "image_size"),
        ({"image_size": 0}, "image_size"),
        ({"unet_channels": ()}, "unet_channels"),
        ({"unet_channels": (32, 48)}, "unet_channels"),
        ({"vae_channels": "32"}, "vae_channels"),
        ({"unet_attention_heads": 3}, "unet_attention_heads"),
        ({"cross_attention_dim": 64}, "cross_attention_dim"),
        ({"text_attention_heads": 5}, "text_attention_heads"),
        ({"text_layers": 0}, "text_layers"),
        ({"latent_channels": True}, "latent_channels"),
        ({"tokenizer_max_merges": 2.5}, "tokenizer_max_merges"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_errors_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError) as caught:
        TinySDConfig(**overrides)  # type: ignore[arg-type]
    assert str(caught.value).startswith(f"{field}: ")


def test_config_round_trips_through_json() -> None:
    config = TinySDConfig(seed=3, unet_channels=[32, 64], image_size=32)  # type: ignore[arg-type]
    assert config.unet_channels == (32, 64)
    assert config.latent_size == 16
    again = TinySDConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(ValueError, match=r"^config: unknown field\(s\) colour"):
        TinySDConfig.from_dict({**config.to_dict(), "colour": 1})


# --- tokenizer --------------------------------------------------------------------------------


def test_tokenizer_learns_fairderm_words_and_round_trips(tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer(tmp_path / "tok")
    assert isinstance(tokenizer, CLIPTokenizer)
    assert {p.name for p in (tmp_path / "tok").iterdir()} >= {"vocab.json", "merges.txt"}
    vocab = tokenizer.get_vocab()
    assert len(vocab) > 2 * 256 + 2  # byte symbols, their </w> forms, merges, specials
    for word in ("dermoscopy", "melanoma", "fitzpatrick", "skin", "carcinoma", "vi", "benign"):
        assert f"{word}</w>" in vocab, word
    assert tokenizer.model_max_length == 77
    assert tokenizer.unk_token == tokenizer.eos_token == "<|endoftext|>"

    for prompt in FAIRDERM_PROMPTS:
        ids = tokenizer(prompt).input_ids
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        body = ids[1:-1]
        assert tokenizer.unk_token_id not in body, prompt
        # corpus words are whole tokens, not byte soup
        assert len(body) == len(prompt.replace(",", " ,").split()), prompt
        assert tokenizer.decode(ids, skip_special_tokens=True) == prompt.lower().replace(",", " ,")

    padded = tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True)
    assert len(padded.input_ids) == 77
    assert padded.input_ids[-1] == tokenizer.pad_token_id


def test_tokenizer_encodes_unseen_words_bytewise_and_uses_given_corpus(tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer(tmp_path / "tok", corpus=["zebra stripes on zebra skin"] * 3)
    assert "zebra</w>" in tokenizer.get_vocab()
    assert "melanoma</w>" not in tokenizer.get_vocab()
    ids = tokenizer("melanoma naïve").input_ids
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert len(ids) > 4  # split into sub-word pieces
    assert tokenizer.decode(ids, skip_special_tokens=True) == "melanoma naïve"
    with pytest.raises(ValueError, match="^corpus: "):
        build_tiny_tokenizer(tmp_path / "empty", corpus=["  "])


# --- build, save, load, generate --------------------------------------------------------------


def test_saved_folder_loads_with_stock_from_pretrained(
    tiny_folder: Path, offline_hub: Path
) -> None:
    names = {p.name for p in tiny_folder.iterdir()}
    assert names == {
        "model_index.json",
        "unet",
        "vae",
        "text_encoder",
        "tokenizer",
        "scheduler",
        STANDIN_MARKER,
    }
    assert {"vocab.json", "merges.txt"} <= {p.name for p in (tiny_folder / "tokenizer").iterdir()}

    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_folder,
        local_files_only=True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    assert isinstance(pipe.unet, UNet2DConditionModel)
    assert isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel)
    assert isinstance(pipe.tokenizer, CLIPTokenizer)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.safety_checker is None
    assert tuple(pipe.unet.config.block_out_channels) == (32, 64)
    assert pipe.unet.config.cross_attention_dim == 32
    assert pipe.unet.config.sample_size == 32
    assert pipe.vae.config.latent_channels == 4
    assert pipe.vae_scale_factor == 2
    assert pipe.text_encoder.config.hidden_size == 32
    assert pipe.text_encoder.config.num_hidden_layers == 5
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
    assert pipe.text_encoder.config.eos_token_id == pipe.tokenizer.eos_token_id
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.scheduler.config.steps_offset == 1
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"


def test_load_and_generate_is_seeded(tiny_folder: Path, offline_hub: Path) -> None:
    pipe = _quiet(load_sd_pipeline(tiny_folder))
    # default guidance (7.5): the unconditional pass also tokenises the empty prompt
    kwargs = {"num_inference_steps": 2, "height": 64, "width": 64, "output_type": "np"}

    def seeded(*seeds: int) -> list[torch.Generator]:
        return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]

    first = pipe([PROMPT, OTHER_PROMPT], generator=seeded(0, 0), **kwargs).images
    second = pipe([PROMPT, PROMPT], generator=seeded(0, 1), **kwargs).images
    assert first.shape == (2, 64, 64, 3)
    assert np.isfinite(first).all() and first.min() >= 0 and first.max() <= 1
    assert np.array_equal(first[0], second[0])  # same prompt and seed, another call
    assert np.abs(first[0] - first[1]).mean() > 1e-4  # other prompt
    assert np.abs(second[0] - second[1]).mean() > 1e-4  # other seed


def test_build_is_deterministic_per_seed(tiny_folder: Path, tmp_path: Path) -> None:
    again = save_tiny_sd(tmp_path / "again")
    other = save_tiny_sd(tmp_path / "other", TinySDConfig(seed=1))
    assert weights_provenance(again).sha256 == weights_provenance(tiny_folder).sha256
    assert weights_provenance(other).sha256 != weights_provenance(tiny_folder).sha256


def test_build_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_sd_pipeline(TinySDConfig(text_layers=1, unet_layers_per_block=1))
    assert torch.equal(torch.rand(3), expected)


# --- hub id path ------------------------------------------------------------------------------


def test_hub_id_loads_from_staged_cache_offline(tiny_folder: Path, offline_hub: Path) -> None:
    snapshot = stage_in_hf_cache(tiny_folder, "fairderm-test/tiny-sd", offline_hub / "hf")
    repo_dir = offline_hub / "hf" / "hub" / "models--fairderm-test--tiny-sd"
    assert snapshot.parent == repo_dir / "snapshots"
    assert (repo_dir / "refs" / "main").read_text() == snapshot.name
    assert (snapshot / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert stage_in_hf_cache(tiny_folder, "fairderm-test/tiny-sd", offline_hub / "hf") == snapshot
    assert _no_temp_leftovers(offline_hub / "hf") == []

    pipe = load_sd_pipeline("fairderm-test/tiny-sd")
    provenance = pipeline_provenance(pipe)
    assert provenance.source == "hub"
    assert provenance.model == "fairderm-test/tiny-sd"
    assert provenance.folder == snapshot
    assert provenance.revision == snapshot.name
    assert provenance.standin is True
    assert provenance.sha256 == weights_provenance(tiny_folder).sha256
    assert isinstance(pipe.unet, UNet2DConditionModel)


def test_hub_id_missing_from_cache_gives_clear_error(offline_hub: Path) -> None:
    with pytest.raises(ModelNotCachedError) as caught:
        load_sd_pipeline("runwayml/stable-diffusion-v1-5")
    message = str(caught.value)
    assert message.startswith(
        "model: 'runwayml/stable-diffusion-v1-5' is not in the Hugging Face cache"
    )
    assert str(offline_hub / "hf" / "hub") in message
    assert "HF_HUB_OFFLINE" in message and "hf download" in message
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(ModelNotCachedError, match="never downloads"):
        weights_provenance("runwayml/stable-diffusion-v1-5")


def test_missing_folder_and_non_diffusers_folder_are_refused(
    tmp_path: Path, offline_hub: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="^model: folder .* does not exist"):
        load_sd_pipeline(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        load_sd_pipeline(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a hub id"):
        load_sd_pipeline("not/a/hub/id")


# --- provenance -------------------------------------------------------------------------------


def test_provenance_marks_the_stand_in_and_only_it(tiny_folder: Path, tmp_path: Path) -> None:
    standin = weights_provenance(tiny_folder)
    assert standin.standin is True
    assert standin.source == "local" and standin.revision is None
    assert standin.folder == tiny_folder.resolve()
    assert standin.marker is not None and standin.marker["config"] == TinySDConfig().to_dict()
    assert standin.marker["weights_sha256"] == standin.sha256
    assert "STAND-IN" in standin.label
    assert standin.weight_files == (
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    )
    assert json.loads(json.dumps(standin.to_dict()))["standin"] is True

    unmarked = tmp_path / "unmarked"
    shutil.copytree(tiny_folder, unmarked)
    (unmarked / STANDIN_MARKER).unlink()
    real = weights_provenance(unmarked)
    assert real.standin is False and real.marker is None and real.label == "real weights"
    assert real.sha256 == standin.sha256  # the hash covers the weights only

    weights = unmarked / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    assert weights_provenance(unmarked).sha256 != standin.sha256

    (unmarked / STANDIN_MARKER).write_text("{not json")
    assert weights_provenance(unmarked).standin is True  # unreadable marker: still a stand-in


def test_loaded_pipeline_carries_provenance(tiny_folder: Path, offline_hub: Path) -> None:
    pipe = load_sd_pipeline(tiny_folder)
    provenance = getattr(pipe, PROVENANCE_ATTR)
    assert isinstance(provenance, WeightsProvenance)
    assert provenance == weights_provenance(tiny_folder)
    assert pipeline_provenance(pipe).standin is True
    with pytest.raises(ValueError, match="^pipe: has no FairDerm provenance"):
        pipeline_provenance(build_tiny_sd_pipeline(TinySDConfig(text_layers=1)))


# --- schedulers -------------------------------------------------------------------------------


# diffusers' LMS and Euler-ancestral schedulers raise a numpy 2 DeprecationWarning of their own.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_scheduler_swap(tiny_folder: Path, offline_hub: Path) -> None:
    pipe = load_sd_pipeline(tiny_folder, scheduler="dpmsolver++")
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    assert pipe.scheduler.config.algorithm_type == "dpmsolver++"
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    assert pipe.scheduler.config.beta_end == pytest.approx(0.012)
    expected = {
        "ddim": "DDIMScheduler",
        "pndm": "PNDMScheduler",
        "euler": "EulerDiscreteScheduler",
        "EULER-A": "EulerAncestralDiscreteScheduler",
        "lms": "LMSDiscreteScheduler",
        "unipc": "UniPCMultistepScheduler",
    }
    for name, class_name in expected.items():
        assert type(swap_scheduler(pipe, name).scheduler).__name__ == class_name
    assert set(SCHEDULER_NAMES) >= {"ddim", "dpmsolver++", "pndm", "euler"}


@pytest.mark.parametrize("name", ["warp-drive", "", "dpm solver"])
def test_unknown_scheduler_raises_before_loading(name: str, offline_hub: Path) -> None:
    with pytest.raises(ValueError, match="^scheduler: unknown name"):
        load_sd_pipeline(offline_hub / "not-even-a-folder", scheduler=name)


# --- save_tiny_sd ------------------------------------------------------------------------------


def test_save_is_idempotent_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "kit"
    assert save_tiny_sd(folder) == folder
    marker = folder / STANDIN_MARKER
    stamp = marker.stat().st_mtime_ns
    assert save_tiny_sd(folder, TinySDConfig()) == folder
    assert marker.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit"]
    assert _no_temp_leftovers(tmp_path) == []

    with pytest.raises(FileExistsError, match="^folder: "):
        save_tiny_sd(folder, TinySDConfig(seed=7))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="^folder: "):
        save_tiny_sd(tmp_path / "busy")
    (tmp_path / "empty").mkdir()
    assert (save_tiny_sd(tmp_path / "empty") / STANDIN_MARKER).is_file()

    def crash(config: TinySDConfig | None = None) -> StableDiffusionPipeline:
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiny_sd, "build_tiny_sd_pipeline", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_tiny_sd(tmp_path / "crashed")
    assert not (tmp_path / "crashed").exists()
    assert _no_temp_leftovers(tmp_path) == []


def test_stage_rejects_bad_input(tiny_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^repo_id: "):
        stage_in_hf_cache(tiny_folder, "no-org", tmp_path)
    with pytest.raises(ValueError, match="^repo_id: "):
        stage_in_hf_cache(tiny_folder, "bad--name/x y", tmp_path)
    with pytest.raises(FileNotFoundError, match="^folder: "):
        stage_in_hf_cache(tmp_path, "org/name", tmp_path)


def test_cli_writes_and_stages(
    tmp_path: Path, offline_hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli-kit"
    assert (
        tiny_sd.main(
            [
                "--out",
                str(out),
                "--stage-as",
                "fairderm-test/cli",
                "--hf-home",
                str(tmp_path / "hf"),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["standin"] is True and report["folder"] == str(out.resolve())
    assert Path(report["staged_as"]["snapshot"]).is_dir()
    with pytest.raises(SystemExit):
        tiny_sd.main(["--out", str(tmp_path / "bad"), "--image-size", "30"])
    assert "image_size: " in capsys.readouterr().err


# --- LoRA / textual inversion readiness -------------------------------------------------------


def test_lora_adapter_changes_the_unet_output(tiny_folder: Path, offline_hub: Path) -> None:
    unet = load_sd_pipeline(tiny_folder).unet
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 32, 32, generator=generator)
    context = torch.randn(1, 77, 32, generator=generator)
    with torch.no_grad():
        before = unet(latents, 10, encoder_hidden_states=context).sample
    unet.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=4,
            init_lora_weights=False,  # the default init is an identity and proves nothing
            target_modules=["to_k", "to_q", "to_v", "to_out.0"],
        )
    )
    trainable = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    assert 0 < trainable < 100_000
    with torch.no_grad():
        after = unet(latents, 10, encoder_hidden_states=context).sample
    assert (after - before).abs().mean() > 1e-6


def test_textual_inversion_file_adds_the_token(
    tiny_folder: Path, tmp_path: Path, offline_hub: Path
) -> None:
    pipe = load_sd_pipeline(tiny_folder)
    size = len(pipe.tokenizer)
    embedding = torch.randn(1, 32, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "learned_embeds.safetensors"
    save_file({"<fst6>": embedding}, str(path))

    pipe.load_textual_inversion(str(path))
    assert len(pipe.tokenizer) == size + 1
    token_id = pipe.tokenizer.convert_tokens_to_ids("<fst6>")
    assert pipe.tokenizer("<fst6> skin").input_ids[1] == token_id
    rows = pipe.text_encoder.get_input_embeddings().weight
    assert rows.shape[0] >= size + 1
    assert torch.allclose(rows[token_id], embedding[0])


def test_the_sd15_architecture_config_and_the_sd_block_layout() -> None:
    config = TinySDConfig.sd15()
    assert config.unet_channels == (320, 640, 1280, 1280) and config.cross_attention_dim == 768
    assert config.text_vocab_size == 49408 and config.sd_block_layout
    assert TinySDConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="^text_vocab_size: "):
        TinySDConfig(text_vocab_size=-1)
    # The SD layout, small: cross-attention on every level but the deepest, as in SD 1.x.
    small = build_tiny_sd_pipeline(TinySDConfig(sd_block_layout=True, text_vocab_size=2000))
    assert list(small.unet.config.down_block_types) == ["CrossAttnDownBlock2D", "DownBlock2D"]
    assert list(small.unet.config.up_block_types) == ["UpBlock2D", "CrossAttnUpBlock2D"]
    assert small.text_encoder.get_input_embeddings().num_embeddings == 2000
