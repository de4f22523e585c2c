"""LPIPS: the embedding distance equals lpips.LPIPS; fidelity and the mode-collapse alarm."""

from __future__ import annotations

import shutil
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch

from tests.validation.metrics.conftest import ImageSet, write_set
from validation.metrics import MetricsConfig, evaluate, folder_items
from validation.metrics.backbones import LpipsEmbedder
from validation.metrics.cache import FeatureCache
from validation.metrics.images import load_rgb


@pytest.mark.parametrize("size", [0, 64])
def test_embedding_distance_equals_the_lpips_package(
    torch_home: Path, image_sets: dict[str, ImageSet], size: int
) -> None:
    embedder = LpipsEmbedder("alex", size=size)
    files = (
        sorted(image_sets["real"].folder.glob("*.png"))[:4]
        + sorted(image_sets["synthetic"].folder.glob("*.png"))[:4]
    )
    batch = torch.from_numpy(np.stack([load_rgb(f) for f in files]))
    vectors = embedder.forward(batch)["lpips"]
    reference = lpips.LPIPS(net="alex", verbose=False).eval()
    prepared = embedder.prepare(batch)
    with torch.no_grad():
        for i, j in [(0, 1), (0, 4), (2, 7), (5, 6), (3, 3)]:
            expected = reference(prepared[i : i + 1], prepared[j : j + 1], normalize=True).item()
            ours = float(((vectors[i] - vectors[j]) ** 2).sum())
            assert ours == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_fidelity_is_zero_for_copies_of_real_images(
    torch_home: Path, image_sets: dict[str, ImageSet], tmp_path: Path
) -> None:
    copies = tmp_path / "copies"
    shutil.copytree(image_sets["real"].folder, copies)
    result = evaluate(
        folder_items(image_sets["real"].folder),
        folder_items(copies),
        MetricsConfig(metrics=("lpips",)),
    )
    fidelity = result["lpips"]["fidelity"]
    assert fidelity["overall"]["n"] == 16
    assert fidelity["overall"]["max"] == pytest.approx(0.0, abs=1e-9)
    assert result["lpips"]["nearest_real"] == list(range(16))
    assert "nearest real image" in fidelity["definition"]

    other = evaluate(
        folder_items(image_sets["real"].folder),
        folder_items(image_sets["synthetic"].folder),
        MetricsConfig(metrics=("lpips",)),
    )
    assert other["lpips"]["fidelity"]["overall"]["mean"] > 1e-4
    assert set(other["lpips"]["fidelity"]["per_fst"]) == {"3", "4", "5", "6"}


def test_mode_collapse_alarm_when_a_cell_repeats_one_image(
    torch_home: Path, image_sets: dict[str, ImageSet], tmp_path: Path
) -> None:
    collapsed = write_set(tmp_path / "collapsed", [3] * 6, seed=9)
    first = collapsed.folder / "img-000.png"
    for path in sorted(collapsed.folder.glob("img-*.png"))[1:]:
        shutil.copyfile(first, path)  # every FST III image is the same picture
    result = evaluate(
        folder_items(image_sets["real"].folder),
        folder_items(collapsed.folder),
        MetricsConfig(metrics=("lpips",)),
    )
    diversity = result["lpips"]["diversity"]
    cells = {(c["fst"], c["diagnosis"]): c for c in diversity["cells"]}
    cell = cells[("3", "nevus")]
    assert cell["n_synthetic"] == 3 and cell["n_real"] == 2
    assert cell["synthetic"] == pytest.approx(0.0, abs=1e-9)
    assert cell["collapse"] is True
    assert any("FST 3 x nevus" in alarm for alarm in diversity["alarms"])

    healthy = evaluate(
        folder_items(image_sets["real"].folder),
        folder_items(image_sets["real"].folder),
        MetricsConfig(metrics=("lpips",)),
    )
    assert healthy["lpips"]["diversity"]["alarms"] == []


def test_lpips_embeddings_of_mixed_image_sizes(torch_home: Path, tmp_path: Path) -> None:
    small = write_set(tmp_path / "small", [2, 3], seed=3, size=32)
    large = write_set(tmp_path / "large", [2, 3], seed=3, size=48)
    items = folder_items(small.folder) + folder_items(large.folder)
    vectors = LpipsEmbedder("alex", size=64).extract(
        [i.with_sha256() for i in items], FeatureCache(None), 8
    )["lpips"]
    assert vectors.shape[0] == 4
