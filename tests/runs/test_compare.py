"""Two runs side by side: config differences, results, loss curves; same gate as every run page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from backend.runs.compare import diff_rows, flatten, loss_polylines
from backend.runs.models import Run
from tests.accounts.factories import PASSWORD
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


def test_flatten_and_diff_nested_configs() -> None:
    a = {"lr": 0.001, "balancing": {"resample": True, "dark_fst_factor": 5.0}, "blocks": [32, 64]}
    b = {
        "lr": 0.0005,
        "balancing": {"resample": True, "dark_fst_factor": 5.0},
        "blocks": [32, 64],
        "seed": 1,
    }
    assert flatten(a)["balancing.dark_fst_factor"] == 5.0
    rows = {row.key: row for row in diff_rows(a, b)}
    assert [k for k, r in rows.items() if r.differs] == ["lr", "seed"]
    assert rows["seed"].a is None and rows["blocks"].a == [32, 64]


def test_loss_curves_share_axes() -> None:
    a = Run(loss_history=[[0, 1.0], [10, 0.5]])
    b = Run(loss_history=[[0, 0.5], [20, 0.25]])
    curve_a, curve_b = loss_polylines([a, b])
    assert curve_a.split()[0] == "0.0,5.0"  # the highest loss at the top
    assert (
        curve_b.split()[-1] == "400.0,155.0"
    )  # the last step at the right, the lowest loss at the bottom
    assert loss_polylines([Run(), Run()]) == ["", ""]


def test_the_compare_page_shows_only_differences_by_default(
    ml_engineer: Any, reader_a: Any
) -> None:
    a = RunFactory(
        config={"learning_rate": 0.001, "batch_size": 32, "balancing": {"resample": True}}
    )
    b = RunFactory(
        config={"learning_rate": 0.0005, "batch_size": 32, "balancing": {"resample": False}}
    )
    client = Client()
    client.login(username=ml_engineer.username, password=PASSWORD)
    page = client.get("/runs/compare/", {"a": a.pk, "b": b.pk})
    assert page.status_code == 200
    keys = [row.key for row in page.context["rows"]]
    assert keys == ["balancing.resample", "learning_rate"]
    everything = client.get("/runs/compare/", {"a": a.pk, "b": b.pk, "all": 1})
    assert [row.key for row in everything.context["rows"]] == [
        "balancing.resample",
        "batch_size",
        "learning_rate",
    ]
    assert client.get("/runs/compare/", {"a": a.pk, "b": 99999}).status_code == 404
    assert client.get("/runs/compare/", {"a": "x", "b": b.pk}).status_code == 404
    reader = Client()
    reader.login(username=reader_a.username, password=PASSWORD)
    assert reader.get("/runs/compare/", {"a": a.pk, "b": b.pk}).status_code == 404
