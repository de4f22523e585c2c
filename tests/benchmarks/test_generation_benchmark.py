"""The generation benchmark's smoke mode: every kind of row runs and the JSON holds the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_smoke_run_writes_rows_with_counted_flops(tmp_path: Path) -> None:
    path = tmp_path / "generation.json"
    rows = (
        "stock-batched,project-eager,project-compiled,project-compiled-fp8,"
        "project-compiled-per-fst-lora"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/generation.py",
            "--smoke",
            "--rows",
            rows,
            "--json",
            str(path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(path.read_text())
    assert data["benchmark"] == "generation" and data["status"] == "done" and data["smoke"]
    assert data["machine"]["device"] == "cpu" and data["versions"]["diffusers"]
    assert data["date"] and "benchmarks/generation.py --smoke" in data["command"]
    by_name = {row["name"]: row for row in data["rows"]}
    assert list(by_name) == rows.split(",")
    for name in ("stock-batched", "project-eager"):
        row = by_name[name]
        assert row["status"] == "ok", row
        assert row["images"] > 0 and row["images_per_second"] > 0
        assert row["flops"]["total"] > 0 and row["flops"]["unet_per_call"] > 0
        assert row["tflop_per_image"] > 0 and row["achieved_tflops"] > 0
        assert row["percent_of_peak"] > 0 and row["peak_source"]
    assert by_name["stock-batched"]["unet_calls"] == 5  # PNDM: one more call than steps
    assert by_name["project-eager"]["images_on_disk_with_provenance"] is True
    assert by_name["project-compiled"]["status"] == "skipped"
    assert by_name["project-compiled-fp8"]["status"] == "skipped"
    assert "fp8:" in by_name["project-compiled-fp8"]["reason"]
    per_fst = by_name["project-compiled-per-fst-lora"]
    assert per_fst["status"] == "ok", per_fst
    assert per_fst["images"] == 12 and per_fst["fast_path"]["lora_fusion"] == "per-adapter"
    check = per_fst["adapter_check"]
    assert check["status"] == "ok" and check["passed"] is True, check
    assert len(check["per_fst"]) >= 2
    summary = data["summary"]
    assert summary["best_project_row"] == "project-eager"
    assert summary["speedup_over_stock_batched"] > 0
    assert summary["target_images_per_second"] == 16.7


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_adapter_check_fails_when_switches_do_not_reach_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bank that keeps the first adapter it was given, as CUDA graphs reading stale weights
    # would: the images of the other skin types then carry the wrong adapter.
    from benchmarks import generation
    from generation.fast import AdapterBank

    activate = AdapterBank.activate

    def first_only(self: AdapterBank, name: str) -> None:
        if self.active is None:
            activate(self, name)

    monkeypatch.setattr(AdapterBank, "activate", first_only)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = generation.main(
        ["--smoke", "--rows", "project-compiled-per-fst-lora", "--json", str(tmp_path / "g.json")]
    )
    (row,) = data["rows"]
    assert row["status"] == "ok"
    check = row["adapter_check"]
    assert check["status"] == "ok" and check["passed"] is False, check
    stale = [r for r in check["per_fst"] if r["mean_abs_diff_own_8bit"] > 0]
    assert stale and all(r["fst"] != check["per_fst"][0]["fst"] for r in stale)
