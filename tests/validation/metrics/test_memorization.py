"""The memorization audit finds planted copies of training images, and only those."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.validation.metrics.conftest import ImageSet, write_set
from validation.metrics import MetricsConfig, evaluate, folder_items, write_pair_images


def test_planted_copies_are_flagged_and_shown_side_by_side(
    torch_home: Path, image_sets: dict[str, ImageSet], tmp_path: Path
) -> None:
    synthetic = write_set(tmp_path / "synthetic", [3, 4, 5, 6, 3, 4, 5, 6], seed=21, lesion=0.55)
    train = folder_items(image_sets["real"].folder)
    # Plant an exact copy of training image 5 and a lightly noised copy of training image 11.
    shutil.copyfile(train[5].path, synthetic.folder / "img-002.png")
    noisy = np.asarray(Image.open(train[11].path), dtype=np.float64)
    noisy += np.random.default_rng(0).normal(0, 2.0, noisy.shape)
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(synthetic.folder / "img-006.png")

    result = evaluate(
        train,
        folder_items(synthetic.folder),
        MetricsConfig(metrics=("memorization",), fid_dims=64),
        train=train,
    )
    audit = result["memorization"]
    flagged = {(f["synthetic"], f["train"]) for f in audit["flagged"]}
    assert flagged == {(2, 5), (6, 11)}
    assert audit["n_flagged"] == 2
    exact = next(f for f in audit["flagged"] if f["synthetic"] == 2)
    assert exact["lpips"] == pytest.approx(0.0, abs=1e-9)
    assert exact["pixel_rmse"] == pytest.approx(0.0, abs=1e-9)
    assert exact["feature_distance"] == pytest.approx(0.0, abs=1e-6)
    assert exact["nearest"] == {"lpips": 5, "pixel": 5, "feature": 5}
    assert audit["nearest"]["pixel_rmse"]["n"] == 8
    assert "nearest training image" in audit["definition"]

    paths = write_pair_images(result, tmp_path / "pairs")
    assert len(paths) == 2
    with Image.open(paths[0]) as pair:
        assert pair.size == (32 * 2 + 4, 32)


def test_no_flags_without_copies(torch_home: Path, image_sets: dict[str, ImageSet]) -> None:
    result = evaluate(
        folder_items(image_sets["real"].folder),
        folder_items(image_sets["synthetic"].folder),
        MetricsConfig(metrics=("memorization",), fid_dims=64),
    )
    assert result["memorization"]["n_flagged"] == 0
    assert result["memorization"]["n_train"] == 16  # the real set, by default
