"""The reader-study step of ``manage.py demo``: a study of the phantom test split against the
demo's synthetic set, opened for the demo dermatologists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from backend.accounts.roles import Role
from backend.datasets.models import Dataset, Image
from backend.reviews import services
from backend.reviews.models import Study

DEMO_STUDY = "demo reader study"


def demo_study(real: Dataset, synthetic: Dataset, usernames: Sequence[str], n: int = 50) -> Study:
    """The open demo study of these two datasets, made if missing (up to ``n`` + ``n`` cases).

    The dermatologists among ``usernames`` are invited. The demo's sets are small, so the
    study takes as many matched cases as they allow.
    """
    readers = list(
        get_user_model().objects.filter(
            username__in=usernames, groups__name=Role.DERMATOLOGIST.value
        )
    )
    existing = Study.objects.filter(
        name=DEMO_STUDY,
        real_dataset=real,
        synthetic_dataset=synthetic,
        status=Study.Status.OPEN,
    ).first()
    if existing is not None:
        services.invite_readers(existing, readers)
        return existing
    split = Image.Split.TEST
    size = min(n, services.largest_matched_draw(real, split, synthetic))
    if size == 0:
        raise ValidationError(
            f"no FST x diagnosis cell of {synthetic.name} has images in the test split of {real.name}"
        )
    plan = services.StudyPlan(
        name=DEMO_STUDY,
        real_dataset=real,
        real_split=split,
        synthetic_dataset=synthetic,
        n_real=size,
        n_synthetic=size,
    )
    study = services.create_study(plan, readers)
    services.open_study(study)
    return study


def demo_study_lines(study: Study, accounts: Sequence[Any], base_url: str) -> list[str]:
    """What the demo prints: the study, and how each reader logs in."""
    readers = [a for a in accounts if a.role is Role.DERMATOLOGIST]
    lines = [
        f"  {study.name!r} (#{study.pk}): {study.n_real} real ({study.real_dataset.name}, "
        f"test split) + {study.n_synthetic} synthetic cases, {study.get_status_display().lower()}",
        f"  readers log in at {base_url}/accounts/login/ and open 'Your studies':",
    ]
    lines += [f"    {a.username:<12} {a.password}" for a in readers]
    lines.append(
        f"  progress per reader and, once closed, the export: {base_url}{study.get_absolute_url()}"
    )
    return lines
