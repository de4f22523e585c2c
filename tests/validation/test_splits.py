"""Group splits: no lesion in two splits, every FST x diagnosis stratum close to its target."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from validation.splits import Item, SplitFractions, group_split, leaks


def synthetic_items(seed: int = 0, n_lesions: int = 600) -> list[Item]:
    rng = random.Random(seed)
    items = []
    for lesion in range(n_lesions):
        fst = rng.choices(range(1, 7), weights=[15, 35, 28, 17, 3, 2])[0]
        dx = rng.choices(["nevus", "melanoma", "bcc"], weights=[6, 2, 2])[0]
        for shot in range(rng.choice([1, 1, 1, 2, 3])):
            items.append(Item(key=f"L{lesion}-{shot}", group=f"L{lesion}", stratum=(fst, dx)))
    return items


def test_no_group_lands_in_two_splits() -> None:
    items = synthetic_items()
    assignment = group_split(items, SplitFractions(), seed=1)
    assert set(assignment) == {item.key for item in items}
    assert leaks(assignment, {item.key: item.group for item in items}) == []


def test_each_stratum_follows_the_fractions() -> None:
    items = synthetic_items(n_lesions=3000)
    assignment = group_split(items, SplitFractions(0.7, 0.15, 0.15), seed=2)
    per_stratum: dict = {}
    for item in items:
        per_stratum.setdefault(item.stratum, Counter())[assignment[item.key]] += 1
    overall = Counter(assignment.values())
    assert abs(overall["train"] / len(items) - 0.7) < 0.02
    for stratum, counts in per_stratum.items():
        total = sum(counts.values())
        if total >= 100:
            assert abs(counts["test"] / total - 0.15) < 0.05, stratum
    rare = [s for s, c in per_stratum.items() if sum(c.values()) >= 8]
    assert all(
        per_stratum[s]["test"] > 0 for s in rare
    )  # even rare FST V-VI cells reach the test split


def test_it_is_deterministic_and_seeded() -> None:
    items = synthetic_items()
    first = group_split(items, SplitFractions(), seed=3)
    assert first == group_split(list(reversed(items)), SplitFractions(), seed=3)
    assert first != group_split(items, SplitFractions(), seed=4)


def test_zero_share_splits_get_nothing() -> None:
    assignment = group_split(synthetic_items(), SplitFractions(0.8, 0.0, 0.2), seed=0)
    assert set(assignment.values()) == {"train", "test"}


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"train": 0.9}, "fractions"), ({"val": -0.1, "train": 0.95}, "val")]
)
def test_bad_fractions_are_refused(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        SplitFractions(**kwargs)


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="^items:"):
        group_split([Item("a", "g", 1), Item("a", "h", 1)], SplitFractions(), seed=0)
