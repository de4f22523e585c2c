"""generation/ and validation/ are pure libraries: the lint rule that keeps them so must bite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A copy of the project's lint configuration with empty library folders."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in ("generation", "validation"):
        (tmp_path / package).mkdir()
        shutil.copy(ROOT / package / "ruff.toml", tmp_path / package / "ruff.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("package", "source", "banned"),
    [
        ("generation", "from django.db import models\n", "django"),
        ("generation", "def f():\n    import django.conf\n\n    return django.conf\n", "django"),
        ("generation", "from celery import shared_task\n", "celery"),
        ("generation", "from backend.runs.models import Run\n", "backend"),
        ("generation", "import worker.tasks\n", "worker"),
        ("validation", "import django\n", "django"),
        ("validation", "from celery import Celery\n", "celery"),
        ("validation", "from generation.phantom import build_phantom_dataset\n", "generation"),
    ],
)
def test_the_layering_rule_catches_forbidden_imports(
    sandbox: Path, package: str, source: str, banned: str
) -> None:
    (sandbox / package / "leak.py").write_text(f"{source}\n__all__ = []\n")
    result = ruff(str(sandbox / package / "leak.py"), "--select", "TID251", cwd=sandbox)
    assert result.returncode == 1, result.stdout
    assert "TID251" in result.stdout
    assert f"`{banned}` is banned" in result.stdout


def test_the_backend_may_import_django(sandbox: Path) -> None:
    (sandbox / "backend").mkdir()
    (sandbox / "backend" / "ok.py").write_text(
        "from django.db import models\n\n__all__ = ['models']\n"
    )
    result = ruff(str(sandbox / "backend" / "ok.py"), "--select", "TID251", cwd=sandbox)
    assert result.returncode == 0, result.stdout


def test_the_tree_is_clean() -> None:
    result = ruff(".")
    assert result.returncode == 0, result.stdout
