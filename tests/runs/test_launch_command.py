"""``manage.py launch KIND --config FILE.json``: the CLI goes through launch_run."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from backend.runs.models import Run
from tests.datasets.factories import DatasetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from worker import tasks

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.execute_run_gpu, "apply_async", lambda **kw: sent.append(kw))
    return sent


def test_it_launches_from_a_config_file(
    tmp_path: Path, django_capture_on_commit_callbacks: Any, no_broker: list
) -> None:
    dataset = DatasetFactory()
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"train_steps": 12, "batch_size": 8}))
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "launch", "train-conditional", "--preset", "cpu-demo-32px", "--config", str(config),
            "--dataset", str(dataset.pk), "--json", stdout=out,
        )  # fmt: skip
    payload = json.loads(out.getvalue())
    run = Run.objects.get(pk=payload["id"])
    assert payload["status"] == "queued"
    assert (run.config["train_steps"], run.config["batch_size"]) == (12, 8)
    assert no_broker == [{"kwargs": {"run_pk": run.pk}}]


def test_bad_config_files_name_the_problem(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CommandError, match="is not valid JSON"):
        call_command("launch", "train-conditional", "--config", str(broken))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"image_size": 33}))
    with pytest.raises(CommandError, match="config: image_size"):
        call_command(
            "launch",
            "train-conditional",
            "--config",
            str(wrong),
            "--dataset",
            str(DatasetFactory().pk),
        )
    assert Run.objects.count() == 0
