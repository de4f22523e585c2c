"""One populated world for the security suites: every persona and one object of each kind."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from django.urls import reverse
from PIL import Image as PILImage

from backend.dashboard.models import Project
from backend.datasets.models import Dataset, Image, TrainingSet
from backend.reviews.models import Assignment, Study
from backend.runs.models import Run
from tests.accounts.factories import PASSWORD, UserFactory
from tests.datasets.factories import dataset_with_cells
from tests.reviews.factories import make_study
from tests.runs.factories import RunFactory

ROLES = ("anonymous", "reader_a", "reader_b", "reader_c", "ml_engineer", "lead", "admin")


@dataclass
class World:
    users: dict[str, Any]
    dataset: Dataset
    image: Image
    training_set: TrainingSet
    run: Run
    study: Study
    other_study: Study
    assignment_a: Assignment
    assignment_b: Assignment
    project: Project

    def token(self, role: str) -> str:
        assignment = {"reader_a": self.assignment_a, "reader_b": self.assignment_b}[role]
        return assignment.slots.get(position=1).token


def build_world() -> World:
    users = {
        "reader_a": UserFactory(username="reader-a", role="Dermatologists"),
        "reader_b": UserFactory(username="reader-b", role="Dermatologists"),
        "reader_c": UserFactory(username="reader-c", role="Dermatologists"),
        "ml_engineer": UserFactory(username="ml-engineer", role="ML engineers", is_staff=True),
        "lead": UserFactory(username="lead", role="Leads"),
        "admin": UserFactory(username="admin", is_staff=True, is_superuser=True),
    }
    dataset = dataset_with_cells(fsts=(1, 6), diagnoses=("nevus",))
    training_set = TrainingSet.objects.create(name="everything")
    training_set.datasets.add(dataset)
    run = RunFactory(created_by=users["ml_engineer"], status=Run.Status.RUNNING)
    run.datasets.add(dataset)
    sample = run.workdir / "samples" / "step-0000001.png"
    sample.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(buffer, format="PNG")
    sample.write_bytes(buffer.getvalue())
    from django.conf import settings

    run.latest_sample = str(sample.relative_to(settings.ARTIFACTS_ROOT))
    run.save(update_fields=["latest_sample"])
    study = make_study([users["reader_a"], users["reader_b"]], n=2, name="main")
    other = make_study([users["reader_c"]], n=2, name="other")
    return World(
        users=users,
        dataset=dataset,
        image=dataset.images.first(),
        training_set=training_set,
        run=run,
        study=study,
        other_study=other,
        assignment_a=Assignment.objects.get(study=study, reader=users["reader_a"]),
        assignment_b=Assignment.objects.get(study=study, reader=users["reader_b"]),
        project=Project.objects.create(name="main", synthetic_dataset=study.synthetic_dataset),
    )


def client_for(role: str, world: World, **kwargs: Any) -> Any:
    from django.test import Client

    client = Client(**kwargs)
    if role != "anonymous":
        assert client.login(username=world.users[role].username, password=PASSWORD)
    return client


__all__ = ["ROLES", "World", "build_world", "client_for", "reverse"]
