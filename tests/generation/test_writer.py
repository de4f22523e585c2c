"""PNG writer threads: every image once, atomically, bounded, and errors surface (no hang)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image

import generation.writer as writer_module
from generation.generate import generate_images, read_provenance
from generation.manifest import JOURNAL_NAME, MANIFEST_NAME
from generation.plans import GenerationItem, balanced_plan
from generation.writer import ImageWriter
from validation.files import TEMP_SUFFIX


class ColourSampler:
    """One flat image per item, coloured by its seed (no model: the writer is under test)."""

    def __call__(
        self, items: Sequence[GenerationItem], generators: Sequence[torch.Generator]
    ) -> list[Image.Image]:
        return [Image.new("RGB", (24, 24), (item.seed % 256, 7, 99)) for item in items]


@pytest.fixture
def plan() -> list[GenerationItem]:
    return balanced_plan([1, 2, 3], ["nevus", "melanoma"], 3, 5)  # 18 images


@pytest.fixture
def replaces(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every rename the writers make, as (source, destination)."""
    seen: list[tuple[str, str]] = []
    real = os.replace
    lock = threading.Lock()

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        with lock:
            seen.append((str(src), str(dst)))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    return seen


@pytest.mark.timeout(60)
@pytest.mark.parametrize("threads", [0, 4])
def test_every_image_is_written_once_atomically_with_its_provenance(
    plan: list[GenerationItem], tmp_path: Path, replaces: list[tuple[str, str]], threads: int
) -> None:
    batches: list[list[int]] = []
    images = generate_images(
        ColourSampler(),
        plan,
        tmp_path,
        batch_size=5,
        provenance={"model": "colours"},
        on_progress=lambda done, total, new: batches.append([image.index for image in new]),
        writer_threads=threads,
    )
    assert [image.index for image in images] == [item.index for item in plan]
    destinations = Counter(Path(dst).name for _, dst in replaces if dst.endswith(".png"))
    assert destinations == Counter(f"{item.index:06d}.png" for item in plan)  # once each
    # Each batch is appended to the journal; SHA256SUMS is rewritten (atomically) once, at the
    # end, whatever the number of batches.
    assert len(batches) > 2
    others = Counter(Path(dst).name for _, dst in replaces) - destinations
    assert others == Counter({MANIFEST_NAME: 1})
    assert not (tmp_path / JOURNAL_NAME).exists()
    for src, dst in replaces:  # a temporary file beside the destination, renamed over it
        assert Path(src).parent == Path(dst).parent and src.endswith(TEMP_SUFFIX)
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))
    for image, item in zip(images, plan, strict=True):
        assert image.sha256 == hashlib.sha256(image.path.read_bytes()).hexdigest()
        assert read_provenance(image.path) == {"model": "colours", **item.to_dict()}
        with Image.open(image.path) as png:
            assert png.getpixel((3, 3)) == (item.seed % 256, 7, 99)
    # Progress once per batch, in plan order, after the batch's files are complete.
    assert batches[0] == [] and [i for b in batches[1:] for i in b] == [i.index for i in plan]
    assert [len(b) for b in batches[1:]] == [5, 5, 5, 3]


@pytest.mark.timeout(60)
def test_writes_run_on_threads_with_a_bounded_queue(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = writer_module.write_png
    running, most, names = [0], [0], set()
    lock = threading.Lock()

    def slow(image: Image.Image, path: Path, provenance: dict) -> str:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            names.add(threading.current_thread().name)
        time.sleep(0.02)
        try:
            return real(image, path, provenance)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(writer_module, "write_png", slow)
    image = Image.new("RGB", (8, 8))
    pending_seen = []
    with ImageWriter(3, max_pending=4) as writer:
        futures = []
        for i in range(16):
            futures.append(writer.submit(image, tmp_path / f"{i}.png", {"i": i}))
            pending_seen.append(sum(not f.done() for f in futures))
    assert max(pending_seen) <= 4  # submit blocks while 4 images wait
    assert most[0] >= 2 and all(name.startswith("fairderm-png") for name in names)
    assert all(f.result() for f in futures) and len(list(tmp_path.glob("*.png"))) == 16


@pytest.mark.timeout(60)
@pytest.mark.parametrize("threads", [0, 3])
def test_a_writer_error_is_raised_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch, plan: list[GenerationItem], tmp_path: Path, threads: int
) -> None:
    real = writer_module.write_png
    broken = f"{plan[6].index:06d}.png"

    def failing(image: Image.Image, path: Path, provenance: dict) -> str:
        if Path(path).name == broken:
            raise OSError(28, "No space left on device")
        return real(image, path, provenance)

    monkeypatch.setattr(writer_module, "write_png", failing)
    calls = []

    def sampler(items: Sequence[GenerationItem], generators: Sequence[torch.Generator]) -> list:
        calls.append(len(items))
        return ColourSampler()(items, generators)

    with pytest.raises(OSError, match="No space left"):
        generate_images(
            sampler, plan, tmp_path, batch_size=5, provenance={}, writer_threads=threads
        )
    assert not (tmp_path / broken).exists()
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))
    if threads == 0:  # written inline: the batch with the failure is the last one made
        assert calls == [5, 5]


def test_writer_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="^threads:"):
        ImageWriter(-1)
    with pytest.raises(ValueError, match="^writer_threads:"):
        generate_images(
            ColourSampler(), [], "unused", batch_size=1, provenance={}, writer_threads=100
        )
    writer = ImageWriter(1)
    writer.close()
    with pytest.raises(RuntimeError, match="after close"):
        writer.submit(Image.new("RGB", (2, 2)), "x.png", {})


@pytest.mark.timeout(60)
def test_images_made_before_a_sampler_failure_are_still_written(
    plan: list[GenerationItem], tmp_path: Path
) -> None:
    calls = []

    def sampler(items: Sequence[GenerationItem], generators: Sequence[torch.Generator]) -> list:
        calls.append(len(items))
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory")
        return ColourSampler()(items, generators)

    with pytest.raises(RuntimeError, match="out of memory"):
        generate_images(sampler, plan, tmp_path, batch_size=5, provenance={}, writer_threads=2)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        f"{item.index:06d}.png" for item in plan[:10]
    )
    # A retry makes only the rest.
    calls.clear()
    images = generate_images(ColourSampler(), plan, tmp_path, batch_size=5, provenance={})
    assert sum(image.generated for image in images) == len(plan) - 10
