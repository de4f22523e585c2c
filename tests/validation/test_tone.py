"""Tests of the tone-fidelity summary (validation/tone.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generation.phantom import PhantomConfig, plan_phantom, render_phantom, reskin
from validation.ita import estimate_batch, estimated_fsts
from validation.tone import FidelityStats, ToneFidelity, tone_fidelity, within_tolerance
from validation.vocabulary import FST

#: Hand-made: |error| per image is 0, 1, 0, 2, -, 0, 1, - (two could not be estimated).
REQUESTED = [1, 1, 2, 3, 4, 5, 6, 6]
ESTIMATED = [1, 2, 2, 5, None, 5, 5, None]


def test_overall_rates_by_hand() -> None:
    result = tone_fidelity(REQUESTED, ESTIMATED)
    assert result.tolerance == 1
    assert result.overall == FidelityStats(
        n=8,
        n_estimated=6,
        n_unestimated=2,
        exact_rate=pytest.approx(3 / 6),
        within_one_rate=pytest.approx(5 / 6),
        mean_abs_error=pytest.approx(4 / 6),
        pass_rate=pytest.approx(5 / 8),  # the two unestimated images fail the gate
    )


def test_per_type_rates_by_hand() -> None:
    per = tone_fidelity(REQUESTED, ESTIMATED).per_fst
    assert sorted(per) == [1, 2, 3, 4, 5, 6]
    assert per[1] == FidelityStats(2, 2, 0, 0.5, 1.0, 0.5, 1.0)
    assert per[2] == FidelityStats(1, 1, 0, 1.0, 1.0, 0.0, 1.0)
    assert per[3] == FidelityStats(1, 1, 0, 0.0, 0.0, 2.0, 0.0)
    assert per[4] == FidelityStats(1, 0, 1, None, None, None, 0.0)
    assert per[5] == FidelityStats(1, 1, 0, 1.0, 1.0, 0.0, 1.0)
    assert per[6] == FidelityStats(2, 1, 1, 0.0, 1.0, 1.0, 0.5)


def test_confusion_matrix_by_hand() -> None:
    confusion = tone_fidelity(REQUESTED, ESTIMATED).confusion
    assert confusion == (
        (1, 1, 0, 0, 0, 0),
        (0, 1, 0, 0, 0, 0),
        (0, 0, 0, 0, 1, 0),
        (0, 0, 0, 0, 0, 0),
        (0, 0, 0, 0, 1, 0),
        (0, 0, 0, 0, 1, 0),
    )
    # Unestimated images are counted per type, not in the matrix.
    assert sum(map(sum, confusion)) == 6


def test_tolerance_changes_only_the_pass_rate() -> None:
    exact = tone_fidelity(REQUESTED, ESTIMATED, tolerance=0)
    loose = tone_fidelity(REQUESTED, ESTIMATED, tolerance=2)
    assert exact.overall.pass_rate == pytest.approx(3 / 8)
    assert loose.overall.pass_rate == pytest.approx(6 / 8)
    assert exact.overall.within_one_rate == loose.overall.within_one_rate == pytest.approx(5 / 6)
    assert exact.per_fst[3].pass_rate == 0.0 and loose.per_fst[3].pass_rate == 1.0


def test_perfect_and_empty() -> None:
    perfect = tone_fidelity([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6])
    assert perfect.overall == FidelityStats(6, 6, 0, 1.0, 1.0, 0.0, 1.0)
    assert perfect.confusion == tuple(tuple(int(r == c) for c in range(6)) for r in range(6))
    empty = tone_fidelity([], [])
    assert empty.overall == FidelityStats(0, 0, 0, None, None, None, None)
    assert all(stats.n == 0 for stats in empty.per_fst.values())
    unknown = tone_fidelity([2, 2], [None, None])
    assert unknown.overall == FidelityStats(2, 0, 2, None, None, None, 0.0)


def test_accepts_enums_numpy_and_tuples() -> None:
    result = tone_fidelity(np.array([1, 6, 6]), (FST.I, np.int64(5), FST.VI))
    assert result.overall.exact_rate == pytest.approx(2 / 3)
    assert result.confusion[5][4] == 1


def test_to_dict_is_json() -> None:
    result = tone_fidelity(REQUESTED, ESTIMATED)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["tolerance"] == 1
    assert data["overall"]["n_unestimated"] == 2
    assert data["overall"]["exact_rate"] == pytest.approx(0.5)
    assert sorted(data["per_fst"]) == ["1", "2", "3", "4", "5", "6"]
    assert data["per_fst"]["4"]["exact_rate"] is None
    assert data["confusion"]["counts"][2] == [0, 0, 0, 0, 1, 0]
    assert isinstance(result, ToneFidelity)


@pytest.mark.parametrize(
    ("requested", "estimated", "kwargs", "message"),
    [
        ([1, 2, 3], [1, 2], {}, r"^estimated: has 2 entries but requested has 3"),
        ([1, 2], [1, 2, 3], {}, r"^estimated: has 3 entries but requested has 2"),
        ([1, 7], [1, 2], {}, r"^requested: item 1 7 is not"),
        ([0], [1], {}, r"^requested: item 0 0 is not"),
        ([None], [1], {}, r"^requested: item 0 None is not"),
        ([True], [1], {}, r"^requested: item 0 True is not"),
        ([1, 2], [1, "2"], {}, r"^estimated: item 1 '2' is not"),
        ([1], [2.0], {}, r"^estimated: item 0 2.0 is not"),
        ("123", [1, 2, 3], {}, r"^requested: must be a sequence"),
        ([1], 1, {}, r"^estimated: must be a sequence"),
        ([1], [1], {"tolerance": -1}, r"^tolerance: must be between 0 and 5"),
        ([1], [1], {"tolerance": 1.5}, r"^tolerance: must be an integer"),
    ],
)
def test_bad_arguments_are_named(
    requested: object, estimated: object, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tone_fidelity(requested, estimated, **kwargs)  # type: ignore[arg-type]


def test_within_tolerance() -> None:
    assert within_tolerance(3, 3)
    assert within_tolerance(3, 4)
    assert within_tolerance(3, 2)
    assert not within_tolerance(3, 5)
    assert within_tolerance(3, 5, tolerance=2)
    assert not within_tolerance(3, 4, tolerance=0)
    assert not within_tolerance(3, None)
    assert not within_tolerance(6, None, tolerance=5)
    assert within_tolerance(FST.VI, FST.V)
    with pytest.raises(ValueError, match=r"^requested: "):
        within_tolerance(7, 3)
    with pytest.raises(ValueError, match=r"^estimated: "):
        within_tolerance(3, 0)
    with pytest.raises(ValueError, match=r"^tolerance: "):
        within_tolerance(3, 3, tolerance=6)


def test_gate_over_estimated_phantom_images() -> None:
    """End to end: requested types, images, estimates, fidelity."""
    specs = plan_phantom(PhantomConfig(count=6, image_size=64, seed=41))
    requested, images = [], []
    for spec in specs:
        for fst in range(1, 7):
            twin = reskin(spec, fst)
            requested.append(fst)
            images.append(render_phantom(twin).image)
    images.append(np.zeros((64, 64, 3), np.uint8))  # cannot be estimated
    requested.append(4)
    estimated = estimated_fsts(estimate_batch(images))
    result = tone_fidelity(requested, estimated)
    assert result.overall.n == 37 and result.overall.n_unestimated == 1
    assert result.overall.exact_rate == 1.0
    assert result.overall.pass_rate == pytest.approx(36 / 37)
    assert result.per_fst[4].n_unestimated == 1
    assert [result.confusion[i][i] for i in range(6)] == [6] * 6
    assert all(within_tolerance(r, e) for r, e in zip(requested[:-1], estimated[:-1], strict=True))
