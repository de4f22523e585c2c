"""Downstream runs: launch checks, the locked-test guard, synthetic provenance, a full run."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from io import StringIO
from typing import Any

import numpy as np
import PIL.Image
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from backend.datasets.importing import store_image_bytes
from backend.datasets.models import Dataset, Image, Origin
from backend.datasets.splitting import split_dataset
from backend.runs.models import Run
from backend.runs.services import launch_run
from tests.accounts.factories import PASSWORD
from tests.datasets.factories import DatasetFactory, ImageFactory
from tests.runs.factories import RunFactory

QUICK = {
    "classifier": {"image_size": 16, "epochs": 2, "batch_size": 16, "width": 4},
    "strategies": ["baseline", "mixed"],
    "ratios": [1.0],
    "seeds": [0, 1, 2],
    "bootstrap": 50,
}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from worker import tasks

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.execute_run_gpu, "apply_async", lambda **kw: calls.append(kw))
    return calls


def lesion_png(fst: int, malignant: bool, seed: int) -> bytes:
    """A 16 px phantom-like image: skin darkens with FST, malignant lesions are darker."""
    rng = np.random.default_rng(seed)
    pixels = np.full((16, 16, 3), 230.0 - 30 * fst) + rng.normal(0, 6, (16, 16, 3))
    pixels[5:11, 5:11] *= 0.45 if malignant else 0.9
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def add_images(
    dataset: Dataset, n: int, *, origin: str = Origin.REAL, seed: int = 0, **extra: Any
) -> None:
    for i in range(n):
        fst = 1 + i % 6
        malignant = (i // 6) % 3 == 0
        digest, relative, _ = store_image_bytes(lesion_png(fst, malignant, seed * 1000 + i), ".png")
        ImageFactory(
            dataset=dataset,
            image_id=f"{dataset.name}-{i}",
            file=relative,
            sha256=digest,
            fst=fst,
            diagnosis="melanoma" if malignant else "nevus",
            malignant=malignant,
            origin=origin,
            lesion_id=f"{dataset.name}-L{i}",
            patient_id=f"{dataset.name}-P{i}",
            **extra,
        )
    dataset.refresh_counts()


def real_dataset(name: str = "real", n: int = 72) -> Dataset:
    dataset = DatasetFactory(name=name)
    add_images(dataset, n)
    split_dataset(dataset, level="lesion", seed=0)
    return dataset


def synthetic_dataset(trained_on: Dataset, *, trained_at: Any = None, n: int = 36) -> Dataset:
    model = RunFactory(
        kind=Run.Kind.TRAIN_CONDITIONAL,
        status=Run.Status.SUCCEEDED,
        started_at=trained_at or timezone.now() + timedelta(seconds=5),
    )
    model.datasets.set([trained_on])
    generate = RunFactory(kind=Run.Kind.GENERATE, status=Run.Status.SUCCEEDED)
    generate.parents.set([model])
    dataset = DatasetFactory(
        name=f"synthetic-{generate.pk}",
        origin=Origin.SYNTHETIC,
        format=Dataset.Format.GENERATED,
        generated_by=generate,
    )
    add_images(dataset, n, origin=Origin.SYNTHETIC, seed=1)
    return dataset


def external_dataset(n: int = 48, format: str = Dataset.Format.DDI) -> Dataset:
    dataset = DatasetFactory(name="ddi-like", role=Dataset.Role.EXTERNAL_TEST, format=format)
    add_images(dataset, n, seed=2)
    # DDI labels skin tone as ranges: two V-VI images without an exact type.
    for image in dataset.images.filter(fst=6)[:2]:
        image.fst, image.fst_min, image.fst_max = None, 5, 6
        image.save()
    return dataset


# --- Launch checks ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_downstream_run_launches_from_a_preset(
    sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    real = real_dataset()
    synthetic = synthetic_dataset(real)
    external = external_dataset()
    with django_capture_on_commit_callbacks(execute=True):
        run = launch_run(
            kind="downstream",
            preset="cpu-quick-16px",
            datasets=[real, external],
            parents=[synthetic.generated_by],
        )
    assert run.config["classifier"]["image_size"] == 16 and run.config["seeds"] == [0, 1, 2]
    assert sent == [{"kwargs": {"run_pk": run.pk}}]


@pytest.mark.django_db
def test_launch_refuses_bad_inputs() -> None:
    real = real_dataset()
    external = external_dataset()
    with pytest.raises(ValidationError, match="exactly one dataset locked"):
        launch_run(kind="downstream", datasets=[real])
    unsplit = DatasetFactory(name="unsplit")
    add_images(unsplit, 6)
    with pytest.raises(ValidationError, match="no validation split"):
        launch_run(kind="downstream", datasets=[unsplit, external])
    early = synthetic_dataset(real, trained_at=timezone.now() - timedelta(days=1))
    with pytest.raises(ValidationError, match="before that dataset was split"):
        launch_run(kind="downstream", datasets=[real, early, external])
    stray = DatasetFactory(name="stray-synthetic", origin=Origin.SYNTHETIC)
    with pytest.raises(ValidationError, match="not made by a generate run"):
        launch_run(kind="downstream", datasets=[real, stray, external])
    model = RunFactory(kind=Run.Kind.TRAIN_CONDITIONAL, status=Run.Status.SUCCEEDED)
    with pytest.raises(ValidationError, match="parents must be generate runs"):
        launch_run(kind="downstream", datasets=[real, external], parents=[model])
    with pytest.raises(ValidationError, match="ratios"):
        launch_run(kind="downstream", config={"ratios": [0]}, datasets=[real, external])


@pytest.mark.django_db
def test_a_synthetic_set_whose_model_read_the_locked_set_is_refused() -> None:
    from backend.runs.downstream_inputs import check_synthetic_provenance

    real = real_dataset()
    synthetic = synthetic_dataset(real)
    locked = external_dataset()
    model = synthetic.generated_by.parents.get()
    Dataset.objects.filter(pk=real.pk).update(role=Dataset.Role.EXTERNAL_TEST)
    model.datasets.add(locked)
    with pytest.raises(ValidationError, match="read the locked test set"):
        check_synthetic_provenance(synthetic)


@pytest.mark.django_db
def test_a_model_that_could_read_a_copy_of_a_held_out_image_is_refused() -> None:
    real = real_dataset()
    external = external_dataset()
    # The model trained on another, never-split dataset: allowed while it holds no copy.
    other = DatasetFactory(name="other-source")
    add_images(other, 6, seed=7)
    synthetic = synthetic_dataset(other)
    launch_run(kind="downstream", datasets=[real, synthetic, external])
    copy = external.images.first()
    ImageFactory(dataset=other, image_id="copy", file=copy.file, sha256=copy.sha256)
    with pytest.raises(ValidationError, match="could read a copy of ddi-like/"):
        launch_run(kind="downstream", datasets=[real, synthetic, external])
    val_image = real.images.filter(split=Image.Split.VAL).first()
    Image.objects.filter(dataset=other, image_id="copy").update(
        file=val_image.file, sha256=val_image.sha256
    )
    with pytest.raises(ValidationError, match=f"could read a copy of real/{val_image.image_id}"):
        launch_run(kind="downstream", datasets=[real, synthetic, external])


@pytest.mark.django_db
def test_training_code_refuses_the_external_test_set() -> None:
    from backend.runs.executors.downstream import synthetic_samples, training_samples

    real = real_dataset()
    external = external_dataset()
    with pytest.raises(PermissionError, match="locked as external test sets"):
        training_samples([real, external])
    with pytest.raises(PermissionError, match="locked"):
        synthetic_samples([external])
    splits = training_samples([real])
    assert {s.split for s in splits["val"]} == {"val"} and splits["train"]
    lesions = {split: {s.lesion_id for s in samples} for split, samples in splits.items()}
    assert not lesions["train"] & lesions["val"] and not lesions["train"] & lesions["test"]


@pytest.mark.django_db
def test_the_locked_test_set_is_read_only_when_opened(django_assert_num_queries: Any) -> None:
    from backend.runs.executors.downstream import locked_test_set

    real = real_dataset()
    external = external_dataset()
    run = RunFactory(kind=Run.Kind.DOWNSTREAM)
    run.datasets.set([real, external])
    locked = locked_test_set(run)
    with django_assert_num_queries(0):
        assert locked.name == "ddi-like"  # nothing of the set is read yet
    samples = locked.open_for_final_evaluation()
    assert len(samples) == 48 and all(s.locked and s.split == "external-test" for s in samples)
    ranged = [s for s in samples if s.fst is None]
    assert len(ranged) == 2 and ranged[0].fst_range == (5, 6)


# --- A full run ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_downstream_run_end_to_end_with_its_results_page(
    settings: Any, lead: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.runs.execution import execute_run

    settings.RUN_HEARTBEAT_SECONDS = 0.2
    monkeypatch.setenv("DOWNSTREAM_THREADS", "1")
    real = real_dataset(n=96)
    synthetic = synthetic_dataset(real, n=48)
    external = external_dataset(n=60, format=Dataset.Format.PHANTOM)
    run = RunFactory(kind=Run.Kind.DOWNSTREAM, config=QUICK)
    run.datasets.set([real, external])
    run.parents.set([synthetic.generated_by])
    assert execute_run(run.pk, "host-a") == Run.Status.SUCCEEDED, Run.objects.get(pk=run.pk).error
    run.refresh_from_db()
    assert run.step == run.total_steps == 2 * 3 * 2
    result = run.result
    assert set(result["auroc"]) == {"baseline", "mixed@1"}
    assert result["go_no_go"]["fst_v_vi_improvement"]["definition"]
    assert result["evidence"]["counts_toward_literature_target"] is False  # phantom test set
    assert result["data"]["test"] == 60 and result["data"]["synthetic_pool"] == 48
    stored = json.loads(run.artifacts.get(name="results").absolute_path.read_text())
    assert stored["arms"]["baseline"]["groups"]["V-VI"]["n"] == 20  # 18 exact types + 2 V-VI ranges
    assert stored["inputs"]["external_test"] == "ddi-like"
    predictions = json.loads(run.artifacts.get(name="predictions").absolute_path.read_text())
    assert len(predictions["keys"]) == 60 and set(predictions["scores"]) == {"baseline", "mixed@1"}

    client = Client()
    assert client.login(username=lead.username, password=PASSWORD)
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    for marker in (
        "downstream-auroc-bars",
        "downstream-roc",
        "downstream-reliability",
        "downstream-arms",
        "FST V-VI AUROC improvement",
        "Not literature evidence",
    ):
        assert marker in page, marker
    assert page.count('class="whisker"') >= 10


@pytest.mark.django_db
def test_the_cli_launches_a_downstream_run(
    sent: list, django_capture_on_commit_callbacks: Any, tmp_path: Any
) -> None:
    real = real_dataset()
    external = external_dataset()
    config = tmp_path / "downstream.json"
    config.write_text(
        json.dumps({"strategies": ["baseline", "traditional_aug"], "primary": "mixed"})
    )
    with pytest.raises(Exception, match="primary"):
        call_command(
            "launch",
            "downstream",
            "--config",
            str(config),
            "--dataset",
            str(real.pk),
            "--dataset",
            str(external.pk),
        )
    config.write_text(
        json.dumps(
            {"strategies": ["baseline", "traditional_aug", "weighted"], "primary": "weighted"}
        )
    )
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "launch",
            "downstream",
            "--config",
            str(config),
            "--dataset",
            str(real.pk),
            "--dataset",
            str(external.pk),
            "--json",
            stdout=out,
        )
    run = Run.objects.get(pk=json.loads(out.getvalue())["id"])
    assert run.kind == "downstream" and run.config["primary"] == "weighted"


@pytest.mark.django_db
def test_the_api_launches_a_downstream_run(sent: list, ml_engineer: Any) -> None:
    real = real_dataset()
    external = external_dataset()
    client = Client()
    assert client.login(username=ml_engineer.username, password=PASSWORD)
    payload = {
        "kind": "downstream",
        "preset": "cpu-quick-16px",
        "datasets": [real.pk, external.pk],
        "config": {"strategies": ["baseline", "traditional_aug"], "primary": "mixed"},
    }
    response = client.post("/api/runs/", payload, content_type="application/json")
    assert response.status_code == 400 and "primary" in json.dumps(response.json())
    payload["config"] = {"seeds": [0, 1, 2, 3]}
    response = client.post("/api/runs/", payload, content_type="application/json")
    assert response.status_code == 201, response.content
    assert Image.objects.filter(dataset=external).count() == 48


@pytest.mark.django_db
def test_the_admin_launches_a_downstream_run(
    sent: list, ml_engineer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from tests.runs.test_admin_launch import form_data

    ml_engineer.is_superuser = True
    ml_engineer.save()
    client = Client()
    assert client.login(username=ml_engineer.username, password=PASSWORD)
    real = real_dataset()
    synthetic = synthetic_dataset(real)
    external = external_dataset()
    page = client.get("/admin/runs/run/launch/downstream/?preset=cpu-demo-32px")
    assert page.status_code == 200 and b"config.classifier.architecture" in page.content
    data = form_data(page)
    data.update(
        {
            "datasets": [real.pk, synthetic.pk, external.pk],
            "config.ratios": "0.5, 2",
            "config.seeds": "0, 1, 2",
        }
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/runs/run/launch/downstream/?preset=cpu-demo-32px", data)
    assert response.status_code == 302, page.context and response.content[:2000]
    run = Run.objects.get(kind="downstream")
    assert run.config["ratios"] == [0.5, 2.0] and run.config["classifier"]["image_size"] == 32
    assert set(run.datasets.all()) == {real, synthetic, external}
