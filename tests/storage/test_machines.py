"""Several machines with no shared disk: processes with their own caches, one S3 bucket.

Each "machine" is a separate Python process with its own MEDIA_ROOT and ARTIFACTS_ROOT; all
share the test database and the bucket (moto's S3 server), and nothing else. The test process
itself plays the web machine. Celery delivery is tested in tests/runs; here the machines call
the same entry points the tasks call (``execute_run``, ``execute_shard``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.urls import reverse

from backend.runs.models import Run, RunShard
from backend.runs.services import launch_run
from generation.manifest import read_manifest
from tests.accounts.factories import PASSWORD
from tests.conftest import ROOT, wait_for
from tests.datasets.factories import dataset_with_cells
from tests.runs.factories import TINY_TRAINING
from tests.storage.conftest import S3Server, s3_env
from validation.files import sha256_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PRELUDE = """
import django, time
django.setup()
from backend.runs.execution import RunHeldElsewhere, execute_run
from backend.runs.sharding import execute_shard

def patiently(call, *args):
    # As the Celery task does: a live lease elsewhere means "come back when it expires".
    while True:
        try:
            return call(*args)
        except RunHeldElsewhere as held:
            time.sleep(held.retry_in)
"""


def on_machine(
    name: str, code: str, worker_env: dict[str, str], server: S3Server, bucket: str, base: Path
) -> subprocess.Popen[bytes]:
    """Start ``code`` (after PRELUDE) in a process that is machine ``name``."""
    cache = base / name
    env = {**worker_env, **s3_env(server, bucket, cache)}
    log = (base / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish(process: subprocess.Popen[bytes], base: Path, name: str, timeout: float = 300) -> None:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert code == 0, (base / f"{name}.log").read_text()[-4000:]


def files_under(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def pngs_under(folder: Path) -> set[str]:
    return {name for name in files_under(folder) if name.endswith(".png")}


def test_a_training_killed_on_one_machine_resumes_on_another_from_the_bucket(
    on_s3: Path,
    worker_env: dict[str, str],
    s3_server: S3Server,
    s3_bucket: str,
    client: Any,
    ml_engineer: Any,
) -> None:
    base = on_s3.parent
    dataset = dataset_with_cells()  # imported on the web machine: kept in the bucket
    config = {**TINY_TRAINING, "train_steps": 300, "checkpoint_every": 20, "sample_every": 100}
    with mock.patch("backend.runs.services.enqueue"):
        run = launch_run(kind="train-conditional", config=config, datasets=[dataset])
    prefix = f"artifacts/runs/{run.folder_name}/checkpoints/"
    first = on_machine(
        "machine-b",
        f"patiently(execute_run, {run.pk}, 'machine-b')",
        worker_env,
        s3_server,
        s3_bucket,
        base,
    )

    def checkpoint_in_bucket() -> bool:
        run.refresh_from_db()
        markers = [k for k in s3_server.keys(s3_bucket, prefix) if k.endswith("COMPLETE.json")]
        return run.step >= 45 and bool(markers)

    try:
        wait_for(checkpoint_in_bucket, 240, interval=0.1, message="a checkpoint in the bucket")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the machine dies: its disk is never seen again
        first.wait()
    run.refresh_from_db()
    killed_at = run.step
    assert run.status == Run.Status.RUNNING and killed_at < 300

    second = on_machine(
        "machine-c",
        f"patiently(execute_run, {run.pk}, 'machine-c')",
        worker_env,
        s3_server,
        s3_bucket,
        base,
    )
    finish(second, base, "machine-c")
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.attempts == 2 and run.worker_host == "machine-c"
    resumed_from = run.result["resumed_from"]
    assert resumed_from is not None and 20 <= resumed_from <= killed_at
    # Machine C got the training images and the checkpoint through the bucket only.
    distinct_files = {Path(f).name for f in dataset.images.values_list("file", flat=True)}
    assert files_under(base / "machine-c" / "media") == distinct_files
    assert (base / "machine-c" / "artifacts" / "runs" / run.folder_name / "checkpoints").is_dir()
    model = run.artifacts.get(name="model")
    assert any(k.startswith(f"artifacts/{model.path}/") for k in s3_server.keys(s3_bucket))
    assert not (base / "machine-b" / "artifacts" / model.path).exists()
    # The web machine serves the latest sample grid, which it never wrote.
    client.login(username=ml_engineer.username, password=PASSWORD)
    response = client.get(reverse("runs:sample", args=[run.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == s3_server.get(
        s3_bucket, f"artifacts/{run.latest_sample}"
    )


def test_shards_made_on_two_machines_are_gathered_through_the_bucket(
    on_s3: Path,
    worker_env: dict[str, str],
    s3_server: S3Server,
    s3_bucket: str,
    settings: Any,
    client: Any,
    ml_engineer: Any,
) -> None:
    from backend.datasets.models import Dataset
    from backend.runs.execution import execute_run

    base = on_s3.parent
    settings.COMPUTE_DEVICE = "cpu"
    dataset = dataset_with_cells()
    tiny = {**TINY_TRAINING, "batch_size": 4, "train_steps": 2, "checkpoint_every": 2}
    with mock.patch("backend.runs.services.enqueue"):
        train = launch_run(kind="train-conditional", config=tiny, datasets=[dataset])
        assert execute_run(train.pk, "web") == Run.Status.SUCCEEDED  # the model goes to S3
        config = {
            "rule": "per_cell",
            "count": 2,
            "num_inference_steps": 2,
            "shards": 4,
            "batch_size": 4,
            # An untrained model misses most tones: the gate replaces images in place, and
            # the replacements (not the first drafts) must be what the bucket keeps.
            "tone_tolerance": 0,
            "tone_retries": 1,
        }
        run = launch_run(kind="generate", config=config, parents=[train])

    # Machine B prepares the run (plan and provenance go to the bucket), then makes shards 0, 1;
    # machine C makes shards 2, 3, and as the last one to finish, gathers the whole set.
    code = """
        from unittest import mock
        from backend.runs.models import RunShard
        with mock.patch("backend.runs.sharding.enqueue_shard"):
            {prepare}
        for index in {indices}:
            shard = RunShard.objects.get(run_id={pk}, index=index)
            patiently(execute_shard, shard.pk, "{name}")
    """
    b = on_machine(
        "machine-b",
        code.format(
            prepare=f"patiently(execute_run, {run.pk}, 'machine-b')",
            indices=[0, 1],
            pk=run.pk,
            name="machine-b",
        ),
        worker_env,
        s3_server,
        s3_bucket,
        base,
    )
    finish(b, base, "machine-b")
    assert RunShard.objects.filter(run=run, status=RunShard.Status.SUCCEEDED).count() == 2
    c = on_machine(
        "machine-c",
        code.format(prepare="pass", indices=[2, 3], pk=run.pk, name="machine-c"),
        worker_env,
        s3_server,
        s3_bucket,
        base,
    )
    finish(c, base, "machine-c")
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.result["tone"]["replaced"] > 0
    replacements = s3_server.get(
        s3_bucket, f"artifacts/runs/{run.folder_name}/tone_replacements.json"
    )
    assert len(json.loads(replacements)) == run.result["tone"]["replaced"]
    synthetic = Dataset.objects.get(generated_by=run)
    images = list(synthetic.images.all())
    assert len(images) == len({i.image_id for i in images}) == 24
    stored = set(s3_server.keys(s3_bucket, "media/generated/"))
    for image in images:
        key = f"media/{image.file}"
        assert key in stored
        assert sha256_bytes(s3_server.get(s3_bucket, key)) == image.sha256
    made_on_b = pngs_under(base / "machine-b" / "media" / "generated")
    assert made_on_b and {int(name[:-4]) % 4 for name in made_on_b} == {0, 1}
    assert len(pngs_under(base / "machine-c" / "media" / "generated")) == 24
    # The machine that gathered the set lists every final image with the hash the rows have.
    gathered = base / "machine-c" / "media" / "generated" / f"run-{run.folder_name}"
    assert read_manifest(gathered) == {f"{i.image_id}.png": i.sha256 for i in images}
    # The web machine serves an image that machine B made, fetched from the bucket.
    from_b = next(i for i in images if int(i.image_id) % 4 == 0)
    client.login(username=ml_engineer.username, password=PASSWORD)
    response = client.get(from_b.get_file_url())
    assert response.status_code == 200
    assert sha256_bytes(b"".join(response.streaming_content)) == from_b.sha256
