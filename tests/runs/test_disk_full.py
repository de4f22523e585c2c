"""A training on a full disk fails with a clear ENOSPC message and keeps what it had."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from backend.runs.execution import execute_run
from backend.runs.models import Run
from backend.runs.services import launch_run
from generation.conditional import is_complete, latest_complete_checkpoint
from tests.datasets.factories import dataset_with_cells
from tests.runs.factories import TINY_TRAINING

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs: two checkpoints of the tiny model fit, the third does not (needs root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_training_that_fills_the_disk_fails_clearly_and_loses_nothing(
    small_disk: Path, settings: Any
) -> None:
    settings.COMPUTE_DEVICE = "cpu"
    dataset = dataset_with_cells()  # images stay on the roomy disk
    settings.ARTIFACTS_ROOT = small_disk / "artifacts"
    config = {
        **TINY_TRAINING,
        "train_steps": 400,
        "checkpoint_every": 2,
        "keep_checkpoints": 50,
    }
    with mock.patch("backend.runs.services.enqueue"):
        run = launch_run(kind="train-conditional", config=config, datasets=[dataset])
        assert execute_run(run.pk, "test") == Run.Status.FAILED
    run.refresh_from_db()
    assert run.error.startswith("disk full (ENOSPC): no space left on the device")
    root = run.workdir / "checkpoints"
    latest = latest_complete_checkpoint(root)
    assert latest is not None and is_complete(latest)  # the last good checkpoint is whole
    # No row points at a file that is not there.
    for artifact in run.artifacts.all():
        assert artifact.absolute_path.exists(), artifact.path
    if run.latest_sample:
        assert (settings.ARTIFACTS_ROOT / run.latest_sample).exists()
