"""Who sees what: the personas against every page of the foundation."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from backend.runs.models import Run
from tests.accounts.factories import PASSWORD
from tests.datasets.factories import DatasetFactory, ImageFactory
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


def login(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def objects() -> dict:
    dataset = DatasetFactory(name="phantom-demo")
    image = ImageFactory(dataset=dataset, fst=5, diagnosis="melanoma", malignant=True)
    dataset.refresh_counts()
    run = RunFactory()
    return {"dataset": dataset, "image": image, "run": run}


def data_urls(objects: dict) -> list[str]:
    return [
        reverse("datasets:list"),
        reverse("datasets:detail", args=[objects["dataset"].pk]),
        reverse("datasets:image-file", args=[objects["image"].pk]),
        reverse("runs:list"),
        reverse("runs:detail", args=[objects["run"].pk]),
        reverse("runs:progress", args=[objects["run"].pk]),
    ]


def test_anonymous_users_are_sent_to_the_login_page(objects: dict) -> None:
    client = Client()
    for url in [reverse("dashboard:home"), *data_urls(objects)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login"))


def test_readers_never_see_datasets_runs_or_images(objects: dict, reader_a) -> None:  # type: ignore[no-untyped-def]
    client = login(reader_a)
    for url in data_urls(objects):
        assert client.get(url).status_code == 404, url
    home = client.get(reverse("dashboard:home"))
    assert home.status_code == 200
    assert b"Your reader studies" in home.content
    assert b"phantom-demo" not in home.content
    assert client.get("/api/datasets/").status_code == 403
    assert client.get("/api/runs/").status_code == 403


@pytest.mark.parametrize("persona", ["ml_engineer", "lead"])
def test_engineers_and_leads_see_the_data_pages(
    objects: dict, persona: str, request: pytest.FixtureRequest
) -> None:
    client = login(request.getfixturevalue(persona))
    for url in data_urls(objects):
        assert client.get(url).status_code == 200, url
    detail = client.get(reverse("datasets:detail", args=[objects["dataset"].pk])).content.decode()
    assert objects["image"].get_file_url() in detail
    assert 'id="sample-grid"' in detail
    assert 'id="count-table"' in detail
    image = client.get(objects["image"].get_file_url())
    assert image["Content-Type"] == "image/png"
    assert b"".join(image.streaming_content) == objects["image"].path.read_bytes()
    assert "private" in image["Cache-Control"]


def test_a_synthetic_set_shows_its_tone_fidelity(lead) -> None:  # type: ignore[no-untyped-def]
    from validation.tone import tone_fidelity

    run = RunFactory(kind=Run.Kind.GENERATE, status=Run.Status.SUCCEEDED)
    fidelity = tone_fidelity([1, 1, 6, 6], [1, 2, 6, None])
    run.result = {"tone": {"fidelity": fidelity.to_dict(), "replaced": 0, "still_off": 0}}
    run.save()
    dataset = DatasetFactory(name="synthetic", origin="synthetic", generated_by=run)
    page = login(lead).get(reverse("datasets:detail", args=[dataset.pk]))
    rows = page.context["tone"]
    assert [row["fst"] for row in rows] == ["I", "VI", "all"]
    assert rows[0]["exact_rate"] == 0.5 and rows[1]["n_unestimated"] == 1
    assert b'id="tone-fidelity"' in page.content


def test_only_ml_engineers_cancel_runs(objects: dict, ml_engineer, lead) -> None:  # type: ignore[no-untyped-def]
    run = objects["run"]
    url = reverse("runs:cancel", args=[run.pk])
    assert login(lead).post(url).status_code == 404
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED
    response = login(ml_engineer).post(url)
    assert response.status_code == 302
    run.refresh_from_db()
    assert (run.status, run.cancel_requested) == (Run.Status.CANCELLED, True)


def test_cancel_requires_post_and_csrf(objects: dict, ml_engineer) -> None:  # type: ignore[no-untyped-def]
    url = reverse("runs:cancel", args=[objects["run"].pk])
    assert login(ml_engineer).get(url).status_code == 405
    client = Client(enforce_csrf_checks=True)
    client.login(username=ml_engineer.username, password=PASSWORD)
    assert client.post(url).status_code == 403
    objects["run"].refresh_from_db()
    assert objects["run"].status == Run.Status.QUEUED


def test_progress_json_describes_the_run(objects: dict, lead) -> None:  # type: ignore[no-untyped-def]
    run = objects["run"]
    Run.objects.filter(pk=run.pk).update(
        step=30, total_steps=120, loss_history=[[10, 0.5], [30, 0.25]]
    )
    data = login(lead).get(reverse("runs:progress", args=[run.pk])).json()
    assert (data["step"], data["total_steps"], data["percent"]) == (30, 120, 25.0)
    assert data["loss_history"][-1] == [30, 0.25]
    assert data["finished"] is False


def test_the_api_schema_and_docs_render(lead) -> None:  # type: ignore[no-untyped-def]
    client = login(lead)
    schema = client.get(reverse("api-schema"))
    assert schema.status_code == 200
    assert b"/api/runs/" in schema.content
    docs = client.get(reverse("api-docs"))
    assert docs.status_code == 200
    assert b"cdn.jsdelivr" not in docs.content


def test_the_health_check_answers(client: Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_run_and_dataset_lists_filter(objects: dict, ml_engineer) -> None:  # type: ignore[no-untyped-def]
    RunFactory(kind=Run.Kind.GENERATE, status=Run.Status.SUCCEEDED)
    client = login(ml_engineer)
    generate = Run.objects.get(kind=Run.Kind.GENERATE)
    page = client.get(reverse("runs:list"), {"kind": "generate"}).content.decode()
    assert generate.get_absolute_url() in page
    assert objects["run"].get_absolute_url() not in page
    api = client.get("/api/runs/", {"status": "queued"}).json()
    assert [r["id"] for r in api["results"]] == [objects["run"].pk]
