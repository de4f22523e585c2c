"""Downstream metrics against scikit-learn and fairlearn on fixed inputs, and CI coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fairlearn.metrics import MetricFrame, equalized_odds_difference, true_positive_rate
from scipy.stats import norm
from sklearn.calibration import calibration_curve
from sklearn.metrics import recall_score, roc_auc_score

from validation.downstream.metrics import (
    BootstrapDraws,
    bootstrap_auroc_ci,
    calibration_bins,
    expected_calibration_error,
    fairness_gaps,
    group_masks,
    group_table,
    paired_difference,
    rank_auroc,
    roc_points,
)
from validation.downstream.report import evidence, go_no_go
from validation.downstream.train import threshold_at_sensitivity


@pytest.fixture
def fixed() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """120 test images over all six types, with ties in the scores."""
    rng = np.random.default_rng(42)
    fsts = [1 + i % 6 for i in range(120)]
    y = (rng.random(120) < 0.4).astype(int)
    scores = np.round(np.clip(0.3 * y + rng.normal(0.4, 0.2, 120), 0, 1), 2)
    return y, scores, fsts


def test_rank_auroc_matches_scikit_learn_with_ties(fixed) -> None:
    y, scores, _ = fixed
    assert rank_auroc(scores[y == 1], scores[y == 0]) == pytest.approx(roc_auc_score(y, scores))


def test_group_table_matches_scikit_learn_per_group(fixed) -> None:
    y, scores, fsts = fixed
    table = group_table(y, scores, fsts, threshold=0.5)
    masks = group_masks(fsts)
    assert list(table) == ["I", "II", "III", "IV", "V", "VI", "I-III", "V-VI", "all"]
    for group in ("I", "IV", "VI", "I-III", "V-VI", "all"):
        mask = masks[group]
        row = table[group]
        assert row["n"] == mask.sum() and row["positives"] == y[mask].sum()
        assert row["auroc"] == pytest.approx(roc_auc_score(y[mask], scores[mask]))
        predicted = (scores[mask] >= 0.5).astype(int)
        assert row["sensitivity"] == pytest.approx(recall_score(y[mask], predicted))
        assert row["specificity"] == pytest.approx(recall_score(1 - y[mask], 1 - predicted))


def test_a_group_with_one_class_has_no_auroc() -> None:
    y = np.array([0, 1, 0, 1, 0, 0])
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.4])
    table = group_table(y, scores, [1, 1, 1, 1, 6, 6], threshold=0.5)
    assert table["VI"]["auroc"] is None and table["VI"]["sensitivity"] is None
    assert table["VI"]["specificity"] == 1.0
    assert table["I"]["auroc"] == 1.0


def test_equal_opportunity_and_equalized_odds_on_a_hand_made_case() -> None:
    # I-III: TPR 2/2, FPR 0/2. V-VI: TPR 1/2, FPR 1/2. IV: no positive, left out.
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0, 0])
    predicted = np.array([1, 1, 0, 0, 1, 0, 1, 0, 1])
    fsts = [1, 2, 3, 1, 5, 6, 5, 6, 4]
    gaps = fairness_gaps(y, predicted, fsts, "groups")
    assert gaps["groups"] == ["I-III", "V-VI"]
    assert gaps["equal_opportunity"] == pytest.approx(0.5)
    assert gaps["equalized_odds"] == pytest.approx(0.5)
    labels = np.array(["light"] * 4 + ["dark"] * 4)
    frame = MetricFrame(
        metrics=true_positive_rate, y_true=y[:8], y_pred=predicted[:8], sensitive_features=labels
    )
    assert gaps["equal_opportunity"] == pytest.approx(frame.difference())
    assert gaps["equalized_odds"] == pytest.approx(
        equalized_odds_difference(y[:8], predicted[:8], sensitive_features=labels)
    )


def test_fairness_gaps_need_two_usable_groups() -> None:
    gaps = fairness_gaps(np.array([1, 0]), np.array([1, 0]), [1, 2], "groups")
    assert gaps["equal_opportunity"] is None


def test_ece_by_hand_and_against_calibration_curve(fixed) -> None:
    y = np.array([0, 1, 1, 1])
    scores = np.array([0.1, 0.1, 0.9, 0.9])
    # bin (0, 0.1]: predicted 0.1, observed 0.5; bin (0.8, 0.9]: predicted 0.9, observed 1.
    assert expected_calibration_error(y, scores, 10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    y, scores, _ = fixed
    observed, predicted = calibration_curve(y, scores, n_bins=10, strategy="uniform")
    bins = calibration_bins(y, scores, 10)
    assert [b["observed"] for b in bins] == pytest.approx(list(observed))
    assert [b["mean_predicted"] for b in bins] == pytest.approx(list(predicted))
    counts = np.array([b["count"] for b in bins])
    reference = float(np.sum(counts / counts.sum() * np.abs(observed - predicted)))
    assert expected_calibration_error(y, scores, 10) == pytest.approx(reference)


def test_a_perfectly_calibrated_constant_has_zero_ece() -> None:
    assert expected_calibration_error(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0.0


def test_bootstrap_ci_covers_the_true_auroc_about_95_percent_of_the_time() -> None:
    """Binormal scores: positives N(d, 1), negatives N(0, 1); the true AUROC is Phi(d/sqrt 2)."""
    rng = np.random.default_rng(7)
    d = 1.0
    truth = norm.cdf(d / math.sqrt(2))
    repetitions, covered, widths = 300, 0, []
    for _ in range(repetitions):
        y = np.r_[np.ones(40, int), np.zeros(80, int)]
        scores = np.r_[rng.normal(d, 1, 40), rng.normal(0, 1, 80)]
        low, high = bootstrap_auroc_ci(y, scores, n_boot=300, rng=rng)
        covered += low <= truth <= high
        widths.append(high - low)
    coverage = covered / repetitions
    assert 0.88 <= coverage <= 0.99, coverage
    assert 0.1 < np.mean(widths) < 0.3  # neither degenerate nor useless


def test_paired_difference_of_an_arm_with_itself_is_exactly_zero(fixed) -> None:
    y, scores, _ = fixed
    both = np.stack([scores, scores[::-1].copy()])
    diff = paired_difference(y, both, both, n_boot=200)
    assert diff.absolute == 0 and diff.absolute_ci == (0.0, 0.0) and diff.relative == 0


def test_paired_difference_finds_a_real_improvement() -> None:
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(60, int), np.zeros(120, int)]
    noise = rng.normal(0, 1, (3, 180))
    baseline = noise + 0.5 * y
    augmented = noise + 1.5 * y  # same noise: a paired comparison
    diff = paired_difference(y, baseline, augmented, n_boot=400, rng=rng)
    expected = np.mean(
        [
            roc_auc_score(y, a) - roc_auc_score(y, b)
            for a, b in zip(augmented, baseline, strict=True)
        ]
    )
    assert diff.absolute == pytest.approx(expected)
    assert diff.absolute_ci[0] > 0 and diff.relative_ci[0] > 0
    assert diff.absolute_ci[0] <= diff.absolute <= diff.absolute_ci[1]


def test_paired_difference_refuses_mismatched_seeds(fixed) -> None:
    y, scores, _ = fixed
    with pytest.raises(ValueError, match="augmented"):
        paired_difference(y, np.stack([scores, scores]), scores[None, :])


def test_bootstrap_draws_resample_seeds_and_keep_both_classes() -> None:
    y = np.array([1, 0, 0, 1, 0])
    draws = BootstrapDraws.make(y, n_seeds=3, n_boot=50, rng=np.random.default_rng(0))
    assert draws.positives.shape == (50, 2) and draws.negatives.shape == (50, 3)
    assert set(y[draws.positives.ravel()]) == {1} and set(y[draws.negatives.ravel()]) == {0}
    assert draws.seeds.shape == (50, 3) and draws.seeds.max() <= 2
    assert BootstrapDraws.make(np.zeros(4, int), 3, 10, np.random.default_rng(0)) is None


def test_threshold_reaches_the_target_sensitivity_on_validation() -> None:
    y = np.array([1, 1, 1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.5, 0.1])
    threshold = threshold_at_sensitivity(y, scores, 0.8)
    assert threshold == 0.6
    assert (scores[y == 1] >= threshold).mean() >= 0.8


def test_roc_points_are_thinned_and_monotone(fixed) -> None:
    y, scores, _ = fixed
    points = roc_points(y, scores, max_points=10)
    assert len(points["fpr"]) <= 10
    assert points["fpr"][0] == 0 and points["fpr"][-1] == 1
    assert points["tpr"] == sorted(points["tpr"])


def _diff(relative: float, low: float) -> dict:
    return {
        "baseline": 0.7,
        "augmented": 0.7 * (1 + relative),
        "absolute": 0.7 * relative,
        "absolute_ci": [0.7 * low, 0.1],
        "relative": relative,
        "relative_ci": [low, 0.3],
    }


def test_go_no_go_inputs_carry_their_definitions_and_verdicts() -> None:
    result = go_no_go({"V-VI": _diff(0.12, 0.02), "I-III": _diff(-0.01, -0.03)})
    dark, light = result["fst_v_vi_improvement"], result["fst_i_iii_change"]
    assert "AUROC_baseline(V-VI)" in dark["definition"] and "10%" in dark["definition"]
    assert "I-III" in light["definition"]
    assert dark["met"] is True and dark["met_with_confidence"] is False
    assert light["met"] is True and light["met_with_confidence"] is False
    assert go_no_go({"V-VI": _diff(0.05, 0.01)})["fst_v_vi_improvement"]["met"] is False
    missing = go_no_go({})["fst_i_iii_change"]
    assert missing["available"] is False and missing["met"] is None


def test_phantom_or_stand_in_results_never_count_as_literature_evidence() -> None:
    assert evidence(["imagenet"], "ddi")["counts_toward_literature_target"] is True
    assert evidence(["imagenet"], "phantom")["counts_toward_literature_target"] is False
    assert evidence(["stand-in"], "ddi")["reasons"][0].startswith("classifier weights")
    assert "fewer than" in evidence(["imagenet"], "ddi", seeds=1)["reasons"][0]


def test_ddi_ranges_count_in_their_group_only() -> None:
    y = np.array([1, 0, 1, 0, 1, 0])
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.7])
    fsts = [(5, 6), (5, 6), (1, 2), (1, 2), (3, 4), None]
    masks = group_masks(fsts)
    assert masks["V-VI"].tolist() == [True, True, False, False, False, False]
    assert masks["I-III"].tolist() == [False, False, True, True, False, False]
    assert not masks["V"].any() and not masks["IV"].any()
    table = group_table(y, scores, fsts, threshold=0.5)
    assert table["V-VI"]["n"] == 2 and table["V-VI"]["auroc"] == 1.0
    assert "V" not in table and table["all"]["n"] == 6
