"""Evaluate runs: launch rules, the executor end to end (in-process), the results page, the
dashboard count, and launching from the API and the CLI."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client

from backend.datasets.importing import store_image_bytes
from backend.datasets.models import Dataset, Image, Origin
from backend.runs.execution import execute_run
from backend.runs.models import Run
from backend.runs.services import launch_run
from tests.accounts.factories import PASSWORD
from tests.datasets.factories import DatasetFactory, ImageFactory
from tests.runs.factories import RunFactory
from tests.validation.metrics.conftest import lesion_image
from validation.metrics.weights import FID_INCEPTION, LPIPS_ALEX, stage_standin


@pytest.fixture(scope="module")
def standin_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("torch-home")
    stage_standin(FID_INCEPTION, home)
    stage_standin(LPIPS_ALEX, home)
    return home


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    from worker import tasks

    calls: dict[str, list[dict[str, Any]]] = {"gpu": [], "cpu": []}
    monkeypatch.setattr(tasks.execute_run_gpu, "apply_async", lambda **kw: calls["gpu"].append(kw))
    monkeypatch.setattr(tasks.execute_run_cpu, "apply_async", lambda **kw: calls["cpu"].append(kw))
    return calls


def _png(fst: int, rng: np.random.Generator, lesion: float) -> bytes:
    buffer = io.BytesIO()
    lesion_image(fst, rng, 32, lesion).save(buffer, format="PNG")
    return buffer.getvalue()


def lesion_dataset(
    origin: str, fsts: list[int], seed: int, splits: list[str] | None = None, lesion: float = 0.3
) -> Dataset:
    dataset = DatasetFactory(
        origin=origin,
        format=Dataset.Format.GENERATED if origin == Origin.SYNTHETIC else Dataset.Format.PHANTOM,
    )
    rng = np.random.default_rng(seed)
    for index, fst in enumerate(fsts):
        digest, relative, _ = store_image_bytes(_png(fst, rng, lesion), ".png")
        ImageFactory(
            dataset=dataset, file=relative, sha256=digest, width=32, height=32, fst=fst,
            diagnosis=("nevus", "melanoma")[index % 2], origin=origin, split=(splits or [""] * len(fsts))[index],
            fst_source=Image.FstSource.REQUESTED if origin == Origin.SYNTHETIC else Image.FstSource.LABEL,
        )  # fmt: skip
    dataset.refresh_counts()
    return dataset


@pytest.mark.django_db
def test_launch_needs_a_real_reference_and_a_synthetic_set(sent: dict) -> None:
    real = DatasetFactory(origin=Origin.REAL)
    synthetic = DatasetFactory(origin=Origin.SYNTHETIC)
    with pytest.raises(ValidationError) as excinfo:
        launch_run(kind="evaluate", datasets=[synthetic])
    assert "real dataset" in excinfo.value.message_dict["datasets"][0]
    with pytest.raises(ValidationError) as excinfo:
        launch_run(kind="evaluate", datasets=[real])
    assert "synthetic set" in excinfo.value.message_dict["datasets"][0]
    training = RunFactory(kind=Run.Kind.TRAIN_CONDITIONAL, status=Run.Status.SUCCEEDED)
    with pytest.raises(ValidationError) as excinfo:
        launch_run(kind="evaluate", datasets=[real], parents=[training])
    assert "give generate runs" in excinfo.value.message_dict["parents"][0]
    unfinished = RunFactory(kind=Run.Kind.GENERATE, status=Run.Status.RUNNING)
    with pytest.raises(ValidationError) as excinfo:
        launch_run(kind="evaluate", datasets=[real], parents=[unfinished])
    assert "no synthetic set yet" in excinfo.value.message_dict["parents"][0]
    with pytest.raises(ValidationError) as excinfo:
        launch_run(kind="evaluate", config={"fid_dims": 100}, datasets=[real, synthetic])
    assert excinfo.value.message_dict["config"][0].startswith("fid_dims:")


@pytest.mark.django_db
def test_launch_from_the_api_and_the_cli_goes_to_the_gpu_queue(
    sent: dict, ml_engineer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    real = DatasetFactory(origin=Origin.REAL)
    synthetic = DatasetFactory(origin=Origin.SYNTHETIC)
    client = Client()
    client.login(username=ml_engineer.username, password=PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/runs/",
            {"kind": "evaluate", "preset": "quick-64d", "datasets": [real.pk, synthetic.pk]},
            content_type="application/json",
        )
    assert response.status_code == 201, response.content
    assert response.json()["config"]["fid_dims"] == 64
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "launch",
            "evaluate",
            "--preset",
            "standard",
            "--dataset",
            str(real.pk),
            "--dataset",
            str(synthetic.pk),
            stdout=out,
        )
    assert "(evaluate) queued" in out.getvalue()
    assert len(sent["gpu"]) == 2 and sent["cpu"] == []


@pytest.mark.django_db(transaction=True)
def test_an_evaluate_run_computes_every_metric_and_shows_them(
    standin_home: Path, settings: Any, ml_engineer: Any
) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    settings.RUN_HEARTBEAT_SECONDS = 0.2
    settings.COMPUTE_DEVICE = "cpu"
    try:
        real = lesion_dataset(
            Origin.REAL, [1, 2, 3, 4, 5, 6] * 3, seed=1, splits=["test"] * 12 + ["train"] * 6
        )
        synthetic = lesion_dataset(Origin.SYNTHETIC, [3, 4, 5, 6] * 2, seed=2, lesion=0.55)
        # Plant a copy of a real training image in the synthetic set: the audit must flag it.
        copied = real.images.filter(split="train").order_by("id")[3]
        ImageFactory(
            dataset=synthetic,
            file=copied.file,
            sha256=copied.sha256,
            width=32,
            height=32,
            fst=copied.fst,
            diagnosis=copied.diagnosis,
            origin=Origin.SYNTHETIC,
        )
        config = {
            "fid_dims": 64,
            "kid_subsets": 5,
            "is_splits": 2,
            "torch_home": str(standin_home),
            "real_split": "test",
        }
        run = launch_run(kind="evaluate", config=config, datasets=[real, synthetic])
        assert execute_run(run.pk, "host-a") == Run.Status.SUCCEEDED, Run.objects.get(
            pk=run.pk
        ).error
    finally:
        torch.set_num_threads(threads)
    run.refresh_from_db()
    result = run.result
    assert {"fid", "kid", "is", "lpips", "tone", "memorization"} <= set(result)
    assert result["n_real"] == 12 and result["n_synthetic"] == 9
    assert result["fid"]["per_fst"]["3"]["n_real"] == 2
    assert result["memorization"]["n_flagged"] >= 1
    assert any(f["train_key"].endswith(copied.image_id) for f in result["memorization"]["flagged"])
    assert result["weights"]["fid"]["status"] == "non-official"
    assert result["inputs"]["train"] == {"source": "train split of the real datasets", "n": 6}
    assert result["memorization"]["n_train"] == 6
    assert set(run.artifacts.values_list("name", flat=True)) == {"metrics", "memorization-pairs"}

    client = Client()
    client.login(username=ml_engineer.username, password=PASSWORD)
    page = client.get(run.get_absolute_url()).content.decode()
    for fragment in (
        "Quality metrics",
        "evaluation-per-fst",
        "non-official weights",
        "ITA of the skin: synthetic",
        "Memorization audit",
        "data:image/png;base64,",
        "Frechet Inception Distance",
    ):
        assert fragment in page, fragment
    home = client.get("/").content.decode()
    assert "dashboard-memorization-count" in home and f"run #{run.pk}" in home


@pytest.mark.django_db
def test_the_audit_compares_with_the_images_the_model_was_trained_on() -> None:
    from backend.runs.executors.evaluate import real_images, training_reference

    real = lesion_dataset(
        Origin.REAL, [1, 2, 3, 4], seed=5, splits=["train", "train", "val", "test"]
    )
    other = lesion_dataset(Origin.REAL, [5, 6], seed=6, splits=["train", "train"])
    training = RunFactory(kind=Run.Kind.TRAIN_CONDITIONAL, status=Run.Status.SUCCEEDED)
    training.datasets.set([real])
    generate = RunFactory(kind=Run.Kind.GENERATE, status=Run.Status.SUCCEEDED)
    generate.parents.set([training])
    synthetic = DatasetFactory(origin=Origin.SYNTHETIC, generated_by=generate)
    evaluate = RunFactory(kind=Run.Kind.EVALUATE, config={})
    evaluate.datasets.set([real, other, synthetic])

    images, source = training_reference(evaluate, [synthetic])
    assert source == f"training images of run #{training.pk}"
    assert {i.pk for i in images} == set(
        real.images.filter(split="train").values_list("pk", flat=True)
    )
    assert [i.split for i in real_images(evaluate, "test")] == ["test"]
    assert len(real_images(evaluate, "all")) == 6


@pytest.mark.django_db
def test_the_admin_launches_an_evaluation(
    ml_engineer: Any, sent: dict, django_capture_on_commit_callbacks: Any
) -> None:
    from tests.runs.test_admin_launch import form_data

    ml_engineer.is_superuser = True
    ml_engineer.save()
    client = Client()
    client.login(username=ml_engineer.username, password=PASSWORD)
    real = DatasetFactory(origin=Origin.REAL)
    synthetic = DatasetFactory(origin=Origin.SYNTHETIC)
    page = client.get("/admin/runs/run/launch/evaluate/?preset=quick-64d")
    assert page.status_code == 200
    assert page.context["form"]["config.fid_dims"].value() == 64
    data = {
        **form_data(page),
        "datasets": [real.pk, synthetic.pk],
        "config.metrics": "fid, kid, tone",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/runs/run/launch/evaluate/", data)
    assert response.status_code == 302, (
        response.context["form"].errors if response.context else response
    )
    run = Run.objects.get(kind=Run.Kind.EVALUATE)
    assert run.config["metrics"] == ["fid", "kid", "tone"] and run.config["fid_dims"] == 64
    assert len(sent["gpu"]) == 1


def test_the_demo_stages_labelled_standins_outside_the_users_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin_home: Path
) -> None:
    from backend.runs.evaluation import demo_evaluation_config

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    config, notes = demo_evaluation_config(tmp_path / "demo")
    assert config["torch_home"] == str(tmp_path / "demo" / "torch-standin")
    assert config["fid_dims"] == 64
    assert (
        tmp_path / "demo" / "torch-standin" / "hub" / "checkpoints" / FID_INCEPTION.filename
    ).is_file()
    assert not (tmp_path / "empty").exists()  # the user's cache is never written
    assert "STAND-IN" in notes[-1]

    monkeypatch.setenv("TORCH_HOME", str(standin_home))  # stand-ins there are not official either
    config, notes = demo_evaluation_config(tmp_path / "demo2")
    assert config["torch_home"] == str(tmp_path / "demo2" / "torch-standin")
    assert "not the official file" in notes[-1]


@pytest.mark.django_db(transaction=True)
def test_an_empty_real_split_fails_with_a_message_naming_it(settings: Any) -> None:
    settings.RUN_HEARTBEAT_SECONDS = 0.2
    real = lesion_dataset(Origin.REAL, [1, 2], seed=7, splits=["train", "train"])
    synthetic = lesion_dataset(Origin.SYNTHETIC, [1, 2], seed=8)
    run = launch_run(kind="evaluate", config={"real_split": "test"}, datasets=[real, synthetic])
    assert execute_run(run.pk, "host-a") == Run.Status.FAILED
    run.refresh_from_db()
    assert "real_split: no real images in split 'test'" in run.error


@pytest.mark.django_db
def test_a_running_evaluation_page_reloads_itself_when_done(ml_engineer: Any) -> None:
    client = Client()
    client.login(username=ml_engineer.username, password=PASSWORD)
    running = RunFactory(kind=Run.Kind.EVALUATE, status=Run.Status.RUNNING)
    assert 'data-reload-on-finish="true"' in client.get(running.get_absolute_url()).content.decode()
    done = RunFactory(kind=Run.Kind.EVALUATE, status=Run.Status.SUCCEEDED)
    assert "data-reload-on-finish" not in client.get(done.get_absolute_url()).content.decode()
