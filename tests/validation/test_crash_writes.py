"""Writes killed at random points: every file is absent or whole, and the sweep cleans up."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from validation.files import TEMP_SUFFIX, atomic_write_bytes, sweep_temp_files

WRITER = """
import hashlib, sys
from pathlib import Path
from validation.files import atomic_write_bytes

folder = Path(sys.argv[1])
for i in range(100000):
    name = f"{i % 40:03d}.bin"
    seed = hashlib.sha256(name.encode()).digest()
    size = 200_000 + (i % 7) * 50_000
    atomic_write_bytes(folder / name, (seed * (size // 32 + 1))[:size])
"""


def is_whole(path: Path) -> bool:
    """A file the writer made: its bytes are its name's pattern at one of the sizes it uses."""
    data = path.read_bytes()
    seed = hashlib.sha256(path.name.encode()).digest()
    sizes = {200_000 + k * 50_000 for k in range(7)}
    return len(data) in sizes and data == (seed * (len(data) // 32 + 1))[: len(data)]


def test_files_killed_mid_write_are_absent_or_whole(tmp_path: Path) -> None:
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(20):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT, env=env)
        time.sleep(0.15 + rng.random() * 0.35)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        finished = [p for p in tmp_path.iterdir() if not p.name.endswith(TEMP_SUFFIX)]
        assert finished, "the writer never finished a file; give it more time"
        broken = [p.name for p in finished if not is_whole(p)]
        assert broken == []
    leftovers = list(tmp_path.glob(f".*{TEMP_SUFFIX}"))
    removed = sweep_temp_files(tmp_path)
    assert sorted(removed) == sorted(leftovers)
    assert not list(tmp_path.glob(f".*{TEMP_SUFFIX}"))


def test_a_sweep_with_min_age_leaves_writes_in_progress_alone(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "done.bin", b"x")
    fresh = tmp_path / f".a.bin.123{TEMP_SUFFIX}"
    old = tmp_path / f".b.bin.456{TEMP_SUFFIX}"
    fresh.write_bytes(b"being written")
    old.write_bytes(b"left by a crash")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert sweep_temp_files(tmp_path, min_age=3600) == [old]
    assert fresh.exists() and (tmp_path / "done.bin").exists()
