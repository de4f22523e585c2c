"""train_conditional: checkpoints, exact resume, fall-back past a broken checkpoint, stop, callbacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from generation.conditional import (
    ConditionalDiffusionConfig,
    ConditionalLesionPipeline,
    TrainingCallback,
    TrainingRecord,
    is_complete,
    latest_complete_checkpoint,
    list_checkpoints,
    train_conditional,
)
from tests.generation.test_conditional_toydata import TONES, make_toy_records, tiny_config

CHECKPOINT_FILES = {
    "COMPLETE.json",
    "fairderm_config.json",
    "unet.safetensors",
    "ema_unet.safetensors",
    "optimizer.pt",
    "rng_state.safetensors",
    "trainer_state.json",
}


class Recorder(TrainingCallback):
    """Records every callback; stops once ``stop_after`` steps are done."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: list[tuple[int, int, float, dict[str, Any]]] = []
        self.checkpoints: list[tuple[int, Path]] = []
        self.grids: list[tuple[int, Image.Image]] = []
        self.stop_after = stop_after

    def on_step(self, step: int, total_steps: int, loss: float, info: dict[str, Any]) -> None:
        self.steps.append((step, total_steps, loss, info))

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.checkpoints.append((step, path))

    def on_sample_grid(self, step: int, image: Image.Image) -> None:
        self.grids.append((step, image))

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.steps) >= self.stop_after


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[TrainingRecord]:
    return make_toy_records(tmp_path_factory.mktemp("toy"), per_cell=2, size=16)


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    newest = latest_complete_checkpoint(run_dir / "checkpoints")
    assert newest is not None
    return {
        **{f"unet.{k}": v for k, v in load_file(newest / "unet.safetensors").items()},
        **{f"ema.{k}": v for k, v in load_file(newest / "ema_unet.safetensors").items()},
    }


def test_training_writes_complete_checkpoints_and_exports_a_pipeline(
    tmp_path: Path, records: list[TrainingRecord]
) -> None:
    config = tiny_config(train_steps=5, checkpoint_every=2, keep_checkpoints=2)
    recorder = Recorder()
    result = train_conditional(config, records, tmp_path / "run", callbacks=recorder)

    assert result.final_step == 5 and result.total_steps == 5
    assert not result.stopped and result.resumed_from is None
    assert [s for s, *_ in recorder.steps] == [1, 2, 3, 4, 5]
    assert all(total == 5 and np.isfinite(loss) for _, total, loss, _ in recorder.steps)
    assert {"diffusion_loss", "grad_norm", "lr", "seconds_per_step"} <= set(recorder.steps[0][3])
    assert [s for s, _ in recorder.checkpoints] == [2, 4, 5]
    # keep_checkpoints=2: step 2 was pruned; the others are complete, config JSON beside weights.
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [4, 5]
    newest = tmp_path / "run" / "checkpoints" / "step-0000005"
    assert result.checkpoint_path == newest
    assert {p.name for p in newest.iterdir()} == CHECKPOINT_FILES
    assert is_complete(newest)
    assert (
        ConditionalDiffusionConfig.from_json((newest / "fairderm_config.json").read_text())
        == config
    )
    state = json.loads((newest / "trainer_state.json").read_text())
    assert state["step"] == 5 and len(state["balancing"]["weights"]) == 12
    assert [s for s, _ in result.loss_history] == [1, 2, 3, 4, 5]

    assert result.model_path == tmp_path / "run" / "model"
    assert (result.model_path / "model_index.json").is_file()
    saved = json.loads((result.model_path / "fairderm_config.json").read_text())
    assert ConditionalDiffusionConfig.from_dict(saved) == config
    pipeline = ConditionalLesionPipeline.from_pretrained(result.model_path)
    ema = load_file(newest / "ema_unet.safetensors")
    for name, parameter in pipeline.unet.named_parameters():
        assert torch.equal(parameter, ema[name])
    assert not list(tmp_path.rglob("*.tmp"))


def test_resumed_training_matches_uninterrupted_training(
    tmp_path: Path, records: list[TrainingRecord]
) -> None:
    config = tiny_config(train_steps=6, checkpoint_every=4)
    straight = train_conditional(config, records, tmp_path / "straight")

    # Cancelled after 3 steps (a checkpoint is written at step 3), then resumed to step 6.
    first = train_conditional(config, records, tmp_path / "resumed", callbacks=Recorder(3))
    assert first.stopped and first.final_step == 3 and first.model_path is None
    second = train_conditional(config, records, tmp_path / "resumed")
    assert second.resumed_from == 3 and second.final_step == 6 and not second.stopped

    expected, actual = _final_weights(tmp_path / "straight"), _final_weights(tmp_path / "resumed")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6)
    assert [s for s, _ in second.loss_history] == [s for s, _ in straight.loss_history]
    assert [v for _, v in second.loss_history] == pytest.approx(
        [v for _, v in straight.loss_history], abs=1e-6
    )

    # Extending a finished run to more steps is also a resume.
    longer = train_conditional(
        tiny_config(train_steps=7, checkpoint_every=4), records, tmp_path / "straight"
    )
    assert longer.resumed_from == 6 and longer.final_step == 7


def test_resume_skips_an_incomplete_newest_checkpoint(
    tmp_path: Path, records: list[TrainingRecord]
) -> None:
    config = tiny_config(train_steps=4, checkpoint_every=2, keep_checkpoints=3)
    train_conditional(config, records, tmp_path / "run")
    root = tmp_path / "run" / "checkpoints"
    newest = root / "step-0000004"
    weights = newest / "unet.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated after the marker was written
    assert not is_complete(newest)
    assert latest_complete_checkpoint(root) == root / "step-0000002"

    recorder = Recorder()
    result = train_conditional(config, records, tmp_path / "run", callbacks=recorder)
    assert result.resumed_from == 2
    assert [s for s, *_ in recorder.steps] == [3, 4]
    assert is_complete(newest)  # rewritten

    # A checkpoint folder without its completion marker is skipped too.
    (newest / "COMPLETE.json").unlink()
    assert latest_complete_checkpoint(root) == root / "step-0000002"


def test_should_stop_checkpoints_and_reports_stopped(
    tmp_path: Path, records: list[TrainingRecord]
) -> None:
    config = tiny_config(train_steps=50, checkpoint_every=20)
    recorder = Recorder(stop_after=2)
    result = train_conditional(config, records, tmp_path / "run", callbacks=recorder)
    assert result.stopped and result.final_step == 2
    assert result.model_path is None and not (tmp_path / "run" / "model").exists()
    assert recorder.checkpoints == [(2, tmp_path / "run" / "checkpoints" / "step-0000002")]
    assert result.checkpoint_path is not None and is_complete(result.checkpoint_path)


def test_callbacks_receive_sample_grids_of_six_rows_by_n_diagnoses(
    tmp_path: Path, records: list[TrainingRecord]
) -> None:
    config = tiny_config(train_steps=2, checkpoint_every=10, sample_every=1)
    recorder = Recorder()
    train_conditional(config, records, tmp_path / "run", callbacks=recorder)
    assert [step for step, _ in recorder.grids] == [1, 2]
    grid = recorder.grids[0][1]
    assert grid.mode == "RGB"
    assert grid.size == (2 * 16, 6 * 16)  # columns: diagnoses, rows: FST I-VI


def test_resume_rejects_a_changed_architecture_and_resume_false_rejects_old_checkpoints(
    tmp_path: Path, records: list[TrainingRecord]
) -> None:
    train_conditional(tiny_config(train_steps=2), records, tmp_path / "run")
    with pytest.raises(ValueError, match="^config: .*learning_rate"):
        train_conditional(tiny_config(train_steps=3, learning_rate=5e-4), records, tmp_path / "run")
    with pytest.raises(ValueError, match="^output_dir: "):
        train_conditional(tiny_config(train_steps=3), records, tmp_path / "run", resume=False)


def test_records_with_labels_outside_the_config_are_rejected(
    tmp_path: Path, records: list[TrainingRecord]
) -> None:
    config = tiny_config(diagnoses=("nevus",))
    with pytest.raises(ValueError, match="^records: "):
        train_conditional(config, records, tmp_path / "run")


def _border_brightness(images: np.ndarray) -> np.ndarray:
    """Mean brightness of the 2-pixel frame (the skin, away from the central lesion)."""
    mask = np.ones(images.shape[1:3], dtype=bool)
    mask[2:-2, 2:-2] = False
    return images[:, mask, :].mean(axis=(1, 2))


@pytest.mark.slow
def test_model_learns_fst_conditioned_skin_tone(tmp_path: Path) -> None:
    """300 steps with the default (FairSkin) balancing on a toy set whose FST sets skin tone."""
    records = make_toy_records(tmp_path / "toy", diagnoses=("nevus",), per_cell=8, size=16)
    config = tiny_config(
        diagnoses=("nevus",),
        block_out_channels=(16, 32),
        batch_size=16,
        train_steps=300,
        learning_rate=2e-3,
        checkpoint_every=1000,
        log_every=10,
        ema_decay=0.99,
    )
    result = train_conditional(config, records, tmp_path / "run")
    assert result.loss_history[-1][1] < 0.3 * result.loss_history[0][1]

    pipeline = ConditionalLesionPipeline.from_pretrained(result.model_path)
    pipeline.set_progress_bar_config(disable=True)
    # Paired design: sample k of every FST starts from the same noise, so only the label differs.
    fsts = [fst for fst in range(1, 7) for _ in range(8)]
    images = pipeline(
        fsts,
        "nevus",
        guidance_scale=1.0,
        num_inference_steps=20,
        generator=[torch.Generator().manual_seed(i % 8) for i in range(len(fsts))],
        output_type="np",
    ).images
    brightness = _border_brightness(images).reshape(6, 8).mean(axis=1)
    real = np.array([np.mean(TONES[f]) / 255 for f in range(1, 7)])
    assert np.all(np.diff(brightness) < 0), brightness  # darker with every FST step
    assert np.abs(brightness - real).max() < 0.15, (brightness, real)


def test_bf16_mixed_precision_trains_fp32_weights_and_resumes_across_precisions(
    tmp_path: Path, records: list[TrainingRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 autocast runs the UNet's convolutions and matrix products in bf16 (checked on the
    conv inputs), keeps weights, EMA and checkpoints fp32, and learns like fp32 to within
    bf16 rounding; switching precision on resume is allowed."""
    seen: list[torch.dtype] = []
    original = torch.nn.Conv2d._conv_forward

    def spy(self: torch.nn.Conv2d, input: torch.Tensor, *args: Any) -> torch.Tensor:
        seen.append(
            torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else input.dtype
        )
        return original(self, input, *args)

    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", spy)
    fp32 = train_conditional(tiny_config(train_steps=3), records, tmp_path / "fp32")
    assert seen and set(seen) == {torch.float32}
    seen.clear()
    config = tiny_config(train_steps=3, mixed_precision="bf16")
    bf16 = train_conditional(config, records, tmp_path / "bf16")
    assert torch.bfloat16 in seen  # the forward pass ran under bf16 autocast
    monkeypatch.undo()

    weights = _final_weights(tmp_path / "bf16")
    assert {tensor.dtype for tensor in weights.values()} == {torch.float32}
    reference = _final_weights(tmp_path / "fp32")
    differences = [float((weights[k] - reference[k]).abs().max()) for k in reference]
    assert max(differences) > 0  # bf16 arithmetic really was used
    assert max(differences) < 1e-2  # ... and only rounds: same data, same seed, same steps
    for (_, fp32_loss), (_, bf16_loss) in zip(fp32.loss_history, bf16.loss_history, strict=True):
        assert bf16_loss == pytest.approx(fp32_loss, rel=0.05)
    saved = json.loads((bf16.model_path / "fairderm_config.json").read_text())
    assert saved["mixed_precision"] == "bf16"

    resumed = train_conditional(
        tiny_config(train_steps=4, mixed_precision="no"), records, tmp_path / "bf16"
    )
    assert resumed.resumed_from == 3 and resumed.final_step == 4
