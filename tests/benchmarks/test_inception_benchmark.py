"""The Inception benchmark keeps its figures when pytorch-fid's loader processes fail (a GPU
machine with little shared memory), the one thing its single GPU run cannot retry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from pytorch_fid import fid_score

from benchmarks import inception


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("fails", ["with-workers", "always"])
def test_loader_failures_fall_back_or_keep_the_projects_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    real = fid_score.get_activations
    calls: list[int] = []

    def flaky(
        files: Any, model: Any, batch_size: int, dims: int, device: str, num_workers: int
    ) -> Any:
        calls.append(num_workers)
        if fails == "always" or num_workers > 0:
            raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Bus error.")
        return real(files, model, batch_size, dims, device, num_workers)

    monkeypatch.setattr(fid_score, "get_activations", flaky)
    monkeypatch.setattr(inception, "pytorch_fid_workers", lambda: 2)
    path = tmp_path / "inception.json"
    if fails == "always":
        with pytest.raises(RuntimeError, match="Bus error"):
            inception.main(["--smoke", "--json", str(path)])
    else:
        inception.main(["--smoke", "--json", str(path)])
    data = json.loads(path.read_text())
    project = data["rows"][0]
    assert project["what"].startswith("project:") and project["images_per_second"] > 0
    if fails == "always":
        assert data["status"] == "failed" and len(data["rows"]) == 1
        return
    assert calls[0] == 2 and set(calls[1:]) == {0}
    assert data["status"] == "done"
    theirs = data["rows"][1]
    assert theirs["num_workers"] == 0 and "2 loader processes failed" in theirs["fallback"]
    assert data["max_abs_feature_difference"] == 0 and data["fid_difference"] == 0
