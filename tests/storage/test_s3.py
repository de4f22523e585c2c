"""FAIRDERM_STORAGE=s3 against a real S3 API (moto's server): files cross machines only by it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend import storage
from backend.datasets.models import Dataset
from backend.runs.executors.common import (
    publish_checkpoint,
    register_artifact,
    restore_checkpoints,
)
from backend.runs.models import Artifact
from tests.accounts.factories import PASSWORD
from tests.datasets.factories import ImageFactory
from tests.runs.factories import RunFactory
from tests.storage.conftest import S3Server
from validation.files import sha256_file, sha256_tree

pytestmark = pytest.mark.django_db


def become(settings: Any, cache: Path) -> Path:
    """Make this process another machine: same bucket and database, an empty local cache."""
    settings.MEDIA_ROOT = cache / "media"
    settings.ARTIFACTS_ROOT = cache / "artifacts"
    settings.UPLOAD_DIR = cache / "uploads"
    return cache


def test_an_imported_image_is_kept_in_the_bucket_and_served_from_another_machine(
    on_s3: Path, settings: Any, s3_server: S3Server, s3_bucket: str, client: Any, ml_engineer: Any
) -> None:
    image = ImageFactory()
    assert storage.media().remote
    assert s3_server.keys(s3_bucket) == [f"media/{image.file}"]
    stored = s3_server.get(s3_bucket, f"media/{image.file}")
    assert stored == (on_s3 / "media" / image.file).read_bytes()

    other = become(settings, on_s3.parent / "web-2")
    assert not image.path.exists()
    client.login(username=ml_engineer.username, password=PASSWORD)
    response = client.get(image.get_file_url())
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == stored
    assert (other / "media" / image.file).read_bytes() == stored  # now cached here


def test_a_missing_object_is_a_clear_error_and_a_404(
    on_s3: Path, settings: Any, s3_server: S3Server, s3_bucket: str, client: Any, ml_engineer: Any
) -> None:
    image = ImageFactory()
    s3_server.client().delete_object(Bucket=s3_bucket, Key=f"media/{image.file}")
    become(settings, on_s3.parent / "web-2")
    with pytest.raises(FileNotFoundError, match=f"media storage has no file '{image.file}'"):
        image.fetch()
    client.login(username=ml_engineer.username, password=PASSWORD)
    assert client.get(image.get_file_url()).status_code == 404


def test_a_corrupted_object_is_refused(
    on_s3: Path, settings: Any, s3_server: S3Server, s3_bucket: str
) -> None:
    image = ImageFactory()
    s3_server.client().put_object(Bucket=s3_bucket, Key=f"media/{image.file}", Body=b"not it")
    become(settings, on_s3.parent / "worker")
    with pytest.raises(storage.StorageIntegrityError):
        image.fetch()
    assert not image.path.exists()


def test_an_upload_staged_by_the_web_machine_is_imported_on_a_worker_machine(
    on_s3: Path,
    settings: Any,
    s3_server: S3Server,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from backend.datasets.importing import run_import
    from backend.datasets.services import import_upload_in_background
    from tests.datasets.test_uploads import make_zip, phantom_files
    from worker import tasks

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        tasks.import_dataset, "apply_async", lambda *, kwargs, **options: sent.append(kwargs)
    )
    with django_capture_on_commit_callbacks(execute=True):
        dataset = import_upload_in_background(
            name="from-s3", format="phantom", archive=make_zip(phantom_files(3))
        )
    [task] = sent
    staged = s3_server.keys(s3_bucket, "media/uploads/")
    assert any(key.endswith("/upload.zip") for key in staged)

    worker = become(settings, on_s3.parent / "worker")
    assert not (worker / "uploads").exists()
    run_import(task["dataset_pk"], task["metadata"], task["images_dir"])
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.READY, dataset.errors
    assert dataset.images.count() == 3
    for image in dataset.images.all():
        assert s3_server.get(s3_bucket, f"media/{image.file}") == image.path.read_bytes()
    # The staging folder is gone from the bucket as well as from the worker's disk.
    assert s3_server.keys(s3_bucket, "media/uploads/") == []
    assert not any((worker / "uploads").iterdir())


def test_artifacts_and_checkpoints_travel_through_the_bucket(
    on_s3: Path, settings: Any, s3_server: S3Server, s3_bucket: str
) -> None:
    run = RunFactory()
    model = run.workdir / "model"
    (model / "unet").mkdir(parents=True)
    (model / "unet" / "weights.safetensors").write_bytes(b"w" * 100)
    (model / "model_index.json").write_text("{}")
    artifact = register_artifact(run, "model", Artifact.Kind.MODEL, model)
    weights_sha = sha256_file(model / "unet" / "weights.safetensors")
    checkpoints = run.workdir / "checkpoints"
    for step in (10, 20, 30):
        folder = checkpoints / f"step-{step:07d}"
        folder.mkdir(parents=True)
        (folder / "unet.safetensors").write_bytes(bytes([step]) * 10)
        (folder / "COMPLETE.json").write_text(f'{{"step": {step}}}')
        if step == 30:  # pruned locally, as keep_checkpoints does: gone from the bucket too
            import shutil

            shutil.rmtree(checkpoints / "step-0000010")
        publish_checkpoint(folder)
    prefix = f"artifacts/runs/{run.folder_name}/checkpoints/"
    assert {key[len(prefix) :].split("/")[0] for key in s3_server.keys(s3_bucket, prefix)} == {
        "step-0000020",
        "step-0000030",
    }
    # A checkpoint whose marker never reached the bucket (its worker died uploading) is ignored.
    s3_server.client().put_object(
        Bucket=s3_bucket, Key=f"{prefix}step-0000040/unet.safetensors", Body=b"half"
    )

    become(settings, on_s3.parent / "machine-2")
    run.refresh_from_db()
    assert not run.workdir.exists()
    restored = restore_checkpoints(run.workdir / "checkpoints")
    assert [p.name for p in restored] == ["step-0000020", "step-0000030"]
    assert (run.workdir / "checkpoints" / "step-0000030" / "COMPLETE.json").is_file()
    assert not (run.workdir / "checkpoints" / "step-0000040").exists()

    artifact.refresh_from_db()
    folder = artifact.fetch()
    assert folder == run.workdir / "model"
    assert sha256_tree(folder) == artifact.sha256
    assert sha256_file(folder / "unet" / "weights.safetensors") == weights_sha
