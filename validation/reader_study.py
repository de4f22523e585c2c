"""Drawing the cases of a blinded reader study and ordering them for each reader.

If the real and the synthetic halves of a study had different skin-type or diagnosis
mixes, a reader could tell them apart by skin tone or lesion type alone. ``draw_matched``
therefore gives both halves the same FST × diagnosis mix: the strata are those present in
both pools, the counts are spread as evenly as the pools allow (so rare skin types are not
crowded out), and the images of each stratum are sampled with a seeded generator.
``reader_order`` is the per-reader permutation; it is a pure function of its seed, so the
order stored for a reader can be recomputed and audited.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from validation.checks import check_int


@dataclass(frozen=True)
class Candidate:
    """One image that may join a study: its key and its stratum (e.g. ``(fst, diagnosis)``)."""

    key: Hashable
    stratum: Hashable


def _by_stratum(pool: Sequence[Candidate]) -> dict[Hashable, list[Hashable]]:
    grouped: dict[Hashable, list[Hashable]] = defaultdict(list)
    for candidate in pool:
        grouped[candidate.stratum].append(candidate.key)
    return {stratum: sorted(keys, key=repr) for stratum, keys in grouped.items()}


def spread(
    total: int, capacities: Mapping[Hashable, int], rng: random.Random
) -> dict[Hashable, int]:
    """Spread ``total`` over strata as evenly as their capacities allow (water-filling).

    Units that do not divide evenly go to strata picked by ``rng``.

    Args:
        total (`int`): How many to place.
        capacities (`Mapping`): The most each stratum can take.
        rng (`random.Random`): Breaks ties between strata.
    """
    if total > sum(capacities.values()):
        raise ValueError(
            f"total: {total} is more than the strata can hold ({sum(capacities.values())})"
        )
    counts = dict.fromkeys(capacities, 0)
    left = total
    while left:
        open_strata = sorted((s for s in counts if counts[s] < capacities[s]), key=repr)
        share = left // len(open_strata)
        if share == 0:
            for stratum in rng.sample(open_strata, left):
                counts[stratum] += 1
            break
        for stratum in open_strata:
            take = min(share, capacities[stratum] - counts[stratum])
            counts[stratum] += take
            left -= take
    return counts


def matched_capacity(real: Sequence[Candidate], synthetic: Sequence[Candidate]) -> int:
    """The largest ``n`` for which ``draw_matched(real, synthetic, n, n, ...)`` succeeds."""
    real_pool, synthetic_pool = _by_stratum(real), _by_stratum(synthetic)
    return sum(
        min(len(keys), len(synthetic_pool[s]))
        for s, keys in real_pool.items()
        if s in synthetic_pool
    )


def draw_matched(
    real: Sequence[Candidate],
    synthetic: Sequence[Candidate],
    n_real: int,
    n_synthetic: int,
    seed: int,
) -> tuple[list[Hashable], list[Hashable]]:
    """Draw ``n_real`` real and ``n_synthetic`` synthetic keys with the same stratum mix.

    The real half is spread over the strata both pools share; the synthetic half gets the
    same shares scaled to ``n_synthetic`` (identical counts when the halves are equal).

    Args:
        real (`Sequence[Candidate]`): The real pool.
        synthetic (`Sequence[Candidate]`): The synthetic pool.
        n_real (`int`): Real cases to draw (1..10000).
        n_synthetic (`int`): Synthetic cases to draw (1..10000).
        seed (`int`): The same pools and seed give the same draw, whatever the pools' order.

    Returns:
        ``(real_keys, synthetic_keys)``, each sorted by stratum, then key.
    """
    n_real = check_int("n_real", n_real, 1, 10_000)
    n_synthetic = check_int("n_synthetic", n_synthetic, 1, 10_000)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    real_pool, synthetic_pool = _by_stratum(real), _by_stratum(synthetic)
    shared = sorted(set(real_pool) & set(synthetic_pool), key=repr)
    if not shared:
        raise ValueError("synthetic: no FST x diagnosis stratum is present in both pools")
    ratio = n_synthetic / n_real
    capacities = {
        s: min(len(real_pool[s]), int(len(synthetic_pool[s]) / ratio + 1e-9)) for s in shared
    }
    rng = random.Random(seed)
    if n_real > sum(capacities.values()):
        raise ValueError(
            f"n_real: only {sum(capacities.values())} real cases can be matched by synthetic "
            f"ones of the same FST x diagnosis at this ratio, asked for {n_real}"
        )
    real_counts = spread(n_real, capacities, rng)
    synthetic_counts = _scale(real_counts, n_synthetic)
    for stratum, count in synthetic_counts.items():
        if count > len(synthetic_pool[stratum]):
            raise ValueError(
                f"n_synthetic: stratum {stratum!r} needs {count} synthetic images, "
                f"the pool has {len(synthetic_pool[stratum])}"
            )
    real_keys = [
        k for s in shared for k in sorted(rng.sample(real_pool[s], real_counts[s]), key=repr)
    ]
    synthetic_keys = [
        k
        for s in shared
        for k in sorted(rng.sample(synthetic_pool[s], synthetic_counts[s]), key=repr)
    ]
    return real_keys, synthetic_keys


def _scale(counts: Mapping[Hashable, int], total: int) -> dict[Hashable, int]:
    """``counts`` scaled to sum to ``total``, by largest remainder (ties by stratum order)."""
    current = sum(counts.values())
    exact = {s: c * total / current for s, c in counts.items()}
    scaled = {s: int(v) for s, v in exact.items()}
    order = sorted(exact, key=lambda s: (-(exact[s] - scaled[s]), repr(s)))
    for stratum in order[: total - sum(scaled.values())]:
        scaled[stratum] += 1
    return scaled


def reader_order(n: int, seed: int) -> list[int]:
    """A permutation of ``range(n)``: the order in which one reader sees a study's cases.

    Args:
        n (`int`): Number of cases (1..100000).
        seed (`int`): The reader's order seed (0..2**63-1); stored, so the order can be audited.
    """
    n = check_int("n", n, 1, 100_000)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order
