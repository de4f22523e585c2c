"""Balanced plans and resumable, provenance-stamped generation (model-agnostic)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from generation.generate import (
    PROVENANCE_KEY,
    GeneratedImage,
    batches,
    generate_images,
    package_versions,
    read_provenance,
)
from generation.manifest import MANIFEST_NAME, read_manifest
from generation.plans import (
    GenerationItem,
    balanced_plan,
    derive_seed,
    plan_from_counts,
    plan_summary,
)
from validation.files import sha256_file

# diffusers' DPM-Solver calls np.array on a torch tensor (numpy 2 deprecation, harmless).
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


PROVENANCE = {"model": "fake", "model_sha256": "ab" * 32, "versions": {"torch": "x"}}


class FakeSampler:
    """Colours each image from its own generator; counts calls and items."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(
        self, items: Sequence[GenerationItem], generators: Sequence[torch.Generator]
    ) -> list[Image.Image]:
        self.calls.append([item.index for item in items])
        images = []
        for item, generator in zip(items, generators, strict=True):
            noise = torch.rand((8, 8, 3), generator=generator)
            pixels = (noise * 255).to(torch.uint8).numpy()
            pixels[0, 0] = (item.fst, 0, 0)
            images.append(Image.fromarray(pixels, "RGB"))
        return images

    @property
    def generated(self) -> list[int]:
        return [index for call in self.calls for index in call]


def test_balanced_plan_gives_every_cell_per_cell_images_interleaved() -> None:
    plan = balanced_plan([1, 2, 3, 4, 5, 6], ["nevus", "melanoma"], per_cell=3, base_seed=42)
    assert len(plan) == 36
    assert [item.index for item in plan] == list(range(36))
    assert set(Counter((i.fst, i.diagnosis) for i in plan).values()) == {3}
    # Round k holds the k-th image of every cell, so a partial run stays balanced.
    first_round = plan[:12]
    assert len({(i.fst, i.diagnosis) for i in first_round}) == 12
    assert plan_summary(plan)["6/melanoma"] == 3


def test_plan_seeds_are_deterministic_distinct_and_depend_on_the_base_seed() -> None:
    plan = balanced_plan([1, 6], ["bcc"], per_cell=50, base_seed=7)
    assert plan == balanced_plan([1, 6], ["bcc"], per_cell=50, base_seed=7)
    seeds = [item.seed for item in plan]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert seeds[5] == derive_seed(7, 5)
    other = balanced_plan([1, 6], ["bcc"], per_cell=50, base_seed=8)
    assert not set(seeds) & {item.seed for item in other}


def test_plan_from_counts() -> None:
    plan = plan_from_counts({(5, "nevus"): 3, (6, "nevus"): 1, (1, "nevus"): 0}, base_seed=0)
    assert [(i.fst, i.diagnosis) for i in plan] == [
        (5, "nevus"),
        (6, "nevus"),
        (5, "nevus"),
        (5, "nevus"),
    ]
    with pytest.raises(ValueError, match="^counts: "):
        plan_from_counts({(5, "nevus"): -1}, base_seed=0)


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        (([], ["nevus"], 1, 0), "fsts"),
        (([0], ["nevus"], 1, 0), "fsts"),
        (([1, 1], ["nevus"], 1, 0), "fsts"),
        (([1], [], 1, 0), "diagnoses"),
        (([1], ["wart"], 1, 0), "diagnoses"),
        (([1], ["nevus"], 0, 0), "per_cell"),
        (([1], ["nevus"], 1, -1), "base_seed"),
        (([1], ["nevus"], 1, 2**63), "base_seed"),
    ],
)
def test_balanced_plan_rejects_bad_arguments(args: tuple[Any, ...], argument: str) -> None:
    with pytest.raises(ValueError, match=f"^{argument}: "):
        balanced_plan(*args)


def test_generate_writes_pngs_with_provenance(tmp_path: Path) -> None:
    plan = balanced_plan([1, 6], ["nevus", "melanoma"], per_cell=2, base_seed=3)
    sampler = FakeSampler()
    progress: list[tuple[int, int, int]] = []
    images = generate_images(
        sampler,
        plan,
        tmp_path / "out",
        batch_size=3,
        provenance=PROVENANCE,
        on_progress=lambda done, total, new: progress.append((done, total, len(new))),
    )
    assert [image.index for image in images] == list(range(8))
    assert sampler.calls == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert progress == [(0, 8, 0), (3, 8, 3), (6, 8, 3), (8, 8, 2)]
    for item, image in zip(plan, images, strict=True):
        assert isinstance(image, GeneratedImage) and image.generated
        assert image.path == tmp_path / "out" / f"{item.index:06d}.png"
        assert (image.fst, image.diagnosis, image.seed) == (item.fst, item.diagnosis, item.seed)
        assert image.sha256 == sha256_file(image.path)
        stored = read_provenance(image.path)
        assert stored == image.provenance
        assert stored == {**PROVENANCE, **item.to_dict()}
        with Image.open(image.path) as png:
            assert png.format == "PNG" and json.loads(png.text[PROVENANCE_KEY])["seed"] == item.seed
            assert png.getpixel((0, 0))[0] == item.fst
    assert not list((tmp_path / "out").glob(".*"))


def test_each_image_depends_only_on_its_own_seed(tmp_path: Path) -> None:
    plan = balanced_plan([2, 3], ["nevus"], per_cell=2, base_seed=1)
    one = generate_images(FakeSampler(), plan, tmp_path / "a", batch_size=4, provenance={})
    other = generate_images(FakeSampler(), plan[::-1], tmp_path / "b", batch_size=1, provenance={})
    by_index = {image.index: image.sha256 for image in other}
    assert all(by_index[image.index] == image.sha256 for image in one)


def test_generation_resumes_without_regenerating_or_duplicating(tmp_path: Path) -> None:
    plan = balanced_plan([1, 2, 3, 4, 5, 6], ["nevus"], per_cell=2, base_seed=0)
    first = FakeSampler()
    polls = iter([False, False, True])
    partial = generate_images(
        first, plan, tmp_path, batch_size=4, provenance=PROVENANCE, should_stop=lambda: next(polls)
    )
    assert [image.index for image in partial] == list(range(8))
    assert first.generated == list(range(8))
    hashes = {image.index: image.sha256 for image in partial}
    # A crash mid-write (long ago) left a temporary file; one finished image got truncated.
    # A fresh temporary file may be another shard's write in progress: it is left alone.
    leftover = tmp_path / ".000009.png.abc.tmp"
    leftover.write_bytes(b"partial")
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    in_progress = tmp_path / ".000010.png.def.tmp"
    in_progress.write_bytes(b"being written")
    truncated = tmp_path / "000007.png"
    with Image.open(truncated) as png:
        pixels_before = np.asarray(png).copy()
    truncated.write_bytes(truncated.read_bytes()[:40])

    second = FakeSampler()
    resumed = generate_images(second, plan, tmp_path, batch_size=4, provenance={"run": 2})
    assert second.generated == [7, 8, 9, 10, 11]  # only the missing and the broken one
    assert [image.index for image in resumed] == list(range(12))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [in_progress.name, MANIFEST_NAME] + [f"{i:06d}.png" for i in range(12)]
    )
    assert read_manifest(tmp_path) == {image.path.name: image.sha256 for image in resumed}
    for image in resumed[:7]:
        assert not image.generated and image.sha256 == hashes[image.index]
        assert image.provenance["model"] == "fake"  # read back from the file
    assert resumed[7].generated
    with Image.open(resumed[7].path) as png:
        assert np.array_equal(np.asarray(png), pixels_before)  # same seed, same pixels
    assert resumed[8].provenance["run"] == 2

    third = FakeSampler()
    again = generate_images(third, plan, tmp_path, batch_size=4, provenance={})
    assert third.calls == [] and len(again) == 12


def test_the_manifest_lists_every_image_and_a_changed_one_is_made_again(tmp_path: Path) -> None:
    plan = balanced_plan([1, 6], ["nevus"], per_cell=3, base_seed=4)
    polls = iter([False, True])
    first = generate_images(
        FakeSampler(), plan, tmp_path, batch_size=4, provenance={}, should_stop=lambda: next(polls)
    )
    # Written after each batch: the first four are listed, in sha256sum's format.
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert lines == [f"{image.sha256}  {image.path.name}" for image in first]
    assert read_manifest(tmp_path) == {image.path.name: sha256_file(image.path) for image in first}
    # Image 2 is changed after it was written, yet stays a readable PNG with its provenance
    # (saved again with other compression): its bytes no longer match the listed sha256.
    changed = first[2].path
    with Image.open(changed) as png:
        png.load()
        info = PngImagePlugin.PngInfo()
        info.add_itxt(PROVENANCE_KEY, png.text[PROVENANCE_KEY])
        png.save(changed, format="PNG", pnginfo=info, compress_level=0)
    assert sha256_file(changed) != first[2].sha256
    sampler = FakeSampler()
    images = generate_images(sampler, plan, tmp_path, batch_size=4, provenance={})
    assert sampler.generated == [2, 4, 5]
    assert images[2].sha256 == first[2].sha256  # same seed, same pixels, same file
    assert read_manifest(tmp_path) == {image.path.name: sha256_file(image.path) for image in images}


def test_an_unreadable_manifest_is_rebuilt_and_read_manifest_names_it(tmp_path: Path) -> None:
    plan = balanced_plan([2], ["nevus"], per_cell=2, base_seed=0)
    generate_images(FakeSampler(), plan, tmp_path, batch_size=2, provenance={})
    (tmp_path / MANIFEST_NAME).write_text("not a checksum line\n")
    with pytest.raises(ValueError, match="^output_dir: .* line 1 is not"):
        read_manifest(tmp_path)
    sampler = FakeSampler()
    images = generate_images(sampler, plan, tmp_path, batch_size=2, provenance={})
    assert sampler.calls == []  # the images themselves are whole
    assert read_manifest(tmp_path) == {image.path.name: image.sha256 for image in images}
    assert read_manifest(tmp_path / "nothing-here") == {}


def test_a_tone_replacement_the_plan_does_not_list_is_made_again(tmp_path: Path) -> None:
    # The tone gate wrote a replacement (new seed, "tone_retry") but the job stopped before
    # recording the seed: on the retry the plan's seed wins, and only that image is redone.
    plan = balanced_plan([1], ["nevus"], 3, 0)
    generate_images(FakeSampler(), plan, tmp_path, batch_size=3, provenance={})
    replacement = replace(plan[1], seed=plan[1].seed + 1000)
    (tmp_path / "000001.png").unlink()  # as the gate does before regenerating
    generate_images(
        FakeSampler(), [replacement], tmp_path, batch_size=1, provenance={"tone_retry": 1}
    )
    sampler = FakeSampler()
    images = generate_images(sampler, plan, tmp_path, batch_size=3, provenance={})
    assert [image.generated for image in images] == [False, True, False]
    assert images[1].seed == plan[1].seed
    assert read_provenance(images[1].path)["seed"] == plan[1].seed
    assert "tone_retry" not in read_provenance(images[1].path)


def test_generation_refuses_a_folder_holding_another_plan(tmp_path: Path) -> None:
    generate_images(
        FakeSampler(), balanced_plan([1], ["nevus"], 2, 0), tmp_path, batch_size=2, provenance={}
    )
    with pytest.raises(ValueError, match="^output_dir: 000000.png belongs to another plan"):
        generate_images(
            FakeSampler(),
            balanced_plan([1], ["nevus"], 2, 99),
            tmp_path,
            batch_size=2,
            provenance={},
        )


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"provenance": {"path": Path("/x")}}, "provenance"),
        ({"provenance": [1]}, "provenance"),
    ],
)
def test_generate_rejects_bad_arguments(
    tmp_path: Path, kwargs: dict[str, Any], argument: str
) -> None:
    values: dict[str, Any] = {"batch_size": 2, "provenance": {}}
    values.update(kwargs)
    with pytest.raises(ValueError, match=f"^{argument}: "):
        generate_images(FakeSampler(), balanced_plan([1], ["nevus"], 1, 0), tmp_path, **values)


def test_generate_rejects_duplicate_indices_and_short_sampler_output(tmp_path: Path) -> None:
    item = GenerationItem(0, 1, "nevus", 5)
    with pytest.raises(ValueError, match="^items: "):
        generate_images(FakeSampler(), [item, item], tmp_path, batch_size=2, provenance={})
    with pytest.raises(ValueError, match="^sampler: "):
        generate_images(lambda items, gens: [], [item], tmp_path, batch_size=2, provenance={})


def test_package_versions_and_missing_provenance(tmp_path: Path) -> None:
    versions = package_versions()
    assert set(versions) == {"python", "torch", "diffusers", "numpy", "pillow"}
    assert versions["numpy"] == np.__version__
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="^path: "):
        read_provenance(tmp_path / "plain.png")


def test_conditional_pipeline_sampler_end_to_end(tmp_path: Path) -> None:
    from generation.conditional import (
        ConditionalLesionPipeline,
        ConditionalPipelineSampler,
        build_unet,
        make_noise_scheduler,
    )
    from tests.generation.test_conditional_toydata import tiny_config

    config = tiny_config()
    pipeline = ConditionalLesionPipeline(
        build_unet(config).eval(), make_noise_scheduler(config), diagnoses=list(config.diagnoses)
    )
    pipeline.save_pretrained(tmp_path / "model")
    sampler = ConditionalPipelineSampler.from_pretrained(
        tmp_path / "model", num_inference_steps=2, guidance_scale=1.5, sampler="dpmsolver++"
    )
    provenance = {**sampler.provenance(), "versions": package_versions()}
    assert provenance["model_sha256"] == sha256_file(
        tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    )
    plan = balanced_plan([1, 6], ["nevus", "melanoma"], per_cell=1, base_seed=0)
    images = generate_images(sampler, plan, tmp_path / "out", batch_size=3, provenance=provenance)
    assert len(images) == 4
    stored = read_provenance(images[3].path)
    assert stored["sampler"] == "dpmsolver++" and stored["guidance_scale"] == 1.5
    assert stored["fst"] == 6 and stored["diagnosis"] == "melanoma"
    with Image.open(images[0].path) as png:
        assert png.size == (16, 16) and png.mode == "RGB"


class PerFstSampler(FakeSampler):
    """A sampler with one adapter per skin type: it wants one skin type per batch."""

    def batch_key(self, item: GenerationItem) -> int:
        return item.fst


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    fsts=st.lists(st.sampled_from([1, 2, 3, 4, 5, 6]), min_size=1, max_size=6, unique=True),
    per_cell=st.integers(1, 9),
    batch_size=st.integers(1, 10),
)
def test_batches_by_key_hold_one_key_each_and_take_turns(
    fsts: list[int], per_cell: int, batch_size: int
) -> None:
    plan = balanced_plan(fsts, ["nevus", "melanoma"], per_cell, base_seed=1)
    made = batches(plan, batch_size, lambda item: item.fst)
    assert sorted(item.index for batch in made for item in batch) == list(range(len(plan)))
    for batch in made:
        assert 1 <= len(batch) <= batch_size and len({item.fst for item in batch}) == 1
    by_fst: dict[int, list[list[GenerationItem]]] = {}
    for batch in made:
        by_fst.setdefault(batch[0].fst, []).append(batch)
    for fst, own in by_fst.items():
        # Plan order within a skin type; only its last batch may be short.
        assert [i.index for b in own for i in b] == [i.index for i in plan if i.fst == fst]
        assert all(len(b) == batch_size for b in own[:-1])
    # The skin types take turns, in order of first appearance in the plan.
    first_seen = list(dict.fromkeys(item.fst for item in plan))
    rounds = max(len(own) for own in by_fst.values())
    expected = [f for r in range(rounds) for f in first_seen if len(by_fst[f]) > r]
    assert [batch[0].fst for batch in made] == expected
    # Without a key: consecutive slices of the plan.
    assert [b for b in batches(plan, batch_size)] == [
        plan[start : start + batch_size] for start in range(0, len(plan), batch_size)
    ]


def test_a_sampler_with_a_batch_key_gets_one_key_per_call(tmp_path: Path) -> None:
    plan = balanced_plan([1, 3, 6], ["nevus", "melanoma"], per_cell=3, base_seed=2)
    sampler = PerFstSampler()
    progress: list[set[int]] = []
    polls = iter([False] * 3 + [True])
    first = generate_images(
        sampler,
        plan,
        tmp_path,
        batch_size=4,
        provenance={},
        on_progress=lambda done, total, new: progress.append({image.fst for image in new}),
        should_stop=lambda: next(polls),
    )
    fst_of = {item.index: item.fst for item in plan}
    assert [{fst_of[i] for i in call} for call in sampler.calls] == [{1}, {3}, {6}]
    assert progress == [set(), {1}, {3}, {6}]
    # Stopped after one batch of each skin type: as balanced as the batches allow.
    assert sorted(image.fst for image in first) == [1] * 4 + [3] * 4 + [6] * 4
    assert [image.index for image in first] == sorted(image.index for image in first)
    resumed = generate_images(PerFstSampler(), plan, tmp_path, batch_size=4, provenance={})
    assert [image.index for image in resumed] == [item.index for item in plan]  # plan order
    assert read_manifest(tmp_path) == {image.path.name: image.sha256 for image in resumed}


def test_batches_refuse_a_batch_size_below_one() -> None:
    plan = balanced_plan([1], ["nevus"], per_cell=2, base_seed=0)
    for size in (0, -1, True):
        with pytest.raises(ValueError, match="^batch_size: "):
            batches(plan, size, lambda item: item.fst)
