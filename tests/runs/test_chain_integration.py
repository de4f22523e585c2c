"""The main job chain through a real worker process: import, train, generate, with provenance."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from backend.datasets.models import Dataset, Origin
from backend.datasets.services import import_in_background
from backend.runs.models import Run
from backend.runs.services import launch_run
from generation.conditional import ConditionalDiffusionConfig
from generation.generate import read_provenance
from generation.phantom import PhantomConfig, build_phantom_dataset
from tests.conftest import WorkerProcess, wait_for
from validation.files import sha256_file, sha256_tree

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TINY_TRAINING = {
    "image_size": 16,
    "block_out_channels": [16, 32],
    "batch_size": 8,
    "train_steps": 6,
    "checkpoint_every": 3,
    "sample_every": 3,
    "num_inference_steps": 2,
    "log_every": 1,
}


def finished(run: Run) -> Run | None:
    run.refresh_from_db()
    return run if run.is_finished else None


def test_import_train_and_generate_through_a_real_worker(
    celery_worker_process: WorkerProcess, tmp_path: Path
) -> None:
    build_phantom_dataset(PhantomConfig(count=48, image_size=32, seed=3), tmp_path / "phantom")
    dataset = import_in_background(
        name="phantom-chain",
        format="phantom",
        metadata=tmp_path / "phantom/metadata.csv",
        images_dir=tmp_path / "phantom",
    )
    wait_for(
        lambda: Dataset.objects.get(pk=dataset.pk).status != Dataset.Status.IMPORTING,
        60,
        message="import",
    )
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.READY and dataset.image_count == 48

    train = launch_run(kind="train-conditional", config=TINY_TRAINING, datasets=[dataset])
    train = wait_for(lambda: finished(train), 240, message="training")
    assert train.status == Run.Status.SUCCEEDED, train.error
    assert (train.step, train.total_steps) == (6, 6)
    assert train.loss_history and all(loss > 0 for _, loss in train.loss_history)
    assert train.worker_host.startswith("pytest-") and train.device == "cpu"
    assert (settings.ARTIFACTS_ROOT / train.latest_sample).exists()
    model = train.artifacts.get(name="model")
    assert model.sha256 == sha256_tree(model.absolute_path)
    checkpoint = train.artifacts.get(name="last-checkpoint")
    stored_config = (checkpoint.absolute_path / "fairderm_config.json").read_text()
    assert ConditionalDiffusionConfig.from_json(stored_config).to_dict() == train.config
    assert train.result["training_images"] == 48

    generate = launch_run(
        kind="generate",
        config={"rule": "per_cell", "count": 1, "num_inference_steps": 2, "seed": 11},
        parents=[train],
    )
    generate = wait_for(lambda: finished(generate), 240, message="generation")
    assert generate.status == Run.Status.SUCCEEDED, generate.error
    synthetic = Dataset.objects.get(generated_by=generate)
    assert (synthetic.origin, synthetic.status) == (Origin.SYNTHETIC, Dataset.Status.READY)
    assert synthetic.counts["fst"] == {str(f): 4 for f in range(1, 7)}
    assert synthetic.counts["diagnosis"] == {
        "bcc": 6,
        "melanoma": 6,
        "nevus": 6,
        "seborrheic_keratosis": 6,
    }
    image = synthetic.images.order_by("image_id").first()
    assert image.path.exists() and sha256_file(image.path) == image.sha256
    in_png = read_provenance(image.path)
    assert in_png == image.provenance
    assert in_png["run_id"] == generate.pk and in_png["model_run_id"] == train.pk
    assert in_png["model_artifact_sha256"] == model.sha256
    assert (in_png["fst"], in_png["diagnosis"]) == (image.fst, image.diagnosis)
    assert {
        "seed",
        "guidance_scale",
        "num_inference_steps",
        "sampler",
        "packages",
        "code_commit",
    } <= set(in_png)
    tone = generate.result["tone"]
    assert tone["fidelity"]["overall"]["n"] == 24 and tone["replaced"] == 0
    assert image.ita is not None and image.ground_truth["estimated_fst"] in range(1, 7)
    log = celery_worker_process.log()
    assert "worker.tasks.execute_run_gpu" in log
