"""The hash-record benchmark runs end to end and records what it timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_times_both_mechanisms_and_leaves_no_scratch(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "benchmarks/manifest.py", "--sizes", "0", "50", "--batches", "3",
         "--batch-size", "4", "--dir", str(scratch), "--out", str(out), "--tag", "test"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [written] = out.glob("manifest-*-test.json")
    record = json.loads(written.read_text())
    assert record["batches"] == 3 and record["batch_size"] == 4
    assert [row["listed_before"] for row in record["rows"]] == [0, 50]
    for row in record["rows"]:
        assert row["compact"]["journal_lines"] == 12
        for label in ("journal", "rewrite"):
            assert 0 < row[label]["median_ms"] <= row[label]["p95_ms"]
    assert list(scratch.iterdir()) == []  # its folders were temporary


def test_bad_arguments_are_refused_by_name(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/manifest.py", "--batches", "0", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "--batches must be at least 1" in done.stderr
    assert list(tmp_path.iterdir()) == []
