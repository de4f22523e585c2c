"""Drawing a study's cases with one FST x diagnosis mix, and the per-reader orders."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from validation.reader_study import (
    Candidate,
    draw_matched,
    matched_capacity,
    reader_order,
    spread,
)


def pool(prefix: str, counts: dict[tuple[int, str], int]) -> list[Candidate]:
    return [
        Candidate(f"{prefix}-{fst}-{dx}-{i}", (fst, dx))
        for (fst, dx), n in counts.items()
        for i in range(n)
    ]


# Skewed like public data: few dark-skin images among the real ones.
REAL = {(1, "nevus"): 40, (2, "nevus"): 30, (2, "melanoma"): 12, (5, "nevus"): 3, (6, "bcc"): 2}
SYNTHETIC = {
    (1, "nevus"): 10,
    (2, "nevus"): 10,
    (2, "melanoma"): 10,
    (5, "nevus"): 10,
    (4, "bcc"): 9,
}


def strata(keys: list[str], candidates: list[Candidate]) -> Counter:
    lookup = {c.key: c.stratum for c in candidates}
    return Counter(lookup[k] for k in keys)


def test_both_halves_have_the_same_mix_over_shared_strata_only() -> None:
    real, synthetic = pool("r", REAL), pool("s", SYNTHETIC)
    real_keys, synthetic_keys = draw_matched(real, synthetic, 20, 20, seed=3)
    assert len(real_keys) == len(set(real_keys)) == 20
    assert len(synthetic_keys) == len(set(synthetic_keys)) == 20
    real_mix, synthetic_mix = strata(real_keys, real), strata(synthetic_keys, synthetic)
    assert real_mix == synthetic_mix
    assert set(real_mix) == {(1, "nevus"), (2, "nevus"), (2, "melanoma"), (5, "nevus")}
    # Spread evenly, limited by the 3 real FST V images: 3 there, the rest shared out.
    assert real_mix[(5, "nevus")] == 3
    assert sorted(real_mix.values()) == [3, 5, 6, 6]


def test_unequal_halves_keep_the_proportions() -> None:
    real, synthetic = (
        pool("r", {(1, "nevus"): 20, (6, "nevus"): 20}),
        pool("s", {(1, "nevus"): 20, (6, "nevus"): 20}),
    )
    real_keys, synthetic_keys = draw_matched(real, synthetic, 10, 20, seed=0)
    assert strata(real_keys, real) == {(1, "nevus"): 5, (6, "nevus"): 5}
    assert strata(synthetic_keys, synthetic) == {(1, "nevus"): 10, (6, "nevus"): 10}


def test_the_draw_is_a_function_of_the_seed_not_of_the_pool_order() -> None:
    real, synthetic = pool("r", REAL), pool("s", SYNTHETIC)
    first = draw_matched(real, synthetic, 12, 12, seed=11)
    shuffled_real, shuffled_synthetic = real[:], synthetic[:]
    random.Random(1).shuffle(shuffled_real)
    random.Random(2).shuffle(shuffled_synthetic)
    assert draw_matched(shuffled_real, shuffled_synthetic, 12, 12, seed=11) == first
    assert draw_matched(real, synthetic, 12, 12, seed=12) != first


def test_asking_for_more_than_can_be_matched_names_the_argument() -> None:
    real, synthetic = pool("r", REAL), pool("s", SYNTHETIC)
    capacity = matched_capacity(real, synthetic)
    assert capacity == 10 + 10 + 10 + 3
    draw_matched(real, synthetic, capacity, capacity, seed=0)
    with pytest.raises(ValueError, match=r"^n_real:"):
        draw_matched(real, synthetic, capacity + 1, capacity + 1, seed=0)
    with pytest.raises(ValueError, match=r"^synthetic:"):
        draw_matched(real, pool("s", {(3, "bcc"): 5}), 2, 2, seed=0)
    with pytest.raises(ValueError, match=r"^n_synthetic:"):
        draw_matched(real, synthetic, 5, 0, seed=0)


def test_spread_fills_small_strata_first_and_respects_capacities() -> None:
    counts = spread(10, {"a": 1, "b": 100, "c": 100}, random.Random(0))
    assert counts["a"] == 1 and counts["b"] + counts["c"] == 9
    assert abs(counts["b"] - counts["c"]) <= 1


def test_reader_order_is_a_seeded_permutation() -> None:
    order = reader_order(100, seed=42)
    assert sorted(order) == list(range(100))
    assert reader_order(100, seed=42) == order
    assert reader_order(100, seed=43) != order
    with pytest.raises(ValueError, match=r"^seed:"):
        reader_order(5, seed=-1)


def test_reader_orders_do_not_tie_position_to_class() -> None:
    """30 readers of a 50 + 50 study: position and class are uncorrelated on average."""
    labels = [1] * 50 + [0] * 50  # cases by id: the real ones first, as a builder might store them
    correlations = []
    for seed in range(30):
        order = reader_order(100, seed)
        positions = list(range(100))
        classes = [labels[case] for case in order]
        mean_p, mean_c = sum(positions) / 100, sum(classes) / 100
        cov = sum((p - mean_p) * (c - mean_c) for p, c in zip(positions, classes, strict=True))
        var_p = sum((p - mean_p) ** 2 for p in positions)
        var_c = sum((c - mean_c) ** 2 for c in classes)
        correlations.append(abs(cov / (var_p * var_c) ** 0.5))
    assert len({tuple(reader_order(100, s)) for s in range(30)}) == 30
    assert sum(correlations) / len(correlations) < 0.1
