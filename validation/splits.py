"""Leakage-free train/validation/test splits, stratified by skin type and diagnosis.

Images of one lesion (or, at patient level, of one patient) must land in the same split,
or a classifier is tested on near-copies of its training images. ``group_split`` assigns
whole groups: groups are bucketed by their stratum (FST × diagnosis, the most common label
among the group's images), shuffled with a seeded generator, and each group goes to the
split whose image count lags furthest behind its target share within that stratum (ties to
the split listed first). Every stratum is therefore split close to the requested fractions,
rare cells included, and the result is a pure function of the inputs and the seed.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SplitFractions:
    """Target shares of the splits, in order; they must be positive and sum to 1."""

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name}: {value!r} is not a share between 0 and 1")
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"fractions: train + val + test must be 1, got {total:.4f}")

    def as_dict(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass(frozen=True)
class Item:
    """One image: its key, the group it must stay with, and its stratum."""

    key: Hashable
    group: Hashable
    stratum: Hashable


def group_split(items: Sequence[Item], fractions: SplitFractions, seed: int) -> dict[Hashable, str]:
    """Assign every item a split (``"train"``, ``"val"`` or ``"test"``) by whole groups.

    Args:
        items (`Sequence[Item]`): The images, with their group and stratum.
        fractions (`SplitFractions`): Target shares.
        seed (`int`): Seed of the shuffle; the same inputs and seed give the same splits.

    Returns:
        ``{item.key: split}``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: {seed!r} is not an integer")
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        raise ValueError("items: keys are not unique")
    members: dict[Hashable, list[Item]] = defaultdict(list)
    for item in items:
        members[item.group].append(item)
    by_stratum: dict[Hashable, list[Hashable]] = defaultdict(list)
    for group, group_items in members.items():
        stratum = Counter(i.stratum for i in group_items).most_common(1)[0][0]
        by_stratum[stratum].append(group)
    shares = fractions.as_dict()
    names = [name for name, share in shares.items() if share > 0]
    rng = random.Random(seed)
    assignment: dict[Hashable, str] = {}
    for stratum in sorted(by_stratum, key=repr):
        groups = sorted(by_stratum[stratum], key=repr)
        rng.shuffle(groups)
        total = sum(len(members[g]) for g in groups)
        filled = dict.fromkeys(names, 0)
        for group in groups:
            size = len(members[group])
            # The split furthest below its target after taking this group's images.
            target = max(names, key=lambda n: (shares[n] * total - filled[n], -names.index(n)))
            filled[target] += size
            for item in members[group]:
                assignment[item.key] = target
    return assignment


def leaks(
    assignment: Mapping[Hashable, str], groups: Mapping[Hashable, Hashable]
) -> list[Hashable]:
    """Groups whose items sit in more than one split (should always be empty)."""
    seen: dict[Hashable, set[str]] = defaultdict(set)
    for key, split in assignment.items():
        seen[groups[key]].add(split)
    return [group for group, splits in seen.items() if len(splits) > 1]
