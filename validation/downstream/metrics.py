"""Downstream metrics: AUROC with bootstrap CIs, paired differences, group fairness, calibration.

- AUROC is scikit-learn's ``roc_auc_score`` for point estimates. Bootstrap resamples use the
  equivalent rank (Mann-Whitney) form, vectorised over resamples.
- Bootstrap draws are stratified by label (positives and negatives resampled separately, as
  pROC does), so every resample of a group keeps both classes. The same draws are used for
  every arm: differences between arms are paired over test images; seeds are resampled too
  (the same seed indices for both arms, since arms share their seeds).
- Group metrics (sensitivity, specificity, the equal-opportunity and equalized-odds
  differences) come from fairlearn's ``MetricFrame`` and metric functions.
- ECE uses equal-width bins with scikit-learn's ``calibration_curve`` bin convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from fairlearn.metrics import (
    MetricFrame,
    count,
    equal_opportunity_difference,
    equalized_odds_difference,
    true_negative_rate,
    true_positive_rate,
)
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

from validation.vocabulary import FST, FST_GROUPS

#: Every group a downstream result reports: the six types, the target groups I-III and V-VI
#: (group IV is type IV), and all images.
GROUPS: tuple[str, ...] = tuple(dict.fromkeys([*(f.roman for f in FST), *FST_GROUPS, "all"]))


FstValue = int | tuple[int, int] | None


def fst_labels(fsts: Sequence[FstValue]) -> tuple[np.ndarray, np.ndarray]:
    """Type labels ("I".."VI") and group labels ("I-III", "IV", "V-VI") of each image.

    An entry is a skin type, a ``(low, high)`` range (DDI labels V-VI as one range: such an
    image counts in its group but in no single type) or ``None``; what cannot be placed is
    ``"unknown"`` and counts only in ``all``.
    """
    group_of = {int(m): name for name, members in FST_GROUPS.items() for m in members}
    types, groups = [], []
    for value in fsts:
        low, high = (value, value) if not isinstance(value, tuple) else value
        if low is None or high is None:
            types.append("unknown")
            groups.append("unknown")
            continue
        types.append(FST(low).roman if low == high else "unknown")
        names = {group_of[int(f)] for f in range(int(low), int(high) + 1)}
        groups.append(names.pop() if len(names) == 1 else "unknown")
    return np.array(types, dtype=object), np.array(groups, dtype=object)


def group_masks(fsts: Sequence[FstValue]) -> dict[str, np.ndarray]:
    """Boolean masks of the test images in each of ``GROUPS`` (unknown FST: only in ``all``)."""
    types, groups = fst_labels(fsts)
    masks = {f.roman: types == f.roman for f in FST}
    for name in FST_GROUPS:
        masks[name] = groups == name
    masks["all"] = np.ones(len(types), dtype=bool)
    return masks


def auroc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """scikit-learn's AUROC, or ``None`` when ``y`` holds a single class."""
    y = np.asarray(y)
    if y.size == 0 or np.unique(y).size < 2:
        return None
    return float(roc_auc_score(y, scores))


def rank_auroc(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """AUROC of each row from its positive and negative scores (ties count one half).

    ``positive`` is (..., n1) and ``negative`` (..., n0); the result has shape (...).
    """
    n1, n0 = positive.shape[-1], negative.shape[-1]
    ranks = rankdata(np.concatenate([positive, negative], axis=-1), axis=-1)
    return (ranks[..., :n1].sum(axis=-1) - n1 * (n1 + 1) / 2.0) / (n1 * n0)


@dataclass(frozen=True)
class BootstrapDraws:
    """Resampling indices shared by every arm evaluated on one group of test images.

    ``positives``/``negatives`` are (B, n1)/(B, n0) indices into the group's images,
    ``seeds`` (B, S) indices into the seeds.
    """

    positives: np.ndarray
    negatives: np.ndarray
    seeds: np.ndarray

    @classmethod
    def make(
        cls, y: np.ndarray, n_seeds: int, n_boot: int, rng: np.random.Generator
    ) -> BootstrapDraws | None:
        """Draws for labels ``y``; ``None`` when a class is missing (no AUROC to resample)."""
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        if pos.size == 0 or neg.size == 0:
            return None
        return cls(
            positives=pos[rng.integers(0, pos.size, size=(n_boot, pos.size))],
            negatives=neg[rng.integers(0, neg.size, size=(n_boot, neg.size))],
            seeds=rng.integers(0, n_seeds, size=(n_boot, n_seeds)),
        )

    def auroc(self, scores: np.ndarray) -> np.ndarray:
        """Bootstrap distribution (B,) of the seed-mean AUROC of ``scores`` (S, n)."""
        scores = np.atleast_2d(scores)
        per_seed = np.stack(
            [rank_auroc(row[self.positives], row[self.negatives]) for row in scores]
        )  # (S, B)
        boots = np.arange(per_seed.shape[1])[:, None]
        return per_seed[self.seeds, boots].mean(axis=1)


def percentile_ci(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_auroc_ci(
    y: np.ndarray,
    scores: np.ndarray,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the AUROC (seed-mean if ``scores`` is (S, n))."""
    rng = rng if rng is not None else np.random.default_rng(0)
    scores = np.atleast_2d(scores)
    draws = BootstrapDraws.make(np.asarray(y), scores.shape[0], n_boot, rng)
    if draws is None:
        return None
    return percentile_ci(draws.auroc(scores), confidence)


@dataclass(frozen=True)
class PairedDifference:
    """Augmented minus baseline seed-mean AUROC, absolute and relative to the baseline."""

    baseline: float
    augmented: float
    absolute: float
    absolute_ci: tuple[float, float]
    relative: float
    relative_ci: tuple[float, float]

    def to_dict(self) -> dict[str, object]:
        return {
            "baseline": self.baseline,
            "augmented": self.augmented,
            "absolute": self.absolute,
            "absolute_ci": list(self.absolute_ci),
            "relative": self.relative,
            "relative_ci": list(self.relative_ci),
        }


def paired_difference(
    y: np.ndarray,
    baseline: np.ndarray,
    augmented: np.ndarray,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
    draws: BootstrapDraws | None = None,
) -> PairedDifference | None:
    """The paired bootstrap of augmented - baseline AUROC over test images and seeds.

    Args:
        y: Binary labels of the group's test images.
        baseline, augmented: Scores (S, n) of the two arms; row ``s`` of both comes from
            training seed ``s``.
        draws: Reuse these resampling indices (so several comparisons share them).

    Returns ``None`` when ``y`` lacks a class.
    """
    baseline, augmented = np.atleast_2d(baseline), np.atleast_2d(augmented)
    if baseline.shape != augmented.shape:
        raise ValueError(
            f"augmented: shape {augmented.shape} differs from the baseline's {baseline.shape}"
        )
    base_point = _seed_mean_auroc(y, baseline)
    aug_point = _seed_mean_auroc(y, augmented)
    if base_point is None or aug_point is None:
        return None
    if draws is None:
        rng = rng if rng is not None else np.random.default_rng(0)
        draws = BootstrapDraws.make(np.asarray(y), baseline.shape[0], n_boot, rng)
    if draws is None:
        return None
    base_boot, aug_boot = draws.auroc(baseline), draws.auroc(augmented)
    defined = base_boot > 0  # a resample with baseline AUROC 0 has no relative change
    relative_boot = (aug_boot[defined] - base_boot[defined]) / base_boot[defined]
    return PairedDifference(
        baseline=base_point,
        augmented=aug_point,
        absolute=aug_point - base_point,
        absolute_ci=percentile_ci(aug_boot - base_boot, confidence),
        relative=(aug_point - base_point) / base_point if base_point > 0 else math.nan,
        relative_ci=percentile_ci(relative_boot, confidence)
        if relative_boot.size
        else (math.nan, math.nan),
    )


def _seed_mean_auroc(y: np.ndarray, scores: np.ndarray) -> float | None:
    values = [auroc(y, row) for row in np.atleast_2d(scores)]
    if any(v is None for v in values):
        return None
    return float(np.mean(values))


# --- Calibration ----------------------------------------------------------------------------


def calibration_bins(y: np.ndarray, scores: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Equal-width bins over [0, 1] (``calibration_curve``'s convention: (a, b], 0 in the first).

    Each non-empty bin: its range, count, mean predicted probability and observed positive rate.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins: must be positive, got {n_bins}")
    y, scores = np.asarray(y, dtype=float), np.asarray(scores, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], scores)
    bins = []
    for b in range(n_bins):
        inside = index == b
        n = int(inside.sum())
        if n == 0:
            continue
        bins.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": n,
                "mean_predicted": float(scores[inside].mean()),
                "observed": float(y[inside].mean()),
            }
        )
    return bins


def expected_calibration_error(y: np.ndarray, scores: np.ndarray, n_bins: int = 10) -> float | None:
    """ECE: the count-weighted mean |observed - predicted| over equal-width bins."""
    total = len(scores)
    if total == 0:
        return None
    return float(
        sum(
            b["count"] / total * abs(b["observed"] - b["mean_predicted"])
            for b in calibration_bins(y, scores, n_bins)
        )
    )


# --- Group metrics at an operating point ------------------------------------------------------


def _safe_auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    value = auroc(y_true, y_score)
    return float("nan") if value is None else value


def group_table(
    y: np.ndarray,
    scores: np.ndarray,
    fsts: Sequence[FstValue],
    threshold: float,
    n_bins: int = 10,
) -> dict[str, dict[str, float | int | None]]:
    """Per group of ``GROUPS``: n, positives, AUROC, sensitivity, specificity and ECE.

    Computed with fairlearn ``MetricFrame`` over the six types and over the three groups;
    ``all`` is the overall row. Values undefined for a group (no positive, say) are ``None``.
    """
    y = np.asarray(y, dtype=int)
    scores = np.asarray(scores, dtype=float)
    predicted = (scores >= threshold).astype(int)
    type_labels, group_labels = fst_labels(fsts)

    def frames(labels: np.ndarray) -> tuple[MetricFrame, MetricFrame]:
        known = labels != "unknown"
        with np.errstate(invalid="ignore", divide="ignore"):
            by_score = MetricFrame(
                metrics={
                    "auroc": _safe_auroc,
                    "ece": lambda t, s: expected_calibration_error(t, s, n_bins),
                    "n": count,
                    "positives": lambda t, s: int(np.sum(t)),
                },
                y_true=y[known],
                y_pred=scores[known],
                sensitive_features=labels[known],
            )
            by_label = MetricFrame(
                metrics={"sensitivity": true_positive_rate, "specificity": true_negative_rate},
                y_true=y[known],
                y_pred=predicted[known],
                sensitive_features=labels[known],
            )
        return by_score, by_label

    table: dict[str, dict[str, float | int | None]] = {}
    for labels in (type_labels, group_labels):
        if (labels != "unknown").any():
            by_score, by_label = frames(labels)
            for name in by_score.by_group.index:
                row = {
                    **by_score.by_group.loc[name].to_dict(),
                    **by_label.by_group.loc[name].to_dict(),
                }
                positives, n = int(row["positives"]), int(row["n"])
                table[str(name)] = {
                    "n": n,
                    "positives": positives,
                    "auroc": _none_if_nan(row["auroc"]),
                    "sensitivity": _none_if_nan(row["sensitivity"]) if positives else None,
                    "specificity": _none_if_nan(row["specificity"]) if n - positives else None,
                    "ece": _none_if_nan(row["ece"]),
                }
    positives = int(y.sum())
    table["all"] = {
        "n": int(y.size),
        "positives": positives,
        "auroc": auroc(y, scores),
        "sensitivity": float(predicted[y == 1].mean()) if positives else None,
        "specificity": float(1 - predicted[y == 0].mean()) if y.size - positives else None,
        "ece": expected_calibration_error(y, scores, n_bins),
    }
    return {name: table[name] for name in GROUPS if name in table}


def _none_if_nan(value: object) -> float | int | None:
    if value is None:
        return None
    value = float(value)  # type: ignore[arg-type]
    return None if np.isnan(value) else value


def fairness_gaps(
    y: np.ndarray, predicted: np.ndarray, fsts: Sequence[FstValue], level: str = "groups"
) -> dict[str, float | None | list[str]]:
    """Equal-opportunity difference (largest TPR gap) and equalized-odds difference.

    ``level`` is ``groups`` (FST I-III, IV, V-VI) or ``types`` (I-VI). Only groups holding
    both a positive and a negative image take part (a TPR needs positives, an FPR negatives);
    the groups used are returned. Computed by fairlearn, ``method="between_groups"``.
    """
    if level not in ("groups", "types"):
        raise ValueError(f"level: must be groups or types, got {level!r}")
    y, predicted = np.asarray(y, dtype=int), np.asarray(predicted, dtype=int)
    labels = fst_labels(fsts)[0 if level == "types" else 1]
    usable = [
        g
        for g in np.unique(labels)
        if g != "unknown" and (y[labels == g] == 1).any() and (y[labels == g] == 0).any()
    ]
    if len(usable) < 2:
        return {"equal_opportunity": None, "equalized_odds": None, "groups": usable}
    keep = np.isin(labels, usable)
    return {
        "equal_opportunity": float(
            equal_opportunity_difference(y[keep], predicted[keep], sensitive_features=labels[keep])
        ),
        "equalized_odds": float(
            equalized_odds_difference(y[keep], predicted[keep], sensitive_features=labels[keep])
        ),
        "groups": [str(g) for g in usable],
    }


def roc_points(y: np.ndarray, scores: np.ndarray, max_points: int = 60) -> dict[str, list[float]]:
    """The ROC curve (scikit-learn), thinned to at most ``max_points`` points for charts."""
    if np.unique(y).size < 2:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(y, scores)
    if fpr.size > max_points:
        keep = np.unique(np.linspace(0, fpr.size - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 4) for v in fpr], "tpr": [round(float(v), 4) for v in tpr]}
