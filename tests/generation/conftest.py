"""Fixtures for the pure generation/ library tests: offline hubs, a private torch cache, one thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import PIL.Image
import pytest
import torch

from generation.conditional.data import TrainingRecord


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from more threads, and on a shared 2-core machine two OpenMP
    threads spin-wait on each other (measured 5-10x slower). Restored after each module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point HF_HOME and TORCH_HOME at empty folders and forbid hub downloads.

    Yields the temporary root; HF_HOME is ``root/hf`` and TORCH_HOME ``root/torch``.
    """
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield tmp_path


@pytest.fixture(scope="module")
def sd_records(tmp_path_factory: pytest.TempPathFactory) -> list[TrainingRecord]:
    """Two images per cell of FST I, V x nevus, melanoma: flat skin with a darker blob."""
    root = tmp_path_factory.mktemp("lesions")
    out = []
    for fst, skin in ((1, (225, 190, 170)), (5, (110, 70, 50))):
        for dx, lesion in (("nevus", (90, 60, 40)), ("melanoma", (30, 20, 25))):
            for i in range(2):
                image = PIL.Image.new("RGB", (40, 40), skin)
                image.paste(lesion, (10 + i, 10, 28 + i, 30))
                path = root / f"{fst}-{dx}-{i}.png"
                image.save(path)
                out.append(TrainingRecord(path=path, fst=fst, diagnosis=dx))
    return out
