"""Training one classifier: seeded, origin-weighted loss, model selection on validation only."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from validation.downstream.config import ClassifierConfig
from validation.downstream.data import ImageCache, Sample, refuse_locked, targets
from validation.downstream.models import WeightsInfo, build_classifier, normalisation
from validation.vocabulary import DIAGNOSES

EpochCallback = Callable[[int, float], None]


@dataclass
class TrainedClassifier:
    """A trained network, the epoch kept (best validation AUROC) and the per-epoch history."""

    model: nn.Module
    config: ClassifierConfig
    classes: tuple[str, ...]
    weights: WeightsInfo
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


def malignant_classes(classes: Sequence[str]) -> list[int]:
    return [i for i, code in enumerate(classes) if DIAGNOSES[code].malignant]


class _Augment:
    """Random flips for every arm; RandAugment and colour jitter for ``traditional_aug``."""

    def __init__(self, strong: bool):
        self.strong = strong
        if strong:
            from torchvision.transforms import v2

            self.policy = v2.Compose(
                [
                    v2.RandAugment(num_ops=2, magnitude=9),
                    v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
                ]
            )

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = batch.shape[0]
        flip_h = torch.rand(n, generator=generator) < 0.5
        flip_v = torch.rand(n, generator=generator) < 0.5
        batch = batch.clone()
        batch[flip_h] = batch[flip_h].flip(-1)
        batch[flip_v] = batch[flip_v].flip(-2)
        if self.strong:
            batch = torch.stack([self.policy(image) for image in batch])
        return batch


def _to_input(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (batch.float() / 255.0 - mean) / std


def _per_sample_loss(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits.squeeze(1), y.float(), reduction="none")
    return F.cross_entropy(logits, y, reduction="none")


@torch.no_grad()
def predict_scores(
    model: nn.Module,
    config: ClassifierConfig,
    classes: Sequence[str],
    samples: Sequence[Sample],
    cache: ImageCache,
    device: str = "cpu",
    batch_size: int = 256,
) -> np.ndarray:
    """The malignant probability of each sample (multi-class: summed malignant classes)."""
    model.eval()
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in normalisation(config))
    scores: list[np.ndarray] = []
    malignant = malignant_classes(classes)
    for start in range(0, len(samples), batch_size):
        batch = cache.stack(samples[start : start + batch_size]).to(device)
        logits = model(_to_input(batch, mean, std))
        if config.task == "binary":
            probs = torch.sigmoid(logits.squeeze(1))
        else:
            probs = torch.softmax(logits, dim=1)[:, malignant].sum(dim=1)
        scores.append(probs.float().cpu().numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


def _val_auroc(y_binary: np.ndarray, scores: np.ndarray) -> float | None:
    if len(np.unique(y_binary)) < 2:
        return None
    return float(roc_auc_score(y_binary, scores))


def train_classifier(
    config: ClassifierConfig,
    train: Sequence[Sample],
    val: Sequence[Sample],
    *,
    seed: int,
    cache: ImageCache,
    classes: Sequence[str],
    sample_weights: Sequence[float] | None = None,
    strong_augment: bool = False,
    pretrain: Sequence[Sample] = (),
    pretrain_epochs: int = 0,
    device: str = "cpu",
    on_epoch: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainedClassifier:
    """Train one classifier and keep the epoch with the best validation AUROC.

    Args:
        config: The recipe.
        train: Training samples (real and, for mixed arms, synthetic; each keeps its origin).
        val: Real validation samples: the only data model selection reads.
        seed: Seeds the weights, the batch order and the augmentation.
        cache: Decoded pixels shared across arms.
        classes: Diagnosis codes of the multi-class head (ignored for ``binary``).
        sample_weights: Loss weight per training sample (e.g. real samples weighted up).
        strong_augment: RandAugment + colour jitter (the traditional-augmentation arm).
        pretrain: Samples to pre-train on for ``pretrain_epochs`` before ``train`` (the
            synthetic-then-real strategy); no model selection happens during pre-training.
        on_epoch: Called with (epochs done, training loss) after each epoch.

    Raises ``LockedTestSetError`` if any of ``train``, ``val`` or ``pretrain`` holds images
    of a locked external test set.
    """
    refuse_locked("train", train)
    refuse_locked("val", val)
    refuse_locked("pretrain", pretrain)
    if not train:
        raise ValueError("train: no training samples")
    if not val:
        raise ValueError("val: model selection needs validation samples")
    if sample_weights is not None and len(sample_weights) != len(train):
        raise ValueError(
            f"sample_weights: {len(sample_weights)} weights for {len(train)} training samples"
        )
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    classes = tuple(classes)
    outputs = 1 if config.task == "binary" else len(classes)
    model, weights_info = build_classifier(config, outputs)
    model.to(device)
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in normalisation(config))
    augment = _Augment(strong_augment)

    def run_epochs(
        samples: Sequence[Sample], weights: np.ndarray, epochs: int, select: bool
    ) -> int:
        nonlocal best_state, best_score, best_epoch
        x = cache.stack(samples)
        y = torch.from_numpy(targets(samples, config.task, classes))
        w = torch.from_numpy(weights.astype(np.float32))
        # The origin travels with every sample into the batches: losses are kept per origin.
        synthetic = torch.tensor([s.origin == "synthetic" for s in samples], dtype=torch.bool)
        optimiser = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        steps_per_epoch = math.ceil(len(samples) / config.batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=config.learning_rate, total_steps=max(1, steps_per_epoch * epochs)
        )
        for epoch in range(epochs):
            if should_stop is not None and should_stop():
                return epoch
            model.train()
            order = torch.randperm(len(samples), generator=generator)
            sums = {"real": 0.0, "synthetic": 0.0}
            counts = {"real": 0, "synthetic": 0}
            for start in range(0, len(samples), config.batch_size):
                index = order[start : start + config.batch_size]
                if len(index) < 2 and len(samples) > 1:
                    continue  # batch norm needs two samples
                batch = augment(x[index], generator).to(device)
                logits = model(_to_input(batch, mean, std))
                per_sample = _per_sample_loss(logits, y[index].to(device), config.task)
                batch_weights = w[index].to(device)
                loss = (per_sample * batch_weights).sum() / batch_weights.sum()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                scheduler.step()
                detached = per_sample.detach().cpu()
                for origin, mask in (("real", ~synthetic[index]), ("synthetic", synthetic[index])):
                    sums[origin] += float(detached[mask].sum())
                    counts[origin] += int(mask.sum())
            seen = counts["real"] + counts["synthetic"]
            record: dict[str, Any] = {
                "phase": "train" if select else "pretrain",
                "epoch": len(history) + 1,
                "train_loss": (sums["real"] + sums["synthetic"]) / max(seen, 1),
                "train_loss_real": sums["real"] / counts["real"] if counts["real"] else None,
                "train_loss_synthetic": sums["synthetic"] / counts["synthetic"]
                if counts["synthetic"]
                else None,
                "samples": dict(counts),
            }
            if select:
                scores = predict_scores(model, config, classes, val, cache, device)
                auroc = _val_auroc(y_val, scores)
                record["val_auroc"] = auroc
                # Without both classes in val, the last epoch is kept.
                score = auroc if auroc is not None else float(len(history))
                if score > best_score:
                    best_score, best_epoch = score, len(history) + 1
                    best_state = copy.deepcopy(model.state_dict())
            history.append(record)
            if on_epoch is not None:
                on_epoch(len(history), record["train_loss"])
        return epochs

    history: list[dict[str, Any]] = []
    y_val = np.array([int(s.malignant) for s in val])
    best_state: dict[str, Any] | None = None
    best_score, best_epoch = -math.inf, 0
    if pretrain:
        run_epochs(pretrain, np.ones(len(pretrain)), pretrain_epochs, select=False)
    weights = np.ones(len(train)) if sample_weights is None else np.asarray(sample_weights, float)
    run_epochs(train, weights, config.epochs, select=True)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainedClassifier(model, config, classes, weights_info, best_epoch, history)


def threshold_at_sensitivity(y: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity (score >= threshold) reaches ``target``.

    Chosen on the validation split and then applied unchanged to the test set (the fixed
    operating point). Without positives the threshold is 0.5.
    """
    positives = np.sort(scores[y == 1])[::-1]
    if positives.size == 0:
        return 0.5
    needed = max(1, math.ceil(target * positives.size - 1e-9))
    return float(positives[needed - 1])
