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


def _matched_test_split_plan(
    name: str, real: Dataset, synthetic: Dataset, n: int, seed: int | None = None
) -> services.StudyPlan:
    """A plan of ``n`` + ``n`` cases from ``real``'s test split and ``synthetic``, or fewer
    when the demo's small sets allow fewer matched FST x diagnosis cases."""
    split = Image.Split.TEST
    size = min(n, services.largest_matched_draw(real, split, synthetic))
    if size == 0:
        raise ValidationError(
            f"no FST x diagnosis cell of {synthetic.name} has images in the test split of {real.name}"
        )
    return services.StudyPlan(
        name=name,
        real_dataset=real,
        real_split=split,
        synthetic_dataset=synthetic,
        n_real=size,
        n_synthetic=size,
        seed=seed,
    )


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
    study = services.create_study(_matched_test_split_plan(DEMO_STUDY, real, synthetic, n), readers)
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


SIMULATED_STUDY = "demo reader study (simulated readers)"
SIMULATED_READERS = ("simulated-reader-1", "simulated-reader-2", "simulated-reader-3")


def simulated_readers() -> list[Any]:
    """Inactive dermatologist accounts (they cannot log in) that answer the simulated study."""
    from backend.accounts.roles import ensure_role_groups

    group = ensure_role_groups()[Role.DERMATOLOGIST]
    users = []
    for username in SIMULATED_READERS:
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_active": False}
        )
        if created:
            user.set_unusable_password()
            user.save()
        user.groups.add(group)
        users.append(user)
    return users


def simulated_study(
    real: Dataset, synthetic: Dataset, n: int = 50, *, skill: float = 0.7, seed: int = 0
) -> Study:
    """A closed study of these datasets answered by SIMULATED readers, for the demo dashboard.

    The answers go through the same services as a reader's (save, submit, close); they are
    drawn by ``validation.reader_stats.simulate_readings`` (each call right with probability
    ``skill``) and the study is flagged ``simulated_readers``, so the dashboard shows its
    figures as "not comparable", never as meeting a target. Reused when it exists.
    """
    from validation.reader_stats import simulate_readings

    existing = Study.objects.filter(
        name=SIMULATED_STUDY,
        real_dataset=real,
        synthetic_dataset=synthetic,
        simulated_readers=True,
        status=Study.Status.CLOSED,
    ).first()
    if existing is not None:
        return existing
    plan = _matched_test_split_plan(SIMULATED_STUDY, real, synthetic, n, seed)
    size = plan.n_real
    readers = simulated_readers()
    study = services.create_study(plan, readers)
    study.simulated_readers = True
    study.save(update_fields=["simulated_readers"])
    services.open_study(study)
    cases = {
        origin: list(study.cases.filter(origin=origin).order_by("fst", "diagnosis", "id"))
        for origin in ("real", "synthetic")
    }
    readings = simulate_readings(
        len(readers), size, size, skill=skill, seed=seed, fsts=[c.fst for c in cases["real"]]
    )
    by_reader: dict[str, list[Any]] = {}
    for reading in readings:
        by_reader.setdefault(reading.reader, []).append(reading)
    for assignment, (_, own) in zip(
        study.assignments.order_by("reader__username"), sorted(by_reader.items()), strict=True
    ):
        slots = {slot.case_id: slot for slot in assignment.slots.all()}
        for reading in own:
            origin, _, number = reading.case.partition("-")
            case = cases[origin][int(number) - 1]
            values = {
                "judgement": reading.judgement,
                "confidence": 3,
                "realism": reading.realism,
                **{f"{k}_realistic": v for k, v in reading.realistic.items()},
                **{f"{k}_score": v for k, v in reading.scores.items()},
            }
            services.save_answer(slots[case.pk], values, reading_ms=4000)
        services.submit_assignment(assignment)
    services.close_study(study)
    return study
