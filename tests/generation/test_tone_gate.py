"""The tone-fidelity gate: images whose estimated skin type is off are regenerated from new seeds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image

from generation.generate import generate_images, read_provenance
from generation.phantom import PhantomConfig, plan_phantom, render_phantom
from generation.phantom.spec import reskin
from generation.plans import balanced_plan
from generation.tone_gate import apply_replacements, load_replacements, retry_seed, tone_gate

BASE_SPECS = plan_phantom(PhantomConfig(count=12, image_size=64, seed=5, hair_probability=0.0))


class PhantomSampler:
    """Draws phantom lesions on the requested skin type, except for the seeds in ``wrong``,
    which get FST I skin whatever was asked (a model that ignores dark-skin conditioning)."""

    def __init__(self, wrong_seeds: set[int] | None = None, always_wrong: bool = False):
        self.wrong_seeds = wrong_seeds or set()
        self.always_wrong = always_wrong
        self.calls: list[int] = []

    def __call__(self, items: Sequence, generators: Sequence[torch.Generator]) -> list[Image.Image]:
        images = []
        for item in items:
            self.calls.append(item.index)
            wrong = self.always_wrong or item.seed in self.wrong_seeds
            spec = reskin(BASE_SPECS[item.index % len(BASE_SPECS)], 1 if wrong else item.fst)
            images.append(render_phantom(spec).image)
        return images


@pytest.fixture
def dark_plan() -> list:
    return balanced_plan([1, 5, 6], ["nevus", "melanoma"], per_cell=2, base_seed=9)


def test_without_a_tolerance_it_only_measures(tmp_path: Path, dark_plan: list) -> None:
    wrong = {item.seed for item in dark_plan if item.fst == 6}
    sampler = PhantomSampler(wrong)
    images = generate_images(
        sampler, dark_plan, tmp_path, batch_size=4, provenance={"model": "phantom"}
    )
    result = tone_gate(
        sampler, images, tmp_path, base_seed=9, provenance={}, batch_size=4, tolerance=None
    )
    per_fst = result.fidelity.per_fst
    assert per_fst[1].exact_rate == 1.0 and per_fst[5].exact_rate == 1.0
    assert per_fst[6].exact_rate == 0.0  # drawn on FST I skin: five types off
    assert (result.replaced, result.still_off) == (0, 0)
    assert len(sampler.calls) == len(dark_plan)


def test_images_outside_the_tolerance_are_replaced_and_recorded(
    tmp_path: Path, dark_plan: list
) -> None:
    wrong = {item.seed for item in dark_plan if item.fst == 6}
    sampler = PhantomSampler(wrong)
    images = generate_images(
        sampler, dark_plan, tmp_path / "set", batch_size=4, provenance={"model": "phantom"}
    )
    record = tmp_path / "replacements.json"
    result = tone_gate(
        sampler, images, tmp_path / "set", base_seed=9, provenance={"model": "phantom"},
        batch_size=4, tolerance=1, retries=2, replacements_path=record,
    )  # fmt: skip
    dark = [item for item in dark_plan if item.fst == 6]
    assert result.replaced == len(dark) and result.still_off == 0
    assert result.fidelity.overall.exact_rate == 1.0
    replacements = load_replacements(record)
    assert set(replacements) == {item.index for item in dark}
    for item in dark:
        assert replacements[item.index] == {"seed": retry_seed(9, item.index, 1), "attempt": 1}
        image = next(i for i in result.images if i.index == item.index)
        provenance = read_provenance(image.path)
        assert provenance["tone_retry"] == 1 and provenance["seed"] == retry_seed(9, item.index, 1)
    # A retried job rebuilds the same plan and finds every file in place.
    again = PhantomSampler()
    resumed = generate_images(
        again,
        apply_replacements(dark_plan, replacements),
        tmp_path / "set",
        batch_size=4,
        provenance={},
    )
    assert again.calls == [] and len(resumed) == len(dark_plan)


def test_images_still_off_after_the_last_retry_are_counted(tmp_path: Path) -> None:
    plan = balanced_plan([6], ["nevus"], per_cell=2, base_seed=1)
    sampler = PhantomSampler(always_wrong=True)
    images = generate_images(sampler, plan, tmp_path, batch_size=2, provenance={})
    result = tone_gate(
        sampler, images, tmp_path, base_seed=1, provenance={}, batch_size=2, tolerance=0, retries=2
    )
    assert result.still_off == 2 and result.replaced == 2
    assert len(sampler.calls) == 2 + 2 * 2  # the first pass plus two retries of both images
    assert result.to_dict()["still_off"] == 2


def test_a_bad_tolerance_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^tolerance:"):
        tone_gate(
            PhantomSampler(), [], tmp_path, base_seed=0, provenance={}, batch_size=1, tolerance=9
        )
