"""Exact-count label allocation that stays stable when the dataset grows.

``stable_allocation`` assigns a category to items 0, 1, 2, ... one at a time. After every
prefix of ``n`` items, each category ``k`` holds ``floor(n * w_k)`` or ``ceil(n * w_k)``
items (the *quota* property, which largest-remainder rounding also has), and item ``i``'s
label never depends on how many items follow it. The order is pseudo-random: each step
draws the label at random, in proportion to the weights, among the categories that may
take one more item, unless that choice would make a later quota unreachable; then it takes
the category with the earliest deadline (earliest-deadline-first is optimal for this
unit-step schedule, so the quota holds for every prefix).

Largest-remainder rounding itself cannot be both exact for every ``n`` and stable under
growth (the "Alabama paradox": the largest-remainder count of a category can fall when
``n`` grows), so the categories that get the rounded-up count can differ from
``largest_remainder`` when remainders are close; both are within one item of
``n * w_k`` and sum to ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

_EPS = 1e-9


def largest_remainder(weights: Sequence[float], total: int) -> list[int]:
    """Split ``total`` items over categories in proportion to ``weights`` (Hamilton method).

    Args:
        weights: Non-negative weights, not all zero (normalised here).
        total: Number of items to split (>= 0).

    Returns:
        Integer counts summing to ``total``; ties in the remainders go to the earlier
        category.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise ValueError(
            f"weights: need non-negative finite weights, not all zero, got {weights!r}"
        )
    if total < 0:
        raise ValueError(f"total: must be >= 0, got {total}")
    quotas = total * w / w.sum()
    counts = np.floor(quotas + _EPS).astype(np.int64)
    remainders = quotas - counts
    short = total - int(counts.sum())
    order = sorted(range(w.size), key=lambda k: (-remainders[k], k))
    for k in order[:short]:
        counts[k] += 1
    return [int(c) for c in counts]


def stable_allocation(
    weights: Sequence[float], count: int, seed: int | Sequence[int]
) -> NDArray[np.int64]:
    """Label ``count`` items with category indices; every prefix meets the quota.

    Args:
        weights: Non-negative weights, not all zero (normalised here).
        count: Number of items.
        seed: Seed (or seed sequence entropy) of the pseudo-random order.

    Returns:
        Array of ``count`` category indices. ``stable_allocation(w, n, s)[:m]`` equals
        ``stable_allocation(w, m, s)`` for every ``m <= n``.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise ValueError(
            f"weights: need non-negative finite weights, not all zero, got {weights!r}"
        )
    if count < 0:
        raise ValueError(f"count: must be >= 0, got {count}")
    w = w / w.sum()
    active = w > 0
    safe_w = np.where(active, w, 1.0)
    # Beyond this many steps ahead no category can be ahead of its quota any more, so the
    # feasibility check below needs no longer horizon.
    horizon = int(math.ceil(2.0 / float(w[active].min()))) + 2
    offsets = np.arange(horizon + 1, dtype=np.float64)
    counts = np.zeros(w.size, dtype=np.int64)
    labels = np.empty(count, dtype=np.int64)
    draws = np.random.default_rng(seed).random(count)
    for step in range(count):
        n = step + 1
        released = active & (counts < np.ceil(n * w - _EPS))
        weight_released = np.where(released, w, 0.0)
        cumulative = np.cumsum(weight_released)
        choice = int(np.searchsorted(cumulative, draws[step] * cumulative[-1], side="right"))
        choice = min(choice, w.size - 1)
        if not released[choice]:
            choice = int(np.flatnonzero(released)[-1])
        counts[choice] += 1
        # Can every category still reach its lower quota at every later prefix?
        t = n + offsets
        due = np.floor(np.outer(t, w) + _EPS) - counts
        if np.any(np.clip(due, 0, None).sum(axis=1) > t - n):
            counts[choice] -= 1
            deadlines = np.where(released, np.ceil((counts + 1) / safe_w - _EPS), np.inf)
            choice = int(np.argmin(deadlines))
            counts[choice] += 1
        labels[step] = choice
    return labels
