"""Generation plans from rules: per cell, per FST, FST share of the combined set, per malignancy."""

from __future__ import annotations

import math

import pytest

from generation.plans import GenerationConfig, target_counts

FSTS = (1, 2, 3, 4, 5, 6)
DIAGNOSES = ("nevus", "melanoma", "bcc", "seborrheic_keratosis")
# A public-dataset-like mix: 1000 images, FST V-VI 4.5%, nevus-heavy.
FST_MIX = {1: 150, 2: 350, 3: 280, 4: 175, 5: 30, 6: 15}
DX_MIX = {"nevus": 0.55, "melanoma": 0.15, "bcc": 0.15, "seborrheic_keratosis": 0.15}
REAL = {(f, d): round(n * w) for f, n in FST_MIX.items() for d, w in DX_MIX.items()}


def per_fst(counts: dict) -> dict[int, int]:
    return {f: sum(n for (g, _), n in counts.items() if g == f) for f in FSTS}


def test_per_cell_gives_every_cell_the_count() -> None:
    counts = target_counts("per_cell", 7, FSTS, DIAGNOSES)
    assert set(counts.values()) == {7} and len(counts) == 24


def test_per_fst_spreads_evenly_or_like_the_real_data() -> None:
    even = target_counts("per_fst", 10, FSTS, DIAGNOSES)
    assert per_fst(even) == dict.fromkeys(FSTS, 10)
    assert [even[(1, d)] for d in DIAGNOSES] == [3, 3, 2, 2]
    real = target_counts("per_fst", 100, FSTS, DIAGNOSES, REAL, spread="real")
    assert per_fst(real) == dict.fromkeys(FSTS, 100)
    assert [real[(5, d)] for d in DIAGNOSES] == [55, 15, 15, 15]


def test_fst_share_brings_v_vi_to_the_target_share_of_the_combined_set() -> None:
    counts = target_counts("fst_share", 0, FSTS, DIAGNOSES, REAL, share=0.25, share_fsts=(5, 6))
    synthetic = sum(counts.values())
    real_total, real_group = sum(REAL.values()), sum(n for (f, _), n in REAL.items() if f in (5, 6))
    assert synthetic == math.ceil((0.25 * real_total - real_group) / 0.75)
    assert (real_group + synthetic) / (real_total + synthetic) >= 0.25
    assert (real_group + synthetic - 1) / (real_total + synthetic - 1) < 0.25
    assert per_fst(counts)[5] - per_fst(counts)[6] in (0, 1)
    assert all(counts[(f, d)] == 0 for f in (1, 2, 3, 4) for d in DIAGNOSES)


def test_fst_share_already_met_needs_nothing() -> None:
    dark_heavy = {(5, "nevus"): 600, (1, "nevus"): 400}
    counts = target_counts("fst_share", 0, FSTS, DIAGNOSES, dark_heavy, share=0.25)
    assert sum(counts.values()) == 0
    assert GenerationConfig(rule="fst_share").plan(DIAGNOSES, dark_heavy) == []


def test_per_malignancy_balances_benign_and_malignant_over_skin_types() -> None:
    counts = target_counts("per_malignancy", 30, FSTS, DIAGNOSES)
    benign = sum(n for (_, d), n in counts.items() if d in ("nevus", "seborrheic_keratosis"))
    malignant = sum(n for (_, d), n in counts.items() if d in ("melanoma", "bcc"))
    assert (benign, malignant) == (30, 30)
    assert per_fst(counts) == dict.fromkeys(FSTS, 10)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"rule": "fst_share", "count": 0}, "real_counts"),
        ({"rule": "per_fst", "count": 5, "spread": "real"}, "real_counts"),
        ({"rule": "per_patient", "count": 5}, "rule"),
        ({"rule": "fst_share", "count": 0, "real_counts": REAL, "share": 1.0}, "share"),
        ({"rule": "fst_share", "count": 0, "real_counts": REAL, "share_fsts": (7,)}, "share_fsts"),
        ({"rule": "per_cell", "count": 5, "spread": "lumpy"}, "spread"),
    ],
)
def test_bad_rules_name_the_argument(kwargs: dict, argument: str) -> None:
    rule, count = kwargs.pop("rule"), kwargs.pop("count")
    real = kwargs.pop("real_counts", None)
    with pytest.raises(ValueError, match=rf"^{argument}:"):
        target_counts(rule, count, FSTS, DIAGNOSES, real, **kwargs)


def test_the_config_round_trips_and_plans_deterministically() -> None:
    config = GenerationConfig(rule="per_fst", count=8, spread="real", seed=5)
    assert GenerationConfig.from_dict(config.to_dict()) == config
    plan = config.plan(DIAGNOSES, REAL)
    assert len(plan) == 48 and plan == config.plan(DIAGNOSES, REAL)
    assert [item.index for item in plan] == list(range(48))
    with pytest.raises(ValueError, match="^diagnoses: the model was not trained on scc"):
        GenerationConfig(diagnoses=("scc",)).plan(DIAGNOSES)
    with pytest.raises(ValueError, match="^colour: unknown config key"):
        GenerationConfig.from_dict({"colour": "red"})
