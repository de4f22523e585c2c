"""Nearest neighbours and pairwise distances over embeddings (LPIPS, Inception, pixels)."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray


def nearest(
    queries: NDArray[np.floating],
    references: NDArray[np.floating],
    chunk: int = 256,
    exclude: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """For each query row, the index of the nearest reference row and the squared distance.

    ``exclude[i]`` (optional) is a reference index query ``i`` may not match (itself, for
    leave-one-out neighbours within one set).

    The search uses the fast ``|a|^2 + |b|^2 - 2ab`` form; the reported distance of the
    chosen pair is recomputed exactly from the difference, so an exact copy gives 0.
    """
    if len(references) == 0:
        raise ValueError("references: empty")
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(references, dtype=np.float32))
    r_norm = (r * r).sum(1)
    indices = np.empty(len(q), dtype=np.int64)
    distances = np.empty(len(q), dtype=np.float64)
    for start in range(0, len(q), chunk):
        block = q[start : start + chunk]
        approx = (block * block).sum(1)[:, None] + r_norm[None, :] - 2 * block @ r.T
        if exclude is not None:
            rows = torch.arange(len(block))
            approx[rows, torch.from_numpy(exclude[start : start + len(block)])] = float("inf")
        best = approx.argmin(1)
        exact = ((block.double() - r[best].double()) ** 2).sum(1)
        indices[start : start + len(block)] = best.numpy()
        distances[start : start + len(block)] = exact.numpy()
    return indices, distances


def sampled_pairs(n: int, max_pairs: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """All ``i < j`` pairs of ``n`` items, or ``max_pairs`` distinct ones drawn at random."""
    total = n * (n - 1) // 2
    if total <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        return np.stack([i, j], axis=1).astype(np.int64)
    codes: set[int] = set()
    while len(codes) < max_pairs:
        a = rng.integers(0, n, size=2 * max_pairs)
        b = rng.integers(0, n, size=2 * max_pairs)
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            if x != y and len(codes) < max_pairs:
                codes.add(min(x, y) * n + max(x, y))
    ordered = np.array(sorted(codes), dtype=np.int64)
    i, j = ordered // n, ordered % n
    return np.stack([i, j], axis=1)


def pair_distances(
    embeddings: NDArray[np.floating], pairs: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Squared distances of the given index pairs."""
    x = np.asarray(embeddings, dtype=np.float64)
    out = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), 4096):
        block = pairs[start : start + 4096]
        out[start : start + len(block)] = ((x[block[:, 0]] - x[block[:, 1]]) ** 2).sum(1)
    return out


def pixel_vectors(images: NDArray[np.float32], side: int = 32) -> NDArray[np.float32]:
    """Images (N x 3 x H x W in [0, 1]) resized to ``side`` and flattened, divided by
    ``sqrt(3 side^2)`` so that squared distances are mean squared pixel differences."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tuple(tensor.shape[-2:]) != (side, side):
        tensor = torch.nn.functional.interpolate(
            tensor, size=(side, side), mode="bilinear", align_corners=False, antialias=True
        )
    return (tensor.flatten(1) / (3 * side * side) ** 0.5).numpy()
