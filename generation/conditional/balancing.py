"""FairSkin-style balancing at three levels: what is drawn, what is penalised, how much counts.

Notation: a *cell* is one FST × diagnosis label ``c`` (``LabelCodec`` index), ``n_c`` its number of
training records, ``C+`` the set of cells with ``n_c > 0`` and ``n_bar = mean_{c in C+} n_c``.

(a) **Balanced resampling** (``cell_sampling_weights``, ``BalancedBatchSampler``). Record ``i`` in
    cell ``c`` is drawn (with replacement) with probability proportional to

        w_i = n_c ** (-tau) * (f if fst(c) in dark_fsts else 1)

    ``tau = 1`` draws every present cell equally often, ``tau = 0`` keeps the data frequencies;
    ``f`` (default 5) multiplies the draw odds of FST V-VI cells. Off: ``w_i = 1`` (uniform over
    records, i.e. the data's own imbalance).

(b) **Within-cell diversity loss** (``diversity_loss``). In a batch, take the pairs ``(i, j)`` that
    share a cell, both kept their label (no condition dropout) and both have timestep
    ``t <= t_max``. With ``d(a, b) = sqrt(mean((a - b) ** 2) + 1e-8)`` (pixel RMS distance), the
    predicted clean images ``x0_hat`` and the real ones ``x0``:

        L_div = sum_pairs omega_c * relu(kappa * d(x0_i, x0_j) - d(x0_hat_i, x0_hat_j))
                / sum_pairs omega_c,            omega_c = (n_bar / n_c) ** rho

    i.e. a pair of predictions is penalised when it is less far apart than ``kappa`` times the
    pair of real images it came from (collapse toward one mode), more so in rare cells. It is 0
    when the batch has no such pair. Total loss: ``L = L_diff + lambda * L_div``. Off: ``L_div``
    is neither computed nor added.

(c) **Imbalance-aware loss reweighting** (``LossReweighter``). After every step the unweighted
    per-sample diffusion losses update a per-cell moving average
    ``l_c <- m * l_c + (1 - m) * mean_{i in batch, cell c} loss_i`` (the first observation
    initialises ``l_c``). Every ``N`` steps the cell weights become

        u_c = (l_c / mean_{c' in C+} l_c') ** gamma * (n_bar / n_c) ** beta
        w_c = clip(u_c / mean_{c' in C+} u_c', w_min, w_max)

    (a cell without a loss average yet uses ratio 1), and the diffusion loss is
    ``L_diff = mean_i w_{c_i} * loss_i``. Cells that lag behind get more weight. The weights and
    averages are part of the checkpoint. Off: every ``w_c = 1`` and nothing is tracked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from generation.conditional.config import BalancingConfig
from generation.conditional.model import LabelCodec


def cell_counts(cells: Sequence[int], num_cells: int) -> list[int]:
    """Number of records per cell index.

    Args:
        cells (`Sequence[int]`): The cell index of every record.
        num_cells (`int`): Number of cells (``LabelCodec.num_cells``).
    """
    counts = [0] * num_cells
    for cell in cells:
        if not 0 <= cell < num_cells:
            raise ValueError(f"cells: index {cell} is outside 0..{num_cells - 1}")
        counts[cell] += 1
    return counts


def _rarity(counts: Sequence[int], power: float) -> list[float]:
    """``(n_bar / n_c) ** power`` for present cells, 0 for absent ones."""
    present = [n for n in counts if n > 0]
    if not present:
        return [0.0] * len(counts)
    n_bar = sum(present) / len(present)
    return [(n_bar / n) ** power if n > 0 else 0.0 for n in counts]


def cell_sampling_weights(
    cells: Sequence[int], codec: LabelCodec, config: BalancingConfig
) -> torch.Tensor:
    """Per-record draw probabilities of level (a) (float64, summing to 1).

    Args:
        cells (`Sequence[int]`): The cell index of every record.
        codec (`LabelCodec`): Gives each cell's FST.
        config (`BalancingConfig`): ``resample``, ``resample_power``, ``dark_fst_factor``, ``dark_fsts``.
    """
    if not cells:
        raise ValueError("cells: no records to sample from")
    if not config.resample:
        return torch.full((len(cells),), 1.0 / len(cells), dtype=torch.float64)
    counts = cell_counts(cells, codec.num_cells)
    cell_fsts = codec.cell_fsts()
    dark = set(config.dark_fsts)
    per_cell = [
        (n**-config.resample_power if n > 0 else 0.0)
        * (config.dark_fst_factor if cell_fsts[c] in dark else 1.0)
        for c, n in enumerate(counts)
    ]
    weights = torch.tensor([per_cell[c] for c in cells], dtype=torch.float64)
    return weights / weights.sum()


class BalancedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Draws batches of record indices with replacement from fixed weights, seeded and resumable.

    Iterating yields ``num_batches`` batches (endless when ``None``). The generator state is
    in ``state_dict()``, so a resumed run draws exactly the batches an uninterrupted one would.

    Args:
        weights (`torch.Tensor`): Non-negative per-record weights (e.g. ``cell_sampling_weights``).
        batch_size (`int`): Indices per batch.
        seed (`int`): Seed of the private ``torch.Generator``.
        num_batches (`int`, *optional*): Length of one iteration.
    """

    def __init__(
        self, weights: torch.Tensor, batch_size: int, seed: int, num_batches: int | None = None
    ) -> None:
        if weights.ndim != 1 or weights.numel() == 0 or bool((weights < 0).any()):
            raise ValueError("weights: expected a non-empty 1-d tensor of non-negative weights")
        if float(weights.sum()) <= 0:
            raise ValueError("weights: all weights are zero")
        if batch_size < 1:
            raise ValueError(f"batch_size: {batch_size} is not >= 1")
        self.weights = weights.to(torch.float64)
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self) -> list[int]:
        """One batch of record indices."""
        return torch.multinomial(
            self.weights, self.batch_size, replacement=True, generator=self.generator
        ).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        drawn = 0
        while self.num_batches is None or drawn < self.num_batches:
            yield self.draw()
            drawn += 1

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless BalancedBatchSampler has no length")
        return self.num_batches

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator state (a uint8 tensor)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore ``state_dict`` output."""
        self.generator.set_state(state["generator"])


def rarity_weights(counts: Sequence[int], power: float) -> torch.Tensor:
    """``omega_c = (n_bar / n_c) ** power`` of level (b); 0 for absent cells.

    Args:
        counts (`Sequence[int]`): Records per cell.
        power (`float`): ``rho``.
    """
    return torch.tensor(_rarity(counts, power), dtype=torch.float32)


def _rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(((a - b) ** 2).flatten(1).mean(dim=1) + 1e-8)


def diversity_loss(
    x0_pred: torch.Tensor,
    x0_true: torch.Tensor,
    cells: torch.Tensor,
    eligible: torch.Tensor,
    cell_weights: torch.Tensor,
    target_ratio: float,
) -> torch.Tensor:
    """The within-cell diversity hinge ``L_div`` of level (b) (see the module docstring).

    Args:
        x0_pred (`torch.Tensor`): Predicted clean images, ``(B, C, H, W)``, differentiable.
        x0_true (`torch.Tensor`): The real clean images of the batch, same shape.
        cells (`torch.Tensor`): Cell index per sample, ``(B,)``.
        eligible (`torch.Tensor`): Bool ``(B,)``: kept its label and ``t <= t_max``.
        cell_weights (`torch.Tensor`): ``omega_c`` per cell index.
        target_ratio (`float`): ``kappa``.

    Returns:
        A scalar tensor; ``0`` (still attached to ``x0_pred``) when no pair qualifies.
    """
    if x0_pred.shape != x0_true.shape or x0_pred.shape[0] != cells.shape[0]:
        raise ValueError("x0_pred: shape does not match x0_true / cells")
    first, second = torch.triu_indices(len(cells), len(cells), offset=1, device=cells.device)
    keep = (cells[first] == cells[second]) & eligible[first] & eligible[second]
    if not bool(keep.any()):
        return x0_pred.sum() * 0.0
    first, second = first[keep], second[keep]
    predicted = _rms_distance(x0_pred[first], x0_pred[second])
    with torch.no_grad():
        target = target_ratio * _rms_distance(x0_true[first], x0_true[second])
    omega = cell_weights.to(x0_pred.device, x0_pred.dtype)[cells[first]]
    denominator = omega.sum()
    if float(denominator) <= 0:
        return x0_pred.sum() * 0.0
    return (omega * torch.relu(target - predicted)).sum() / denominator


class LossReweighter:
    """Adaptive per-cell weights of the diffusion loss, level (c) (see the module docstring).

    Args:
        counts (`Sequence[int]`): Records per cell.
        config (`BalancingConfig`): ``reweight*`` fields.
    """

    def __init__(self, counts: Sequence[int], config: BalancingConfig) -> None:
        self.counts = list(counts)
        self.config = config
        self.enabled = config.reweight
        self.loss_average: list[float | None] = [None] * len(self.counts)
        self.weights: list[float] = [1.0] * len(self.counts)
        self.updates = 0
        if self.enabled:
            self._recompute()

    def sample_weights(self, cells: torch.Tensor) -> torch.Tensor:
        """``w_{c_i}`` for each sample of a batch (all ones when off)."""
        table = torch.tensor(self.weights, dtype=torch.float32, device=cells.device)
        return table[cells]

    def observe(self, cells: torch.Tensor, losses: torch.Tensor, step: int) -> None:
        """Fold one batch of unweighted per-sample losses in; recompute every ``reweight_every`` steps.

        Args:
            cells (`torch.Tensor`): Cell index per sample.
            losses (`torch.Tensor`): Unweighted per-sample diffusion losses (detached).
            step (`int`): The number of optimiser steps completed, this one included.
        """
        if not self.enabled:
            return
        momentum = self.config.reweight_momentum
        cell_list = cells.tolist()
        loss_list = losses.detach().double().cpu().tolist()
        sums: dict[int, list[float]] = {}
        for cell, loss in zip(cell_list, loss_list, strict=True):
            sums.setdefault(cell, []).append(loss)
        for cell in sorted(sums):
            batch_mean = sum(sums[cell]) / len(sums[cell])
            previous = self.loss_average[cell]
            self.loss_average[cell] = (
                batch_mean
                if previous is None
                else momentum * previous + (1 - momentum) * batch_mean
            )
        if step % self.config.reweight_every == 0:
            self._recompute()

    def _recompute(self) -> None:
        present = [c for c, n in enumerate(self.counts) if n > 0]
        if not present:
            return
        known = [self.loss_average[c] for c in present if self.loss_average[c] is not None]
        mean_loss = sum(known) / len(known) if known else 0.0
        rarity = _rarity(self.counts, self.config.reweight_frequency_power)
        raw: dict[int, float] = {}
        for c in present:
            average = self.loss_average[c]
            ratio = average / mean_loss if average is not None and mean_loss > 0 else 1.0
            raw[c] = ratio**self.config.reweight_loss_power * rarity[c]
        mean_raw = sum(raw.values()) / len(raw)
        weights = [1.0] * len(self.counts)
        for c, value in raw.items():
            normalised = value / mean_raw if mean_raw > 0 else 1.0
            weights[c] = min(max(normalised, self.config.reweight_min), self.config.reweight_max)
        self.weights = weights
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {
            "loss_average": list(self.loss_average),
            "weights": list(self.weights),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` output."""
        if len(state["weights"]) != len(self.counts):
            raise ValueError("state: weights do not match the number of cells")
        self.loss_average = [None if v is None else float(v) for v in state["loss_average"]]
        self.weights = [float(v) for v in state["weights"]]
        self.updates = int(state["updates"])
