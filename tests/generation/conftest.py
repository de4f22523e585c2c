"""Fixtures for the pure generation/ library tests: offline hubs and a private torch cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


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
