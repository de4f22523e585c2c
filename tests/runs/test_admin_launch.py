"""Launching from the admin: a form per kind, built from its config dataclass, with presets."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from backend.runs.models import Run
from tests.accounts.factories import PASSWORD
from tests.datasets.factories import DatasetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from worker import tasks

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.execute_run_gpu, "apply_async", lambda **kw: calls.append(kw))
    return calls


@pytest.fixture
def admin_client(ml_engineer: Any) -> Client:
    ml_engineer.is_superuser = True
    ml_engineer.save()
    client = Client()
    assert client.login(username=ml_engineer.username, password=PASSWORD)
    return client


def form_data(page: Any) -> dict[str, Any]:
    """Every field of the rendered form with its initial value, as the browser would post it."""
    form = page.context["form"]
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = field.prepare_value(value) if hasattr(field, "prepare_value") else value
    return data


def test_the_chooser_lists_the_kinds(admin_client: Client) -> None:
    page = admin_client.get("/admin/runs/run/launch/")
    assert page.status_code == 200
    assert b"train-conditional" in page.content and b"generate" in page.content
    assert admin_client.get("/admin/runs/run/add/")["Location"].endswith("/admin/runs/run/launch/")


def test_a_preset_fills_the_form_and_a_post_launches_it(
    admin_client: Client, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    dataset = DatasetFactory()
    page = admin_client.get("/admin/runs/run/launch/train-conditional/?preset=gpu-64px")
    assert page.status_code == 200
    form = page.context["form"]
    assert form["config.image_size"].value() == 64
    assert "config.balancing.dark_fst_factor" in form.fields
    data = form_data(page)
    data.update(
        {
            "datasets": [dataset.pk],
            "config.train_steps": "25",
            "config.block_out_channels": "16, 32",
        }
    )
    data["config.image_size"] = "32"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/runs/run/launch/train-conditional/", data)
    assert response.status_code == 302, (
        response.context["form"].errors if response.context else response
    )
    run = Run.objects.get()
    assert run.config["train_steps"] == 25 and run.config["block_out_channels"] == [16, 32]
    assert run.config["balancing"]["dark_fst_factor"] == 5.0
    assert sent == [{"kwargs": {"run_pk": run.pk}}]


def test_config_errors_are_shown_beside_their_field(admin_client: Client, sent: list) -> None:
    dataset = DatasetFactory()
    page = admin_client.get("/admin/runs/run/launch/train-conditional/")
    data = {**form_data(page), "datasets": [dataset.pk], "config.image_size": "33"}
    response = admin_client.post("/admin/runs/run/launch/train-conditional/", data)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "config.image_size" in errors
    assert Run.objects.count() == 0 and sent == []


def test_readers_cannot_reach_the_launch_pages(reader_a: Any) -> None:
    client = Client()
    client.login(username=reader_a.username, password=PASSWORD)
    response = client.get("/admin/runs/run/launch/train-conditional/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
