"""Writes killed at random points: every file is absent or whole, and the sweep cleans up.

First a generic atomic writer, then FairDerm's own write paths in a real process
(``tests/validation/killable.py``): ``generate_images`` with a tiny conditional model, whose
images are checked against the folder's ``SHA256SUMS`` and its journal, and
``train_conditional`` with a checkpoint every step, whose checkpoints are checked against
their ``COMPLETE.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from generation.conditional.checkpoints import (
    MARKER,
    is_complete,
    latest_complete_checkpoint,
    list_checkpoints,
)
from generation.generate import read_provenance
from generation.manifest import JOURNAL_NAME, MANIFEST_NAME, read_manifest
from tests.conftest import ROOT
from tests.validation import killable
from validation.files import TEMP_SUFFIX, atomic_write_bytes, sha256_file, sweep_temp_files

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


# --- FairDerm's own writers ---------------------------------------------------------------------

KILLS = 12
#: Kills go on past KILLS, up to this many, until one has landed inside a write: whether a
#: random delay falls in a write depends on the machine's speed, and a run without such a
#: kill would prove nothing.
MAX_KILLS = 60


class Killable:
    """``tests/validation/killable.py`` in a subprocess: forks writers for the test to kill."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.validation.killable"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"killable.py exited with {self.process.wait()}")
        return line.strip()

    def _send(self, *words: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(words) + "\n")
        self.process.stdin.flush()

    def kill_after(self, mode: str, folder: Path, seconds: float) -> int:
        """Start a writer, SIGKILL it after ``seconds``; its exit (``-9`` when killed)."""
        self._send("fork", mode, str(folder))
        pid = int(self._line())
        time.sleep(seconds)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended by itself (and is reaped): its exit says why
            pass
        return int(self._line().removeprefix("exit "))

    def finish(self, mode: str, folder: Path) -> dict[str, Any]:
        """Let the writer run to its end in the subprocess; its summary."""
        self._send("finish", mode, str(folder))
        return json.loads(self._line())

    def close(self) -> None:
        self.process.kill()  # idle between commands: nothing of it is left to lose
        self.process.wait()


@pytest.fixture(scope="module")
def writers() -> Iterator[Killable]:
    process = Killable()
    yield process
    process.close()


def temp_entries(folder: Path) -> set[Path]:
    return set(folder.glob(f".*{TEMP_SUFFIX}")) if folder.exists() else set()


def check_images(folder: Path, plan: dict[int, Any]) -> int:
    """Every listed image has its listed sha256; an unlisted one is whole (its batch was cut
    short before the list was written). Returns how many are unlisted."""
    listed = read_manifest(folder)  # the list itself is whole: it parses
    for name, digest in listed.items():
        assert sha256_file(folder / name) == digest, f"{name} differs from {MANIFEST_NAME}"
    unlisted = [p for p in folder.glob("*.png") if p.name not in listed]
    for path in unlisted:
        with Image.open(path) as png:
            png.load()
        provenance = read_provenance(path)
        assert plan[int(path.stem)].to_dict() == {k: provenance[k] for k in plan[0].to_dict()}
    return len(unlisted)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["images", "images-threaded"])
def test_generated_images_killed_mid_write_are_absent_or_match_their_sha256(
    writers: Killable, tmp_path: Path, mode: str
) -> None:
    from worker.celery import sweep_leftovers

    rng = random.Random(11)
    folder = tmp_path / "images"
    plan = {item.index: item for item in killable.image_plan()}
    killed_mid_write, killed_with_journal, unlisted = 0, 0, []
    for attempt in range(MAX_KILLS):
        if attempt >= KILLS and killed_mid_write:
            break
        before = temp_entries(folder)
        exit_code = writers.kill_after(mode, folder, rng.uniform(0.1, 0.6))
        assert exit_code == -signal.SIGKILL, f"the writer ended by itself ({exit_code})"
        killed_mid_write += bool(temp_entries(folder) - before)
        killed_with_journal += (folder / JOURNAL_NAME).exists()
        unlisted.append(check_images(folder, plan))
        assert unlisted[-1] <= killable.UNLISTED_AT_MOST[mode]
    made_before_finish = len(list(folder.glob("*.png")))
    summary = writers.finish(mode, folder)
    assert made_before_finish > 0, "the writers made no image"
    assert killed_mid_write >= 1, "no kill landed inside a write; change the delays"
    assert killed_with_journal >= 1, f"no kill left a {JOURNAL_NAME} to fold in"
    # The last run resumed: it kept every image (listed or not), made only new ones, and
    # listed every image.
    assert summary["generated"] == killable.FINISH_BATCHES * killable.BATCH_SIZE
    assert summary["images"] == made_before_finish + summary["generated"]
    listed = read_manifest(folder)
    assert not (folder / JOURNAL_NAME).exists()  # folded into SHA256SUMS at the end
    assert set(listed) == {p.name for p in folder.glob("*.png")} == set(summary["sha256"])
    assert listed == summary["sha256"]
    assert check_images(folder, plan) == 0
    # The workers' start-up sweep removes the leftovers once they are old.
    leftovers = temp_entries(folder)
    assert leftovers, "no leftover temporary file (killed_mid_write says there were)"
    for path in leftovers:
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert set(sweep_leftovers([folder])) == leftovers
    assert temp_entries(folder) == set() and read_manifest(folder) == listed


def check_checkpoints(root: Path) -> tuple[int | None, set[Path]]:
    """Every checkpoint-named folder is complete (its marker lists every file with the sha256 it
    has); anything else is a temporary folder that the loader never lists. Returns the newest
    step and the temporary entries."""
    temporary = {
        p for p in root.iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)
    }
    listed = list_checkpoints(root)
    assert {p for _, p in listed} == set(root.iterdir()) - temporary
    for _, path in listed:
        assert is_complete(path, verify=True), f"{path.name} is listed but not complete"
        marker = json.loads((path / MARKER).read_text())
        assert set(marker["files"]) | {MARKER} == {p.name for p in path.iterdir()}
    newest = listed[-1][1] if listed else None
    assert latest_complete_checkpoint(root) == newest
    return (listed[-1][0] if listed else None), temporary


@pytest.mark.slow
def test_checkpoints_killed_mid_write_are_complete_or_never_loaded(
    writers: Killable, tmp_path: Path
) -> None:
    rng = random.Random(5)
    folder = tmp_path / "run"
    root = folder / "checkpoints"
    steps: list[int] = []
    leftovers: list[set[Path]] = []
    for attempt in range(MAX_KILLS):
        if attempt >= KILLS and any(leftovers):
            break
        exit_code = writers.kill_after("checkpoints", folder, rng.uniform(0.2, 0.7))
        assert exit_code == -signal.SIGKILL, f"the writer ended by itself ({exit_code})"
        newest, temporary = check_checkpoints(root) if root.exists() else (None, set())
        steps.append(newest or 0)
        leftovers.append(temporary)
    summary = writers.finish("checkpoints", folder)
    # Every writer resumed from the newest checkpoint its predecessor left.
    assert steps == sorted(steps) and steps[-1] > steps[0] > 0
    assert summary["resumed_from"] == steps[-1]
    assert summary["final_step"] == steps[-1] + killable.FINISH_STEPS
    assert any(leftovers), "no kill landed inside a checkpoint write; change the delays"
    # Each training's start-up sweep removed what the previous kill left.
    for earlier, later in zip(leftovers, leftovers[1:], strict=False):
        assert not earlier & later
    assert temp_entries(root) == set()
