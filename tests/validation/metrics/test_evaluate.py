"""evaluate() end to end, its caches, per-group figures, config checks and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.validation.metrics.conftest import ImageSet
from validation.__main__ import main as validation_main
from validation.metrics import DEFINITIONS, MetricsConfig, evaluate, folder_items


def test_every_metric_per_group_with_counts_definitions_and_cache(
    torch_home: Path, image_sets: dict[str, ImageSet], tmp_path: Path
) -> None:
    real = folder_items(image_sets["real"].folder)
    synthetic = folder_items(image_sets["synthetic"].folder)
    metrics = ("fid", "kid", "lpips", "tone", "memorization")
    config = MetricsConfig(metrics=metrics, fid_dims=64, kid_subsets=5)
    result = evaluate(real, synthetic, config, cache_dir=tmp_path / "cache", real_label="test-real")

    fid, kid = result["fid"], result["kid"]
    assert fid["overall"]["n_real"] == 16 and fid["overall"]["n_synthetic"] == 12
    assert "biased" in fid["overall"]["warning"]
    assert fid["per_fst"]["1"]["value"] is None and "too few" in fid["per_fst"]["1"]["reason"]
    assert (fid["per_fst"]["4"]["n_real"], fid["per_fst"]["4"]["n_synthetic"]) == (2, 4)
    assert fid["per_fst"]["4"]["value"] is not None
    assert set(fid["per_diagnosis"]) == {"melanoma", "nevus"}
    assert kid["per_diagnosis"]["nevus"]["subset_size"] == 6
    assert result["tone"]["overall"]["n"] == 12
    assert len(result["tone"]["ita"]["real"]) > 0
    for name in ("fid", "kid", "tone", "memorization"):
        assert result[name]["definition"] == DEFINITIONS[name]
    assert result["lpips"]["fidelity"]["definition"] == DEFINITIONS["lpips_fidelity"]
    assert [row["metric"] for row in result["summary"]][:3] == [
        "FID (64-d)",
        "KID",
        "LPIPS to nearest real",
    ]
    assert result["cache"]["feature_misses"] > 0
    json.dumps(result)  # JSON-ready

    again = evaluate(real, synthetic, config, cache_dir=tmp_path / "cache", real_label="test-real")
    assert again["cache"]["feature_misses"] == 0  # every feature came from the cache
    assert again["cache"]["stats_hits"] > 0  # and the real statistics too
    assert again["fid"]["overall"]["value"] == pytest.approx(fid["overall"]["value"], rel=1e-9)
    assert again["kid"]["overall"]["mean"] == pytest.approx(kid["overall"]["mean"], rel=1e-9)


@pytest.mark.slow
def test_inception_score_per_fst_on_the_full_network(
    torch_home: Path, image_sets: dict[str, ImageSet]
) -> None:
    result = evaluate(
        folder_items(image_sets["real"].folder),
        folder_items(image_sets["synthetic"].folder),
        MetricsConfig(metrics=("is",), is_splits=2),
    )
    score = result["is"]
    assert score["definition"] == DEFINITIONS["is"]
    assert score["synthetic"]["n"] == 12 and score["synthetic"]["splits"] == 2
    assert score["real"]["n"] == 16
    assert set(score["per_fst"]) == {"3", "4", "5", "6"}
    assert 1.0 <= score["synthetic"]["mean"] <= 1008
    assert score["target"]["met"] is None  # stand-in weights


def test_empty_sets_are_refused(torch_home: Path, image_sets: dict[str, ImageSet]) -> None:
    with pytest.raises(ValueError, match="synthetic"):
        evaluate(folder_items(image_sets["real"].folder), [])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("metrics", ("fid", "bogus")),
        ("fid_dims", 100),
        ("lpips_net", "resnet"),
        ("kid_subsets", 0),
        ("collapse_ratio", 2.0),
        ("real_split", "holdout"),
        ("lpips_size", 16),
    ],
)
def test_config_errors_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        MetricsConfig(**{field: value})


def test_config_round_trips_and_accepts_comma_separated_metrics() -> None:
    config = MetricsConfig(metrics="kid, fid", fid_dims=64)
    assert config.metrics == ("fid", "kid")
    assert MetricsConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="^bogus:"):
        MetricsConfig.from_dict({"bogus": 1})
    assert MetricsConfig.preset("quick-64d").fid_dims == 64


def test_command_line_json(
    torch_home: Path,
    image_sets: dict[str, ImageSet],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    code = validation_main(
        [
            "metrics",
            "--real",
            str(image_sets["real"].folder),
            "--synthetic",
            str(image_sets["synthetic"].folder),
            "--metrics",
            "fid,kid,tone",
            "--dims",
            "64",
            "--kid-subsets",
            "3",
            "--json",
            "--cache-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"fid", "kid", "tone", "weights", "summary"}
    assert result["fid"]["per_fst"]["5"]["n_real"] == 2  # labels read from metadata.csv
    assert result["weights"]["fid"]["status"] == "non-official"


def test_command_line_text(
    torch_home: Path, image_sets: dict[str, ImageSet], capsys: pytest.CaptureFixture[str]
) -> None:
    code = validation_main(
        [
            "metrics",
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
    out = capsys.readouterr().out
    assert code == 0
    assert "non-official weights" in out and "FID (64-d):" in out
