"""Our FID, features and logits against pytorch-fid's own functions and CLI on the same files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_activation_statistics, calculate_frechet_distance
from pytorch_fid.inception import InceptionV3, fid_inception_v3

from tests.validation.metrics.conftest import ImageSet
from validation.metrics import MetricsConfig, evaluate, folder_items
from validation.metrics.backbones import InceptionFeatures
from validation.metrics.cache import FeatureCache
from validation.metrics.images import load_rgb


def _files(image_set: ImageSet) -> list[Path]:
    return sorted(image_set.folder.glob("*.png"))


def test_features_and_fid_equal_pytorch_fid_functions(
    torch_home: Path, image_sets: dict[str, ImageSet]
) -> None:
    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[64]])
    stats = [
        calculate_activation_statistics(
            _files(image_sets[name]), model, batch_size=5, dims=64, num_workers=0
        )
        for name in ("real", "synthetic")
    ]
    theirs = calculate_frechet_distance(*stats[0], *stats[1])

    result = evaluate(
        folder_items(image_sets["real"].folder),
        folder_items(image_sets["synthetic"].folder),
        MetricsConfig(metrics=("fid",), fid_dims=64, batch_size=7),
    )
    ours = result["fid"]["overall"]["value"]
    assert theirs > 1e-3  # structured inputs: the stand-in's 64-d features do not vanish
    assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-6)

    features = InceptionFeatures(64).extract(
        folder_items(image_sets["real"].folder), FeatureCache(None), 4
    )
    mu, sigma = stats[0]
    assert np.allclose(features["pool64"].mean(0), mu, rtol=1e-5, atol=1e-7)
    assert np.allclose(
        np.cov(features["pool64"].astype(np.float64), rowvar=False), sigma, rtol=1e-4, atol=1e-9
    )


def test_logits_are_the_fid_inception_networks_own_output(
    torch_home: Path, image_sets: dict[str, ImageSet]
) -> None:
    files = _files(image_sets["real"])[:3]
    batch = torch.from_numpy(np.stack([load_rgb(f) for f in files]))
    ours = InceptionFeatures(2048, logits=True).forward(batch)["logits"]
    network = fid_inception_v3().eval()
    with torch.no_grad():
        x = torch.nn.functional.interpolate(
            batch, size=(299, 299), mode="bilinear", align_corners=False
        )
        theirs = network(2 * x - 1)
    assert ours.shape == (3, 1008)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("dims", [64, 2048])
def test_fid_equals_the_pytorch_fid_cli(
    torch_home: Path, image_sets: dict[str, ImageSet], dims: int
) -> None:
    env = {**os.environ, "TORCH_HOME": str(torch_home), "OMP_NUM_THREADS": "1"}
    # The command line runs beside the project's evaluate (one core each): at 2048-d each
    # side's time is mostly one single-threaded 2048 x 2048 sqrtm.
    cli = subprocess.Popen(
        [sys.executable, "-m", "pytorch_fid", str(image_sets["real"].folder), str(image_sets["synthetic"].folder),
         "--dims", str(dims), "--device", "cpu", "--num-workers", "0", "--batch-size", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    min_group = 2 if dims == 64 else len(image_sets["synthetic"].rows)
    try:
        result = evaluate(
            folder_items(image_sets["real"].folder),
            folder_items(image_sets["synthetic"].folder),
            # At 2048-d every FID is a 2048 x 2048 sqrtm (15-30 s here): compare the overall value
            # only (groups smaller than the whole synthetic set are skipped); groups at 64-d.
            MetricsConfig(metrics=("fid",), fid_dims=dims, min_group_size=min_group),
        )
        stdout, stderr = cli.communicate(timeout=300)
    finally:
        cli.kill()  # a no-op once it has ended
        cli.wait()
    assert cli.returncode == 0, stderr[-2000:]
    cli_value = float(re.search(r"FID:\s+([-0-9.eE+]+)", stdout).group(1))
    assert cli_value > 1e-2  # the stand-in's features at this depth do not vanish
    assert result["fid"]["overall"]["value"] == pytest.approx(cli_value, abs=1e-3, rel=1e-4)
