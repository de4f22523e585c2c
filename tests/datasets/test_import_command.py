"""``manage.py import_dataset``: the same import through the command line, with a JSON summary."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from backend.datasets.models import Dataset
from tests.datasets.test_importing import row, write_set

pytestmark = pytest.mark.django_db


def test_it_imports_and_prints_a_json_summary(tmp_path: Path) -> None:
    metadata = write_set(tmp_path, [row(i) for i in range(8)] + [row(8, fst="0")])
    out = StringIO()
    call_command(
        "import_dataset", "--format", "phantom", "--metadata", str(metadata), "--images", str(tmp_path),
        "--name", "cli-set", "--json", stdout=out,
    )  # fmt: skip
    summary = json.loads(out.getvalue())
    assert summary["status"] == "ready" and summary["imported"] == 8
    assert summary["counts"]["fst"] == {"1": 2, "2": 2, "3": 1, "4": 1, "5": 1, "6": 1}
    assert summary["rejected"] == [
        {
            "file": "metadata.csv",
            "row": 9,
            "field": "fst",
            "reason": "value: '0' is not a Fitzpatrick skin type (1-6 or I-VI)",
        }
    ]
    assert Dataset.objects.get(name="cli-set").image_count == 8


def test_a_failed_import_exits_non_zero(tmp_path: Path) -> None:
    metadata = write_set(tmp_path, [row(0, diagnosis="nope")])
    with pytest.raises(CommandError, match="failed"):
        call_command(
            "import_dataset", "--format", "phantom", "--metadata", str(metadata), "--images", str(tmp_path),
            "--name", "bad", stdout=StringIO(),
        )  # fmt: skip
    assert Dataset.objects.get(name="bad").status == Dataset.Status.FAILED


def test_unavailable_formats_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--format: the generated importer is not available yet"):
        call_command(
            "import_dataset", "--format", "generated", "--metadata", "x.csv", "--images", str(tmp_path), "--name", "d",
        )  # fmt: skip
