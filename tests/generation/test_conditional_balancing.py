"""The three balancing levels: each changes what is drawn or computed, and off means off."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from generation.conditional import (
    BalancedBatchSampler,
    BalancingConfig,
    LabelCodec,
    LossReweighter,
    TrainingCallback,
    cell_counts,
    cell_sampling_weights,
    diversity_loss,
    rarity_weights,
    train_conditional,
)
from tests.generation.test_conditional_toydata import make_toy_records, tiny_config

CODEC = LabelCodec(fsts=(1, 2, 3, 4, 5, 6), diagnoses=("nevus", "melanoma"))
# A skewed data set: 40 records per light cell, 4 per FST V-VI cell (4 of the 12 cells).
CELLS = [
    CODEC.encode(f, d)
    for f in CODEC.fsts
    for d in CODEC.diagnoses
    for _ in range(4 if f >= 5 else 40)
]


def _draw_cells(config: BalancingConfig, draws: int = 200, seed: int = 0) -> Counter[int]:
    sampler = BalancedBatchSampler(
        cell_sampling_weights(CELLS, CODEC, config), batch_size=64, seed=seed, num_batches=draws
    )
    return Counter(CELLS[i] for batch in sampler for i in batch)


def _dark_share(drawn: Counter[int]) -> float:
    fsts = CODEC.cell_fsts()
    return sum(n for c, n in drawn.items() if fsts[c] >= 5) / sum(drawn.values())


def test_resampling_draws_every_cell_equally_often() -> None:
    drawn = _draw_cells(BalancingConfig(dark_fst_factor=1.0))
    assert set(drawn) == set(range(12))
    expected = sum(drawn.values()) / 12
    assert all(abs(n - expected) / expected < 0.08 for n in drawn.values())


def test_resampling_off_keeps_the_data_frequencies() -> None:
    drawn = _draw_cells(BalancingConfig(resample=False))
    data_share = 16 / len(CELLS)  # 4 V-VI cells × 4 records
    assert _dark_share(drawn) == pytest.approx(data_share, abs=0.01)
    weights = cell_sampling_weights(CELLS, CODEC, BalancingConfig(resample=False))
    assert torch.all(weights == weights[0])


def test_dark_fst_factor_multiplies_the_v_vi_odds() -> None:
    plain = _dark_share(_draw_cells(BalancingConfig(dark_fst_factor=1.0)))
    boosted = _dark_share(_draw_cells(BalancingConfig(dark_fst_factor=5.0)))
    assert plain == pytest.approx(4 / 12, abs=0.01)
    odds_ratio = (boosted / (1 - boosted)) / (plain / (1 - plain))
    assert odds_ratio == pytest.approx(5.0, rel=0.08)


def test_resample_power_tempers_between_data_and_equal_cells() -> None:
    config = BalancingConfig(resample_power=0.5, dark_fst_factor=1.0)
    weights = cell_sampling_weights(CELLS, CODEC, config)
    light, dark = CELLS.index(0), CELLS.index(CODEC.encode(6, "nevus"))
    # Per record: n ** -0.5, so a light cell's share / dark cell's share = sqrt(40 / 4).
    assert float(weights[light] * 40 / (weights[dark] * 4)) == pytest.approx(10**0.5)


def test_sampler_is_deterministic_and_resumable() -> None:
    weights = cell_sampling_weights(CELLS, CODEC, BalancingConfig())
    first = BalancedBatchSampler(weights, batch_size=8, seed=11)
    second = BalancedBatchSampler(weights, batch_size=8, seed=11)
    assert [first.draw() for _ in range(3)] == [second.draw() for _ in range(3)]
    state = first.state_dict()
    upcoming = [first.draw() for _ in range(3)]
    restored = BalancedBatchSampler(weights, batch_size=8, seed=999)
    restored.load_state_dict(state)
    assert [restored.draw() for _ in range(3)] == upcoming
    other_seed = BalancedBatchSampler(weights, batch_size=8, seed=12)
    assert other_seed.draw() != BalancedBatchSampler(weights, batch_size=8, seed=11).draw()


def test_diversity_loss_penalises_collapsed_predictions_within_a_cell() -> None:
    generator = torch.Generator().manual_seed(0)
    real = torch.rand((4, 3, 8, 8), generator=generator) * 2 - 1
    cells = torch.tensor([0, 0, 1, 1])
    everyone = torch.ones(4, dtype=torch.bool)
    weights = torch.ones(2)
    # Predictions equal to the real images are exactly as diverse as the data: no penalty.
    assert float(diversity_loss(real.clone(), real, cells, everyone, weights, 1.0)) == 0.0
    # Collapsed predictions (every sample of a cell identical) are penalised ...
    nudge = 0.01 * torch.randn((4, 3, 8, 8), generator=generator)
    collapsed = (real.mean(dim=0, keepdim=True) + nudge).requires_grad_()
    loss = diversity_loss(collapsed, real, cells, everyone, weights, 1.0)
    assert float(loss.detach()) > 0.3
    # ... and the gradient pushes the pair apart.
    loss.backward()
    moved = collapsed.detach() - 0.1 * collapsed.grad
    assert float(diversity_loss(moved, real, cells, everyone, weights, 1.0)) < float(loss.detach())
    # Pairs across cells, ineligible samples, or no pairs at all: nothing to penalise.
    assert (
        diversity_loss(collapsed, real, torch.arange(4), everyone, weights.repeat(2), 1.0).item()
        == 0.0
    )
    some = torch.tensor([True, False, True, False])
    assert diversity_loss(collapsed, real, cells, some, weights, 1.0).item() == 0.0


def test_diversity_loss_weights_rare_cells_more() -> None:
    omega = rarity_weights([40, 4], power=1.0)
    assert omega.tolist() == pytest.approx([22 / 40, 22 / 4])
    real = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 1.0, -0.5, 0.5)])
    predictions = torch.zeros_like(real)
    predictions[2:] = real[2:]  # cell 1 (rare) is fine, cell 0 (common) collapsed
    cells = torch.tensor([0, 0, 1, 1])
    everyone = torch.ones(4, dtype=torch.bool)
    common_collapsed = diversity_loss(predictions, real, cells, everyone, omega, 1.0)
    predictions = real.clone()
    predictions[2:] = 0.0  # now the rare cell collapsed (its real gap is half as large)
    rare_collapsed = diversity_loss(predictions, real, cells, everyone, omega, 1.0)
    assert float(rare_collapsed) > float(common_collapsed)


def test_reweighter_up_weights_cells_with_higher_loss() -> None:
    config = BalancingConfig(reweight_every=2, reweight_momentum=0.5)
    reweighter = LossReweighter([10, 10, 10, 0], config)
    assert reweighter.weights == [1.0, 1.0, 1.0, 1.0]
    cells = torch.tensor([0, 1, 2, 0])
    losses = torch.tensor([0.4, 0.2, 0.2, 0.4])
    reweighter.observe(cells, losses, step=1)
    assert reweighter.weights == [1.0, 1.0, 1.0, 1.0]  # not yet: every 2 steps
    reweighter.observe(cells, losses, step=2)
    weights = reweighter.weights
    assert weights[0] == pytest.approx(2 * weights[1])
    assert sum(weights[:3]) / 3 == pytest.approx(1.0)
    assert weights[3] == 1.0  # an absent cell keeps weight 1
    assert reweighter.sample_weights(cells).tolist() == pytest.approx(
        [weights[0], weights[1], weights[2], weights[0]]
    )
    restored = LossReweighter([10, 10, 10, 0], config)
    restored.load_state_dict(reweighter.state_dict())
    assert restored.weights == weights and restored.loss_average == reweighter.loss_average


def test_reweighter_frequency_power_and_clipping() -> None:
    config = BalancingConfig(reweight_frequency_power=1.0, reweight_min=0.1, reweight_max=2.0)
    weights = LossReweighter(cell_counts([0] * 90 + [1] * 10, 2), config).weights
    # u = (50/90, 50/10) -> mean-normalised (0.2, 1.8), both inside the clip.
    assert weights == pytest.approx([0.2, 1.8])
    # u = (0.775, 0.775, 0.775, 7.75) -> (0.308, 0.308, 0.308, 3.08) -> the rare cell clips to 2.
    clipped = LossReweighter([10, 10, 10, 1], config).weights
    assert clipped[3] == 2.0 and clipped[0] == pytest.approx(0.3077, abs=1e-4)


def test_reweighter_off_means_off() -> None:
    reweighter = LossReweighter([10, 1], BalancingConfig(reweight=False, reweight_every=1))
    reweighter.observe(torch.tensor([0, 1]), torch.tensor([0.1, 5.0]), step=1)
    assert reweighter.weights == [1.0, 1.0]
    assert reweighter.loss_average == [None, None]


class _Losses(TrainingCallback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.infos: list[dict] = []

    def on_step(self, step: int, total_steps: int, loss: float, info: dict) -> None:
        self.losses.append(loss)
        self.infos.append(info)


def _train_losses(tmp_path: Path, name: str, balancing: BalancingConfig) -> _Losses:
    records = make_toy_records(
        tmp_path / "data", counts={(1, "nevus"): 6, (6, "melanoma"): 2}, size=16
    )
    config = tiny_config(
        batch_size=8,
        train_steps=3,
        checkpoint_every=100,
        cond_drop_prob=0.0,
        balancing=balancing,
    )
    callback = _Losses()
    train_conditional(config, records, tmp_path / name, callbacks=callback)
    return callback


def test_diversity_and_reweighting_change_the_training_loss_and_off_means_off(
    tmp_path: Path,
) -> None:
    off = BalancingConfig(diversity=False, reweight=False)
    baseline = _train_losses(tmp_path, "off", off)
    again = _train_losses(tmp_path, "off-again", off)
    assert baseline.losses == again.losses  # deterministic
    assert all(info["diversity_loss"] == 0.0 for info in baseline.infos)
    assert all(info["diffusion_loss"] == info["unweighted_loss"] for info in baseline.infos)

    # Level (b): every sample eligible (t_max = 1, no label dropout), 8 samples in 2 cells; an
    # untrained model's x0-predictions are noisy, hence diverse, so ask for 10x the real spread.
    diverse = _train_losses(
        tmp_path,
        "diversity",
        BalancingConfig(
            diversity=True,
            diversity_weight=1.0,
            diversity_max_timestep=1.0,
            diversity_target_ratio=10.0,
            reweight=False,
        ),
    )
    assert diverse.infos[0]["diversity_loss"] > 0
    assert diverse.losses[0] == pytest.approx(
        diverse.infos[0]["diffusion_loss"] + diverse.infos[0]["diversity_loss"], rel=1e-5
    )
    assert diverse.losses[0] != baseline.losses[0]

    # Level (c): weights recomputed after every step change the loss from step 2 on.
    reweighted = _train_losses(
        tmp_path, "reweight", BalancingConfig(diversity=False, reweight=True, reweight_every=1)
    )
    assert reweighted.losses[0] == baseline.losses[0]
    assert reweighted.infos[1]["cell_weights"] != [1.0] * 12
    assert reweighted.infos[1]["diffusion_loss"] != reweighted.infos[1]["unweighted_loss"]
