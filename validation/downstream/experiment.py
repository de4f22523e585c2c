"""A downstream experiment: every arm x seed trained, then one evaluation on the locked test set.

Order of events, enforced here:
1. hygiene checks on the training, validation and synthetic samples;
2. every classifier trained and selected on the validation split (the operating point too);
3. only then ``LockedTestSet.open_for_final_evaluation`` and the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from validation.downstream.config import Arm, ExperimentConfig
from validation.downstream.data import (
    ImageCache,
    LockedTestSet,
    Sample,
    check_hygiene,
    refuse_locked,
)
from validation.downstream.metrics import (
    GROUPS,
    BootstrapDraws,
    calibration_bins,
    fairness_gaps,
    group_masks,
    group_table,
    paired_difference,
    percentile_ci,
    roc_points,
)
from validation.downstream.report import go_no_go
from validation.downstream.train import (
    predict_scores,
    threshold_at_sensitivity,
    train_classifier,
)

ProgressCallback = Callable[[int, int, str], None]


@dataclass
class ArmData:
    """What one arm trains on for one seed; every sample keeps its origin."""

    train: list[Sample]
    weights: list[float] | None = None
    pretrain: list[Sample] = field(default_factory=list)
    strong_augment: bool = False

    @property
    def n_real(self) -> int:
        return sum(s.origin == "real" for s in self.train)

    @property
    def n_synthetic(self) -> int:
        return sum(s.origin == "synthetic" for s in [*self.train, *self.pretrain])


def arm_data(
    arm: Arm,
    real: Sequence[Sample],
    synthetic: Sequence[Sample],
    seed: int,
    real_weight: float,
) -> ArmData:
    """The training samples of ``arm`` for ``seed``.

    Synthetic arms draw ``ratio x len(real)`` synthetic samples (without replacement, seeded,
    capped by the pool) from ``synthetic``.
    """
    if not arm.uses_synthetic:
        return ArmData(list(real), strong_augment=arm.strategy == "traditional_aug")
    if not synthetic:
        raise ValueError(f"synthetic: arm {arm.name} needs synthetic images and none were given")
    wanted = min(len(synthetic), max(1, round(arm.ratio * len(real))))
    rng = np.random.default_rng([seed, 7919])
    drawn = [synthetic[i] for i in sorted(rng.choice(len(synthetic), wanted, replace=False))]
    if arm.strategy == "pretrain_finetune":
        return ArmData(list(real), pretrain=drawn)
    weights = None
    if arm.strategy == "weighted":
        weights = [real_weight] * len(real) + [1.0] * len(drawn)
    return ArmData([*real, *drawn], weights=weights)


@dataclass
class Trained:
    arm: Arm
    seed: int
    state: dict[str, Any]
    threshold: float
    best_epoch: int
    history: list[dict[str, Any]]
    n_real: int
    n_synthetic: int
    weights: dict[str, str]


def run_experiment(
    config: ExperimentConfig,
    *,
    train: Sequence[Sample],
    val: Sequence[Sample],
    synthetic: Sequence[Sample],
    test_set: LockedTestSet,
    internal_test: Sequence[Sample] = (),
    device: str = "cpu",
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train every arm on every seed, then evaluate all of them once on ``test_set``.

    Args:
        train, val: Real samples of the training datasets' train and validation splits.
        synthetic: Synthetic samples (from generate runs whose model saw training data only).
        test_set: The locked external test set; opened only after all training is done.
        internal_test: The training datasets' own test split, used only for the lesion check.

    Returns the results as JSON-ready data (see ``validation.downstream.report``), with
    ``stopped: True`` if ``should_stop`` ended the experiment early.
    """
    if not isinstance(test_set, LockedTestSet):
        raise ValueError(f"test_set: must be a LockedTestSet, got {type(test_set).__name__}")
    refuse_locked("internal_test", internal_test)
    check_hygiene(train, val, synthetic, internal_test)
    classes = tuple(sorted({s.diagnosis for s in [*train, *synthetic]}))
    cache = ImageCache(config.classifier.image_size)
    arms = config.arms
    per_run = config.classifier.epochs
    total = sum(
        (per_run + (config.pretrain_epochs if a.strategy == "pretrain_finetune" else 0))
        * len(config.seeds)
        for a in arms
    )
    done = 0
    started = time.monotonic()
    trained: list[Trained] = []
    y_val = np.array([int(s.malignant) for s in val])
    for arm in arms:
        for seed in config.seeds:
            if should_stop is not None and should_stop():
                return {"stopped": True, "trained": len(trained)}
            data = arm_data(arm, train, synthetic, seed, config.real_weight)
            label, offset = f"{arm.name} seed {seed}", done

            def on_epoch(
                epochs: int, loss: float, offset: int = offset, label: str = label
            ) -> None:
                if on_progress is not None:
                    on_progress(offset + epochs, total, f"{label}: loss {loss:.4f}")

            result = train_classifier(
                config.classifier,
                data.train,
                val,
                seed=seed,
                cache=cache,
                classes=classes,
                sample_weights=data.weights,
                strong_augment=data.strong_augment,
                pretrain=data.pretrain,
                pretrain_epochs=config.pretrain_epochs,
                device=device,
                on_epoch=on_epoch,
                should_stop=should_stop,
            )
            done += per_run + (config.pretrain_epochs if data.pretrain else 0)
            val_scores = predict_scores(
                result.model, config.classifier, classes, val, cache, device
            )
            trained.append(
                Trained(
                    arm=arm,
                    seed=seed,
                    state={
                        k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()
                    },
                    threshold=threshold_at_sensitivity(
                        y_val, val_scores, config.target_sensitivity
                    ),
                    best_epoch=result.best_epoch,
                    history=result.history,
                    n_real=data.n_real,
                    n_synthetic=data.n_synthetic,
                    weights=result.weights.to_dict(),
                )
            )
    # Training and model selection are over: the locked test set is read from here on only.
    test = test_set.open_for_final_evaluation()
    from validation.downstream.models import build_classifier

    predictions: dict[str, dict[int, np.ndarray]] = {}
    for item in trained:
        outputs = 1 if config.classifier.task == "binary" else len(classes)
        model, _ = build_classifier(config.classifier, outputs)
        model.load_state_dict(item.state)
        model.to(device)
        predictions.setdefault(item.arm.name, {})[item.seed] = predict_scores(
            model, config.classifier, classes, test, cache, device
        )
    results = json_safe(evaluate(config, trained, test, predictions))
    results["classes"] = list(classes)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["data"] = {
        "train_real": len(train),
        "val": len(val),
        "synthetic_pool": len(synthetic),
        "test": len(test),
        "test_set": test_set.name,
    }
    results["predictions"] = {
        "keys": [s.key for s in test],
        "fst": [s.fst_value for s in test],
        "malignant": [int(s.malignant) for s in test],
        "scores": {
            arm: {str(seed): [round(float(v), 6) for v in scores] for seed, scores in by.items()}
            for arm, by in predictions.items()
        },
    }
    return json_safe(results)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` and tuples as lists (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluate(
    config: ExperimentConfig,
    trained: list[Trained],
    test: Sequence[Sample],
    predictions: dict[str, dict[int, np.ndarray]],
) -> dict[str, Any]:
    """Per-arm per-group metrics, paired differences against the baseline, go/no-go inputs."""
    y = np.array([int(s.malignant) for s in test])
    fsts = [s.fst_value for s in test]
    masks = group_masks(fsts)
    seeds = list(config.seeds)
    rng = np.random.default_rng(config.bootstrap_seed)
    draws = {
        group: BootstrapDraws.make(y[mask], len(seeds), config.bootstrap, rng)
        for group, mask in masks.items()
    }
    by_arm: dict[str, list[Trained]] = {}
    for item in trained:
        by_arm.setdefault(item.arm.name, []).append(item)
    arms: dict[str, Any] = {}
    matrices: dict[str, np.ndarray] = {}
    for name, items in by_arm.items():
        items.sort(key=lambda t: seeds.index(t.seed))
        scores = np.stack([predictions[name][t.seed] for t in items])  # (S, n)
        matrices[name] = scores
        per_seed_tables = [
            group_table(y, scores[i], fsts, items[i].threshold, config.calibration_bins)
            for i in range(len(items))
        ]
        groups: dict[str, Any] = {}
        for group in GROUPS:
            mask = masks[group]
            rows = [t.get(group) for t in per_seed_tables]
            if not mask.any() or rows[0] is None:
                groups[group] = {"n": 0}
                continue
            entry: dict[str, Any] = {"n": rows[0]["n"], "positives": rows[0]["positives"]}
            for metric in ("auroc", "sensitivity", "specificity", "ece"):
                values = [r[metric] for r in rows]
                entry[metric] = None if any(v is None for v in values) else float(np.mean(values))
                entry[f"{metric}_per_seed"] = values
            group_draws = draws[group]
            entry["auroc_ci"] = (
                list(percentile_ci(group_draws.auroc(scores[:, mask]), config.confidence))
                if group_draws is not None and entry["auroc"] is not None
                else None
            )
            groups[group] = entry
        fairness = []
        for item, row in zip(items, scores, strict=True):
            predicted = (row >= item.threshold).astype(int)
            fairness.append(
                {
                    "groups": fairness_gaps(y, predicted, fsts, "groups"),
                    "types": fairness_gaps(y, predicted, fsts, "types"),
                }
            )
        mean_scores = scores.mean(axis=0)
        arms[name] = {
            "strategy": items[0].arm.strategy,
            "ratio": items[0].arm.ratio,
            "uses_synthetic": items[0].arm.uses_synthetic,
            "train_real": items[0].n_real,
            "train_synthetic": items[0].n_synthetic,
            "achieved_ratio": items[0].n_synthetic / max(items[0].n_real, 1),
            "seeds": seeds,
            "thresholds": [t.threshold for t in items],
            "best_epochs": [t.best_epoch for t in items],
            "weights": items[0].weights,
            "groups": groups,
            "fairness": _mean_fairness(fairness),
            "fairness_per_seed": fairness,
            "roc": {g: roc_points(y[m], mean_scores[m]) for g, m in masks.items() if m.any()},
            "reliability": calibration_bins(y, mean_scores, config.calibration_bins),
            "history": [t.history for t in items],
        }
    differences: dict[str, Any] = {}
    baseline = matrices["baseline"]
    for name, scores in matrices.items():
        if name == "baseline":
            continue
        differences[name] = {}
        for group, mask in masks.items():
            diff = (
                paired_difference(
                    y[mask],
                    baseline[:, mask],
                    scores[:, mask],
                    confidence=config.confidence,
                    draws=draws[group],
                )
                if draws[group] is not None
                else None
            )
            differences[name][group] = None if diff is None else diff.to_dict()
    primary = config.primary_arm.name
    weights = {a["weights"]["source"] for a in arms.values()}
    return {
        "groups": list(GROUPS),
        "arms": arms,
        "baseline": "baseline",
        "primary": primary,
        "differences": differences,
        "go_no_go": go_no_go(differences.get(primary, {}), confidence=config.confidence),
        "weights": sorted(weights),
        "definitions": DEFINITIONS,
    }


def _mean_fairness(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in ("groups", "types"):
        for metric in ("equal_opportunity", "equalized_odds"):
            values = [f[level][metric] for f in per_seed]
            known = [v for v in values if v is not None]
            out[f"{metric}_{level}"] = float(np.mean(known)) if known else None
    return out


DEFINITIONS = {
    "auroc": "Area under the ROC curve of the malignant score (scikit-learn roc_auc_score), "
    "averaged over training seeds.",
    "auroc_ci": "Percentile bootstrap over test images (resampled within label) and seeds.",
    "operating_point": "Threshold set on the validation split to reach the target sensitivity, "
    "applied unchanged to the test set.",
    "equal_opportunity": "Largest difference in true positive rate between groups "
    "(fairlearn equal_opportunity_difference), groups with positives and negatives only.",
    "equalized_odds": "Larger of the largest TPR gap and the largest FPR gap between groups "
    "(fairlearn equalized_odds_difference).",
    "ece": "Expected calibration error: count-weighted mean |observed rate - mean predicted| "
    "over equal-width probability bins.",
    "difference": "Augmented minus baseline seed-mean AUROC; CI by paired bootstrap over test "
    "images and seeds (the same resamples for both arms).",
}
