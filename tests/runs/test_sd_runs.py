"""train-textual-inversion and train-lora runs, end to end on the tiny Stable Diffusion kit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.exceptions import ValidationError

from backend.runs.execution import execute_run
from backend.runs.models import Run
from backend.runs.services import launch_run
from generation.tiny_sd import TinySDConfig, save_tiny_sd
from tests.datasets.factories import dataset_with_cells

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield save_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd", TinySDConfig(image_size=32))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings.COMPUTE_DEVICE = "cpu"


def small(tiny_sd: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "base_model": str(tiny_sd),
        "fsts": [1, 6],
        "diagnoses": ["nevus", "melanoma"],
        "resolution": 32,
        "batch_size": 2,
        "train_steps": 2,
        "mixed_precision": "no",
        "checkpoint_every": 1,
        "sample_every": 2,
        "validation_steps": 2,
        **overrides,
    }


def test_tokens_then_lora_on_them_from_the_run_framework(tiny_sd: Path) -> None:
    dataset = dataset_with_cells(fsts=(1, 6))
    with mock.patch("backend.runs.services.enqueue"):
        tokens = launch_run(
            kind="train-textual-inversion",
            config=small(tiny_sd, token_scheme="fst_group"),
            datasets=[dataset],
        )
        assert execute_run(tokens.pk, "test") == Run.Status.SUCCEEDED, tokens.error
        tokens.refresh_from_db()
        assert tokens.result["tokens"] == ["<fst-i-iii>", "<fst-v-vi>"]
        assert tokens.result["standin_weights"] is True
        assert tokens.latest_sample and tokens.step == 2

        lora = launch_run(
            kind="train-lora",
            config=small(
                tiny_sd,
                caption_template="dermoscopy image of {diagnosis} on {token} skin",
                textual_inversion="parent",
                rank=2,
            ),
            datasets=[dataset],
            parents=[tokens],
        )
        assert execute_run(lora.pk, "test") == Run.Status.SUCCEEDED, lora.error
    lora.refresh_from_db()
    model = lora.artifacts.get(name="model")
    folder = model.fetch()
    assert (folder / "pytorch_lora_weights.safetensors").is_file()
    assert (folder / "textual_inversion" / "tokens.json").is_file()
    assert lora.artifacts.filter(name="last-checkpoint").exists()

    from generation.sd_finetune.lora import load_lora, read_lora_metadata
    from generation.stable_diffusion import load_sd_pipeline

    meta = read_lora_metadata(folder)
    assert meta["dataset"].startswith(f"run #{lora.pk}: ") and meta["textual_inversion"]
    pipe = load_lora(load_sd_pipeline(tiny_sd), folder)
    assert "<fst-v-vi>" in pipe.tokenizer.get_vocab()

    # Majority to minority: FST VI images made by img2img from the FST I training images.
    from backend.datasets.models import Dataset

    generation = {
        "rule": "per_cell",
        "count": 2,
        "fsts": [6],
        "mode": "img2img",
        "strength": 0.5,
        "num_inference_steps": 2,
        "guidance_scale": 3.0,
        "batch_size": 2,
    }
    with mock.patch("backend.runs.services.enqueue"):
        generate = launch_run(kind="generate", config=generation, parents=[lora])
        assert execute_run(generate.pk, "test") == Run.Status.SUCCEEDED, generate.error
    generate.refresh_from_db()
    lesion = generate.result["lesion_preservation"]
    assert lesion["overall"]["n"] == 4 and lesion["6"]["n"] == 4
    assert "structural similarity" in lesion["definition"]
    synthetic = Dataset.objects.get(generated_by=generate)
    sources = {Path(i.file).name for i in dataset.images.filter(fst=1)}
    assert synthetic.images.count() == 4
    for image in synthetic.images.all():
        assert image.fst == 6
        assert image.provenance["mode"] == "img2img" and image.provenance["strength"] == 0.5
        assert image.provenance["source_image"] in sources
        assert "ssim" in image.provenance["lesion_preservation"]
        assert image.provenance["model"]["base_model"]["standin"] is True


def test_img2img_from_the_conditional_model_is_refused(tiny_sd: Path) -> None:
    from tests.runs.factories import TINY_TRAINING

    dataset = dataset_with_cells(fsts=(1, 6))
    tiny = {**TINY_TRAINING, "batch_size": 4, "train_steps": 2, "checkpoint_every": 2}
    with mock.patch("backend.runs.services.enqueue"):
        train = launch_run(kind="train-conditional", config=tiny, datasets=[dataset])
        assert execute_run(train.pk, "test") == Run.Status.SUCCEEDED
        run = launch_run(kind="generate", config={"mode": "img2img", "count": 1}, parents=[train])
        assert execute_run(run.pk, "test") == Run.Status.FAILED
    run.refresh_from_db()
    assert "mode: img2img needs a Stable Diffusion (train-lora) model" in run.error


def test_a_lora_config_is_validated_at_launch(tiny_sd: Path) -> None:
    dataset = dataset_with_cells(fsts=(1,))
    with pytest.raises(ValidationError, match="rank"):
        launch_run(kind="train-lora", config=small(tiny_sd, rank=0), datasets=[dataset])
    with pytest.raises(ValidationError, match="at least one dataset"):
        launch_run(kind="train-lora", config=small(tiny_sd))
