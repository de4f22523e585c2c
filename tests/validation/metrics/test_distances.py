"""FID, KID and IS from features: closed forms, hand computations and pytorch-fid's own code."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance

from validation.metrics.distances import (
    fid_from_features,
    frechet_distance,
    frechet_stats,
    inception_score,
    kid,
    polynomial_mmd2,
)
from validation.metrics.neighbours import nearest, sampled_pairs


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form() -> None:
    mu1, var1 = np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0])
    mu2, var2 = np.array([1.0, 0.0, -2.0, 0.5]), np.array([4.0, 1.0, 1.0, 9.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(
        expected, rel=1e-9
    )


def test_frechet_distance_with_commuting_covariances_matches_the_closed_form() -> None:
    # S2 = S1^2 commutes with S1, so (S1 S2)^(1/2) = S1^1.5.
    s1 = np.diag([1.0, 4.0, 9.0])
    s2 = s1 @ s1
    expected = np.trace(s1 + s2 - 2 * np.diag([1.0, 8.0, 27.0]))
    assert frechet_distance(np.zeros(3), s1, np.zeros(3), s2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_sampled_gaussian_features_approaches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    d = 3
    a = rng.normal(size=(d, d))
    cov1 = a @ a.T + np.eye(d)
    mu2 = np.array([2.0, -1.0, 0.5])
    x = rng.multivariate_normal(np.zeros(d), cov1, size=200_000)
    y = rng.multivariate_normal(mu2, 4 * cov1, size=200_000)
    # S2 = 4 S1 commutes with S1: Tr(S1 + 4 S1 - 2 * 2 S1) = Tr(S1).
    expected = mu2 @ mu2 + np.trace(cov1)
    assert fid_from_features(x, y) == pytest.approx(expected, rel=0.02)


def test_fid_equals_pytorch_fid_on_the_same_features() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 8)), rng.normal(0.3, 1.2, size=(40, 8))
    ours = fid_from_features(x, y)
    theirs = calculate_frechet_distance(
        np.mean(x, axis=0), np.cov(x, rowvar=False), np.mean(y, axis=0), np.cov(y, rowvar=False)
    )
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_frechet_stats_refuse_a_single_image() -> None:
    with pytest.raises(ValueError, match="features"):
        frechet_stats(np.zeros((1, 4)))


def test_kid_mmd_by_hand() -> None:
    # d = 1, k(a, b) = (ab + 1)^3: Kxx off-diagonal 1, Kyy 343, Kxy 1, 1, 27, 64.
    x, y = np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])
    assert polynomial_mmd2(x, y) == pytest.approx(1 + 343 - 2 * 93 / 4)


def test_kid_with_one_full_subset_equals_a_direct_computation() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20, 5)), rng.normal(0.5, 1.0, size=(20, 5))

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / 5 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(20) for j in range(20) if i != j) / (20 * 19)
    yy = sum(k(y[i], y[j]) for i in range(20) for j in range(20) if i != j) / (20 * 19)
    xy = sum(k(x[i], y[j]) for i in range(20) for j in range(20)) / 400
    mean, std, size = kid(x, y, subsets=1, subset_size=20)
    assert size == 20 and std == 0.0
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9)


def _gaussian_moments(mu: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, ...]:
    """First, second and third raw moments of N(mu, cov)."""
    third = (
        np.einsum("i,j,k->ijk", mu, mu, mu)
        + np.einsum("i,jk->ijk", mu, cov)
        + np.einsum("j,ik->ijk", mu, cov)
        + np.einsum("k,ij->ijk", mu, cov)
    )
    return mu, cov + np.outer(mu, mu), third


def _expected_kernel(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...], d: int) -> float:
    """E[(x.y/d + 1)^3] for independent x ~ a, y ~ b: 1 + 3E[s] + 3E[s^2] + E[s^3], s = x.y/d."""
    s1 = a[0] @ b[0] / d
    s2 = np.sum(a[1] * b[1]) / d**2
    s3 = np.sum(a[2] * b[2]) / d**3
    return float(1 + 3 * s1 + 3 * s2 + s3)


def test_kid_of_gaussian_features_matches_the_closed_form_mmd() -> None:
    d = 3
    mx, cx = np.zeros(d), np.eye(d)
    my, cy = np.array([0.5, 0.0, -0.5]), np.diag([1.5, 1.0, 0.5])
    px, py = _gaussian_moments(mx, cx), _gaussian_moments(my, cy)
    expected = (
        _expected_kernel(px, px, d) + _expected_kernel(py, py, d) - 2 * _expected_kernel(px, py, d)
    )
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal(mx, cx, 20_000)
    y = rng.multivariate_normal(my, cy, 20_000)
    mean, std, _ = kid(x, y, subsets=50, subset_size=1000, seed=1)
    # By hand: E k(x,x') = 2, E k(x,y) = 13/6, E k(y,y') = 1 + 0.5 + 4.75/3 + 10.625/27.
    assert expected == pytest.approx(2 + (1 + 0.5 + 4.75 / 3 + 10.625 / 27) - 13 / 3, rel=1e-12)
    assert abs(mean - expected) < 4 * std / np.sqrt(50)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift() -> None:
    rng = np.random.default_rng(3)
    same = kid(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)), subsets=20, subset_size=200)
    shifted = kid(
        rng.normal(size=(400, 8)), rng.normal(1.0, 1.0, size=(400, 8)), subsets=20, subset_size=200
    )
    assert abs(same[0]) < 3 * same[1] + 0.01
    assert shifted[0] > 20 * max(abs(same[0]), same[1])


def test_kid_clips_the_subset_size_and_refuses_a_single_image() -> None:
    rng = np.random.default_rng(4)
    assert (
        kid(rng.normal(size=(7, 3)), rng.normal(size=(9, 3)), subsets=2, subset_size=1000)[2] == 7
    )
    with pytest.raises(ValueError, match="real"):
        kid(np.zeros((1, 3)), np.zeros((5, 3)))


def test_inception_score_of_uniform_predictions_is_one() -> None:
    mean, std, splits = inception_score(np.zeros((40, 1008)), splits=10)
    assert (mean, splits) == (pytest.approx(1.0), 10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_confident_balanced_predictions_is_the_class_count() -> None:
    k = 8
    logits = np.full((10 * k, 1008), -1e4)
    for i in range(10 * k):
        logits[i, i % k] = 0.0  # each split holds every one of the k classes once
    mean, std, _ = inception_score(logits, splits=10)
    assert mean == pytest.approx(k, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_matches_the_definition_on_random_logits() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(30, 6)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for part in np.array_split(p, 3):
        marginal = part.mean(0)
        scores.append(math.exp(np.mean([np.sum(row * np.log(row / marginal)) for row in part])))
    mean, std, _ = inception_score(logits, splits=3)
    assert mean == pytest.approx(np.mean(scores), rel=1e-9)
    assert std == pytest.approx(np.std(scores), rel=1e-6)


def test_nearest_finds_exact_copies_and_excludes_self() -> None:
    rng = np.random.default_rng(6)
    refs = rng.normal(size=(30, 16)).astype(np.float32)
    idx, dist = nearest(refs[[4, 9]], refs)
    assert idx.tolist() == [4, 9] and dist.tolist() == [0.0, 0.0]
    idx, dist = nearest(refs, refs, exclude=np.arange(30))
    assert (idx != np.arange(30)).all() and (dist > 0).all()


def test_sampled_pairs_are_distinct_and_ordered() -> None:
    rng = np.random.default_rng(7)
    assert len(sampled_pairs(5, 100, rng)) == 10
    pairs = sampled_pairs(100, 500, rng)
    assert len(pairs) == 500 and (pairs[:, 0] < pairs[:, 1]).all()
    assert len({tuple(p) for p in pairs.tolist()}) == 500
