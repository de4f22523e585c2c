"""FID, KID and the Inception Score from features (no networks here).

* **FID** (Heusel et al., 2017): the Frechet distance between Gaussians fitted to the real
  and synthetic features, ``|mu_r - mu_s|^2 + Tr(S_r + S_s - 2 (S_r S_s)^(1/2))``. The
  statistics are ``np.mean`` and ``np.cov(rowvar=False)`` and the distance is pytorch-fid's
  own ``calculate_frechet_distance``, so values equal ``python -m pytorch_fid``. FID is
  biased upwards at small n (hence the warning under 2048 images and KID beside it).
* **KID** (Binkowski et al., 2018): the unbiased estimate of the squared MMD with the
  polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets of
  ``subset_size`` images drawn without replacement from each set; mean and std over subsets.
* **IS** (Salimans et al., 2016): ``exp(E_x KL(p(y|x) || p(y)))`` with ``p(y|x)`` the
  softmax of the Inception logits and ``p(y)`` its mean over the split; mean and std over
  ``splits`` consecutive splits.
"""

from __future__ import annotations

import contextlib
import math
import sys

import numpy as np
from numpy.typing import NDArray

from validation.metrics.fid_compat import patch_pytorch_fid_sqrtm

Array = NDArray[np.floating]

FID_MIN_RECOMMENDED = 2048


def frechet_stats(features: Array) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and covariance of N x D features, as pytorch-fid computes them."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features: need an N x D array with N >= 2, got shape {features.shape}")
    return np.mean(features, axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def frechet_distance(mu1: Array, sigma1: Array, mu2: Array, sigma2: Array) -> float:
    """pytorch-fid's ``calculate_frechet_distance`` (sqrtm with its eps fallback).

    Works on SciPy 1.18 and later too, where pytorch-fid 0.3.0 alone fails
    (``validation.metrics.fid_compat``).
    """
    from pytorch_fid.fid_score import calculate_frechet_distance

    patch_pytorch_fid_sqrtm()

    if np.shape(mu1) != np.shape(mu2) or np.shape(sigma1) != np.shape(sigma2):
        raise ValueError(f"mu2: statistics of different sizes ({np.shape(mu1)} vs {np.shape(mu2)})")
    # pytorch-fid prints its eps fallback notice; keep stdout clean for --json output.
    with contextlib.redirect_stdout(sys.stderr):
        return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


def fid_from_features(real: Array, synthetic: Array) -> float:
    return frechet_distance(*frechet_stats(real), *frechet_stats(synthetic))


def polynomial_mmd2(x: Array, y: Array) -> float:
    """Unbiased MMD^2 between two samples with the cubic polynomial kernel of KID."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"x: need at least 2 samples on each side, got {m} and {n}")
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    return float(
        (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
        - 2 * k_xy.mean()
    )


def kid(
    real: Array, synthetic: Array, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float, int]:
    """KID mean and std over subsets, and the subset size used (clipped to the smaller set)."""
    real = np.asarray(real, dtype=np.float64)
    synthetic = np.asarray(synthetic, dtype=np.float64)
    size = min(subset_size, real.shape[0], synthetic.shape[0])
    if size < 2:
        raise ValueError(
            f"real: KID needs at least 2 images per set, got {real.shape[0]} and {synthetic.shape[0]}"
        )
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = real[rng.choice(real.shape[0], size, replace=False)]
        y = synthetic[rng.choice(synthetic.shape[0], size, replace=False)]
        values.append(polynomial_mmd2(x, y))
    return float(np.mean(values)), float(np.std(values)), size


def inception_score(logits: Array, splits: int = 10) -> tuple[float, float, int]:
    """IS mean and std over ``splits`` (clipped to the number of images), and the splits used."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits: need an N x K array, got shape {logits.shape}")
    splits = max(1, min(splits, logits.shape[0]))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    scores = []
    for part in np.array_split(log_p, splits):
        p = np.exp(part)
        log_marginal = np.log(p.mean(axis=0) + 1e-300)
        kl = (p * (part - log_marginal)).sum(axis=1).mean()
        scores.append(math.exp(kl))
    return float(np.mean(scores)), float(np.std(scores)), splits
