"""Weights honesty: official, unverified, non-official and missing weight files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.validation.metrics.conftest import ImageSet
from validation.files import sha256_file
from validation.metrics import (
    MetricsConfig,
    MissingWeightsError,
    backbones,
    evaluate,
    folder_items,
    weights,
)
from validation.metrics.cli import main as cli_main
from validation.metrics.weights import FID_INCEPTION, LPIPS_ALEX, classify, locate


def test_classify_by_full_hash_and_by_prefix() -> None:
    assert classify(FID_INCEPTION, FID_INCEPTION.sha256 or "") == "official"
    assert (
        classify(FID_INCEPTION, "6726825d" + "0" * 56) == "non-official"
    )  # prefix alone is not enough
    assert classify(LPIPS_ALEX, "7be5be79" + "0" * 56) == "unverified"
    assert classify(LPIPS_ALEX, "0" * 64) == "non-official"


def test_official_fid_sha256_agrees_with_the_hub_file_name() -> None:
    assert FID_INCEPTION.sha256 is not None
    assert FID_INCEPTION.sha256.startswith(FID_INCEPTION.prefix)
    assert FID_INCEPTION.filename.endswith(f"-{FID_INCEPTION.prefix}.pth")


def test_missing_weights_fail_naming_the_file_and_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_sets: dict[str, ImageSet]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError) as caught:
        locate(FID_INCEPTION)
    message = str(caught.value)
    assert FID_INCEPTION.filename in message
    assert str(tmp_path / "empty" / "hub" / "checkpoints") in message
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        evaluate(
            folder_items(image_sets["real"].folder),
            folder_items(image_sets["synthetic"].folder),
            MetricsConfig(metrics=("lpips",)),
        )


def test_the_cli_reports_missing_weights(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    image_sets: dict[str, ImageSet],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    code = cli_main(
        [
            "--real",
            str(image_sets["real"].folder),
            "--synthetic",
            str(image_sets["synthetic"].folder),
            "--metrics",
            "fid",
            "--dims",
            "64",
            "--cache-dir",
            "",
        ]
    )
    assert code == 2
    assert "pt_inception-2015-12-05-6726825d.pth not found" in capsys.readouterr().err


def test_standin_weights_are_computed_but_labelled_non_official(
    torch_home: Path, image_sets: dict[str, ImageSet]
) -> None:
    result = evaluate(
        folder_items(image_sets["real"].folder),
        folder_items(image_sets["synthetic"].folder),
        MetricsConfig(metrics=("fid", "lpips"), fid_dims=64),
    )
    assert result["fid"]["overall"]["value"] is not None
    assert result["weights"]["fid"]["status"] == "non-official"
    assert result["weights"]["lpips"]["status"] == "non-official"
    assert result["weights"]["fid"]["sha256"] == sha256_file(
        torch_home / "hub" / "checkpoints" / FID_INCEPTION.filename
    )
    assert result["official"] is False
    for target in (result["fid"]["target"], result["lpips"]["fidelity"]["target"]):
        assert target["met"] is None
        assert "non-official" in target["why"]


def test_a_file_with_the_official_hash_counts_towards_targets(
    torch_home: Path, image_sets: dict[str, ImageSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the stand-ins are the official files by declaring their hashes official.
    checkpoints = torch_home / "hub" / "checkpoints"
    fid = dataclasses.replace(
        FID_INCEPTION, sha256=sha256_file(checkpoints / FID_INCEPTION.filename)
    )
    alex = dataclasses.replace(LPIPS_ALEX, sha256=sha256_file(checkpoints / LPIPS_ALEX.filename))
    monkeypatch.setattr(weights, "FID_INCEPTION", fid)
    monkeypatch.setattr(backbones, "FID_INCEPTION", fid)
    monkeypatch.setitem(weights.LPIPS_TRUNKS, "alex", alex)
    result = evaluate(
        folder_items(image_sets["real"].folder),
        folder_items(image_sets["synthetic"].folder),
        MetricsConfig(metrics=("fid", "lpips"), fid_dims=64),
    )
    assert result["weights"]["fid"]["status"] == "official"
    assert result["weights"]["lpips"]["status"] == "official"
    assert result["official"] is True
    assert result["lpips"]["fidelity"]["target"]["met"] is True  # mean LPIPS < 0.1 here
    # Official weights, but 64-d features: the 2048-d literature target still does not apply.
    assert result["fid"]["target"]["met"] is None
    assert "64-d" in result["fid"]["target"]["why"]


def test_unverified_lpips_weights_do_not_count(
    torch_home: Path, image_sets: dict[str, ImageSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    standin = sha256_file(torch_home / "hub" / "checkpoints" / LPIPS_ALEX.filename)
    pretend = dataclasses.replace(LPIPS_ALEX, prefix=standin[:8])
    monkeypatch.setitem(weights.LPIPS_TRUNKS, "alex", pretend)
    result = evaluate(
        folder_items(image_sets["real"].folder),
        folder_items(image_sets["synthetic"].folder),
        MetricsConfig(metrics=("lpips",)),
    )
    assert result["weights"]["lpips"]["status"] == "unverified"
    assert result["lpips"]["fidelity"]["target"]["met"] is None
    assert "unverified" in result["lpips"]["fidelity"]["target"]["why"]


def test_using_a_hub_dir_leaves_torch_home_in_charge_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    with weights.using_hub_dir(tmp_path / "elsewhere"):
        assert torch.hub.get_dir() == str(tmp_path / "elsewhere" / "hub")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "later"))
    assert torch.hub.get_dir() == str(tmp_path / "later" / "hub")


def test_lpips_heads_are_checked_against_the_wheel(tmp_path: Path) -> None:
    import lpips

    shipped = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    trunk = weights.Weights(
        "lpips-alex", LPIPS_ALEX.filename, "x", "7be5be79" + "0" * 56, "unverified"
    )
    assert weights.with_lpips_head(trunk, "alex", shipped).status == "unverified"
    other = tmp_path / "alex.pth"
    other.write_bytes(b"not the head")
    downgraded = weights.with_lpips_head(trunk, "alex", other)
    assert downgraded.status == "non-official"
    assert "not the lpips 0.1.4 file" in downgraded.notes[-1]


def test_the_inception_standin_keeps_2048d_features_alive(tmp_path: Path) -> None:
    """Random weights alone give ~1e-8 pool features; the fitted BatchNorm statistics keep
    them at unit scale and different from image to image, and the file stays non-official."""
    import torch
    from pytorch_fid.inception import InceptionV3

    images = weights.calibration_images(12, seed=7)  # not the images the statistics saw

    def pool_features(home: Path) -> torch.Tensor:
        with weights.using_hub_dir(home):
            network = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
        with torch.no_grad():
            return network(images)[0].flatten(1)

    raw_home = tmp_path / "raw"
    raw_path = weights.checkpoint_path(FID_INCEPTION, raw_home)
    raw_path.parent.mkdir(parents=True)
    torch.save(weights._standin_state_dict(FID_INCEPTION, seed=0), raw_path)
    raw = pool_features(raw_home)

    staged = weights.stage_standin(FID_INCEPTION, tmp_path / "fitted")
    fitted = pool_features(tmp_path / "fitted")

    assert raw.abs().max() < 1e-4  # the degenerate case the fitting exists for
    assert 0.1 < fitted.mean() < 2
    assert fitted.std(dim=0).mean() > 0.05  # images differ
    assert torch.linalg.matrix_rank(fitted - fitted.mean(0)).item() == len(images) - 1
    assert locate(FID_INCEPTION, tmp_path / "fitted").status == "non-official"
    # same keys and shapes as the random state, only BatchNorm buffers differ
    loaded = torch.load(staged, weights_only=True)
    random_state = weights._standin_state_dict(FID_INCEPTION, seed=0)
    assert loaded.keys() == random_state.keys()
    changed = {k for k in loaded if not torch.equal(loaded[k], random_state[k])}
    assert changed and all(
        k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed
    )
