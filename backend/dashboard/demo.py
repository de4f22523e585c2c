"""The go/no-go step of ``manage.py demo``: a project for the demo's synthetic set, judged on
the demo's own evaluate and downstream runs and its simulated-reader study."""

from __future__ import annotations

from typing import Any

from backend.dashboard.models import Project
from backend.dashboard.report import build_report
from backend.datasets.models import Dataset
from backend.reviews.models import Study

DEMO_PROJECT = "demo go/no-go"


def demo_project(synthetic: Dataset, study: Study) -> Project:
    """The demo project for ``synthetic`` (pinned to ``study``), made or updated."""
    project, _ = Project.objects.update_or_create(
        name=DEMO_PROJECT,
        defaults={
            "synthetic_dataset": synthetic,
            "study": study,
            "description": "The demo's phantom data, tiny model and simulated readers: "
            "every figure is real arithmetic on demo inputs, none is literature evidence.",
        },
    )
    return project


def demo_project_lines(project: Project, base_url: str) -> list[str]:
    """What the demo prints: the verdict, then one line per target."""
    report: dict[str, Any] = build_report(project)
    lines = [f"  verdict: {report['decision']['verdict']}"]
    for row in report["targets"]:
        ci = f" {row['ci_text']}" if row["ci_text"] else ""
        lines.append(
            f"    {row['label']:<36} {row['value_text']:>10}{ci}  {row['target']:<10} {row['status']}"
        )
    lines.append(f"  dashboard: {base_url}{project.get_absolute_url()}")
    return lines
