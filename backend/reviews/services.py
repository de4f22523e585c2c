"""Building, running and exporting blinded reader studies; views and the demo call these."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from backend.accounts.roles import Role, has_role
from backend.datasets.models import Dataset, Image, Origin
from backend.reviews.models import (
    QUESTION_FIELDS,
    Answer,
    Assignment,
    Case,
    Slot,
    Study,
    new_seed,
)
from validation.reader_study import Candidate, draw_matched, matched_capacity, reader_order
from validation.study_copies import StudyCopySettings, pad_copy, padded_size, study_copy

COPY_FOLDER = "studies"
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}
#: The longest a case can count as on screen in one save (a tab left open overnight is not reading).
MAX_READING_MS = 6 * 3600 * 1000


@dataclass(frozen=True)
class StudyPlan:
    """What ``create_study`` needs: the pools, the sizes and how the copies are encoded."""

    name: str
    real_dataset: Dataset
    real_split: str
    synthetic_dataset: Dataset
    n_real: int = 50
    n_synthetic: int = 50
    seed: int | None = None
    copy_size: int = 256
    copy_format: str = "PNG"
    allow_answer_modification: bool = True
    #: The builder form's one-time token (a repeated submit finds the study it made).
    request_token: uuid.UUID | None = None


def real_pool(dataset: Dataset, split: str) -> QuerySet[Image]:
    return Image.objects.filter(dataset=dataset, split=split, fst__isnull=False)


def synthetic_pool(dataset: Dataset) -> QuerySet[Image]:
    return Image.objects.filter(dataset=dataset, fst__isnull=False)


def _candidates(images: QuerySet[Image]) -> list[Candidate]:
    return [
        Candidate(pk, (fst, dx)) for pk, fst, dx in images.values_list("pk", "fst", "diagnosis")
    ]


def check_pools(real_dataset: Dataset, synthetic_dataset: Dataset) -> None:
    errors = {}
    if real_dataset.origin != Origin.REAL or real_dataset.status != Dataset.Status.READY:
        errors["real_dataset"] = f"{real_dataset.name} is not a ready real dataset"
    if (
        synthetic_dataset.origin != Origin.SYNTHETIC
        or synthetic_dataset.status != Dataset.Status.READY
    ):
        errors["synthetic_dataset"] = f"{synthetic_dataset.name} is not a ready synthetic dataset"
    if errors:
        raise ValidationError(errors)


def largest_matched_draw(real_dataset: Dataset, split: str, synthetic_dataset: Dataset) -> int:
    """The most cases per half that can be drawn with one FST x diagnosis mix."""
    return matched_capacity(
        _candidates(real_pool(real_dataset, split)), _candidates(synthetic_pool(synthetic_dataset))
    )


def create_study(
    plan: StudyPlan, readers: Iterable[AbstractBaseUser] = (), created_by: Any = None
) -> Study:
    """Draw the cases, re-encode every one of them once, and invite ``readers``.

    The copies are written to default storage under random names before the rows are
    created in one transaction; if anything fails, the copies written so far are deleted.
    """
    check_pools(plan.real_dataset, plan.synthetic_dataset)
    seed = new_seed() if plan.seed is None else plan.seed
    try:
        copy_settings = StudyCopySettings(size=plan.copy_size, format=plan.copy_format)
        real_keys, synthetic_keys = draw_matched(
            _candidates(real_pool(plan.real_dataset, plan.real_split)),
            _candidates(synthetic_pool(plan.synthetic_dataset)),
            plan.n_real,
            plan.n_synthetic,
            seed,
        )
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise ValidationError({_PLAN_FIELDS.get(field, "__all__"): message}) from exc
    images = Image.objects.in_bulk([*real_keys, *synthetic_keys])
    chosen = [images[k] for k in [*real_keys, *synthetic_keys]]
    # Cases are created in a random order, so that ids and storage order say nothing either.
    random.Random(seed).shuffle(chosen)
    encoded = [study_copy(image.fetch(), copy_settings) for image in chosen]
    size = padded_size([len(data) for data in encoded])
    names: list[str] = []
    try:
        for data in encoded:
            name = f"{COPY_FOLDER}/{uuid.uuid4().hex}.{plan.copy_format.lower()}"
            names.append(default_storage.save(name, ContentFile(pad_copy(data, size))))
        with transaction.atomic():
            study = Study.objects.create(
                name=plan.name,
                real_dataset=plan.real_dataset,
                real_split=plan.real_split,
                synthetic_dataset=plan.synthetic_dataset,
                n_real=plan.n_real,
                n_synthetic=plan.n_synthetic,
                seed=seed,
                copy_size=plan.copy_size,
                copy_format=plan.copy_format,
                copy_bytes=size,
                allow_answer_modification=plan.allow_answer_modification,
                created_by=created_by,
                request_token=plan.request_token,
            )
            Case.objects.bulk_create(
                Case(
                    study=study,
                    image=image,
                    origin=image.origin,
                    fst=image.fst,
                    diagnosis=image.diagnosis,
                    file=name,
                    sha256=hashlib.sha256(pad_copy(data, size)).hexdigest(),
                )
                for image, data, name in zip(chosen, encoded, names, strict=True)
            )
            invite_readers(study, readers)
    except BaseException:
        for name in names:
            default_storage.delete(name)
        raise
    return study


#: Arguments named by the library's ValueErrors, as the fields of the study form.
_PLAN_FIELDS = {
    "n_real": "n_real",
    "n_synthetic": "n_synthetic",
    "seed": "seed",
    "size": "copy_size",
    "format": "copy_format",
    "synthetic": "synthetic_dataset",
}


def _distinct_order_seed(n: int, taken: set[tuple[int, ...]]) -> tuple[int, list[int]]:
    """A fresh seed whose order differs from the orders other readers already have."""
    for _ in range(100):
        seed = new_seed()
        order = reader_order(n, seed)
        if tuple(order) not in taken:
            return seed, order
    return seed, order  # fewer distinct orders than readers (a tiny study): repeats allowed


@transaction.atomic
def invite_readers(study: Study, readers: Iterable[AbstractBaseUser]) -> list[Assignment]:
    """Give each new reader an assignment with their own seeded order and tokens."""
    readers = list(readers)
    not_readers = [u.get_username() for u in readers if not has_role(u, Role.DERMATOLOGIST)]
    if not_readers:
        raise ValidationError({"readers": f"not dermatologists: {', '.join(not_readers)}"})
    if study.status == Study.Status.CLOSED:
        raise ValidationError("the study is closed")
    case_ids = list(study.cases.order_by("id").values_list("id", flat=True))
    taken = {
        tuple(reader_order(len(case_ids), seed))
        for seed in study.assignments.values_list("order_seed", flat=True)
    }
    created = []
    for reader in readers:
        if study.assignments.filter(reader=reader).exists():
            continue
        seed, order = _distinct_order_seed(len(case_ids), taken)
        taken.add(tuple(order))
        assignment = Assignment.objects.create(study=study, reader=reader, order_seed=seed)
        Slot.objects.bulk_create(
            Slot(assignment=assignment, case_id=case_ids[index], position=position)
            for position, index in enumerate(order, start=1)
        )
        created.append(assignment)
    return created


def open_study(study: Study) -> None:
    if study.status != Study.Status.DRAFT:
        raise ValidationError(f"only a draft study can be opened; this one is {study.status}")
    study.status, study.opened_at = Study.Status.OPEN, timezone.now()
    study.save(update_fields=["status", "opened_at"])


def close_study(study: Study) -> None:
    if study.status != Study.Status.OPEN:
        raise ValidationError(f"only an open study can be closed; this one is {study.status}")
    study.status, study.closed_at = Study.Status.CLOSED, timezone.now()
    study.save(update_fields=["status", "closed_at"])


# --- Reading ---------------------------------------------------------------------------------


def assignments_for_reader(user: AbstractBaseUser) -> QuerySet[Assignment]:
    """The reader's assignments in studies that have opened, with their progress."""
    return (
        Assignment.objects.filter(reader=user)
        .exclude(study__status=Study.Status.DRAFT)
        .select_related("study")
        .annotate(answered=Count("answers", filter=Q(answers__complete=True)))
        .order_by("-study__created_at")
    )


def answered_count(assignment: Assignment) -> int:
    return assignment.answers.filter(complete=True).count()


def resume_position(assignment: Assignment) -> int:
    """The first position without a complete answer (the last one when all are answered)."""
    done = set(assignment.answers.filter(complete=True).values_list("case_id", flat=True))
    positions = list(assignment.slots.values_list("position", "case_id"))
    for position, case_id in positions:
        if case_id not in done:
            return position
    return positions[-1][0]


def can_edit(assignment: Assignment, answer: Answer | None) -> bool:
    """Whether the reader may change this answer now."""
    if assignment.study.status != Study.Status.OPEN or assignment.is_submitted:
        return False
    return answer is None or not answer.complete or assignment.study.allow_answer_modification


def save_answer(slot: Slot, values: dict[str, Any], reading_ms: int) -> Answer:
    """Upsert the answer for ``slot`` (autosave and the form both land here; repeats are harmless).

    ``reading_ms`` is the client's running total for the case, so a repeated save does not
    count twice: the stored time only grows to the largest total seen.
    """
    assignment = slot.assignment
    with transaction.atomic():
        answer = (
            Answer.objects.select_for_update().filter(assignment=assignment, case=slot.case).first()
        )
        if not can_edit(assignment, answer):
            raise ValidationError("this answer can no longer be changed")
        if answer is None:
            answer = Answer(assignment=assignment, case=slot.case)
        for name, value in values.items():
            setattr(answer, name, value)
        answer.reading_ms = max(answer.reading_ms, min(max(reading_ms, 0), MAX_READING_MS))
        answer.refresh_complete()
        answer.saves += 1
        answer.full_clean(exclude=["assignment", "case"], validate_unique=False)
        answer.save()
    return answer


@transaction.atomic
def submit_assignment(assignment: Assignment) -> None:
    assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
    if assignment.is_submitted:
        return  # a double submit is harmless
    if assignment.study.status != Study.Status.OPEN:
        raise ValidationError("the study is not open")
    missing = assignment.slots.count() - answered_count(assignment)
    if missing:
        raise ValidationError(f"{missing} case(s) still need an answer")
    assignment.submitted_at = timezone.now()
    assignment.save(update_fields=["submitted_at"])


# --- Admins: progress and export -------------------------------------------------------------


def progress(study: Study) -> list[dict[str, Any]]:
    rows = []
    assignments = study.assignments.select_related("reader").annotate(
        answered=Count("answers", filter=Q(answers__complete=True))
    )
    total = study.cases.count()
    for assignment in assignments:
        rows.append(
            {
                "reader": assignment.reader.get_username(),
                "answered": assignment.answered,
                "total": total,
                "percent": round(100 * assignment.answered / total) if total else 0,
                "submitted_at": assignment.submitted_at,
            }
        )
    return rows


def strata_table(study: Study) -> list[dict[str, Any]]:
    """Cases per FST x diagnosis and origin, to show the two halves are matched."""
    counts = Counter(study.cases.values_list("fst", "diagnosis", "origin"))
    strata = sorted({(fst, dx) for fst, dx, _ in counts})
    return [
        {
            "fst": fst,
            "diagnosis": dx,
            "real": counts[(fst, dx, Origin.REAL)],
            "synthetic": counts[(fst, dx, Origin.SYNTHETIC)],
        }
        for fst, dx in strata
    ]


ANSWER_FIELDS = [*QUESTION_FIELDS, "reading_ms", "complete"]


def export_rows(study: Study) -> list[dict[str, Any]]:
    """One row per reader and position, with the key, the source and the answer joined."""
    answers = {
        (a.assignment_id, a.case_id): a for a in Answer.objects.filter(assignment__study=study)
    }
    rows = []
    slots = (
        Slot.objects.filter(assignment__study=study)
        .select_related("assignment__reader", "case__image__dataset")
        .order_by("assignment__reader__username", "position")
    )
    for slot in slots:
        case, assignment = slot.case, slot.assignment
        answer = answers.get((assignment.pk, case.pk))
        row: dict[str, Any] = {
            "study_id": study.pk,
            "reader": assignment.reader.get_username(),
            "order_seed": assignment.order_seed,
            "position": slot.position,
            "token": slot.token,
            "case_uid": str(case.uid),
            "origin": case.origin,
            "fst": case.fst,
            "diagnosis": case.diagnosis,
            "source_dataset": case.image.dataset.name,
            "source_image_id": case.image.image_id,
            "source_file": case.image.file,
            "copy_sha256": case.sha256,
            "submitted_at": assignment.submitted_at.isoformat() if assignment.submitted_at else "",
        }
        for name in ANSWER_FIELDS:
            row[name] = getattr(answer, name) if answer is not None else None
        row["answered_at"] = answer.updated_at.isoformat() if answer is not None else ""
        row["correct"] = (answer.judgement == case.origin) if answer and answer.judgement else None
        rows.append(row)
    return rows


def export_document(study: Study) -> dict[str, Any]:
    """The whole study for the JSON export: settings, cases with the key, orders, answers."""
    return {
        "study": {
            "id": study.pk,
            "name": study.name,
            "real_dataset": study.real_dataset.name,
            "real_split": study.real_split,
            "synthetic_dataset": study.synthetic_dataset.name,
            "generated_by_run": study.synthetic_dataset.generated_by_id,
            "n_real": study.n_real,
            "n_synthetic": study.n_synthetic,
            "seed": study.seed,
            "copy": {
                "size": study.copy_size,
                "format": study.copy_format,
                "bytes": study.copy_bytes,
            },
            "allow_answer_modification": study.allow_answer_modification,
            "created_at": study.created_at.isoformat(),
            "opened_at": study.opened_at.isoformat() if study.opened_at else None,
            "closed_at": study.closed_at.isoformat() if study.closed_at else None,
        },
        "cases": [
            {
                "uid": str(case.uid),
                "origin": case.origin,
                "fst": case.fst,
                "diagnosis": case.diagnosis,
                "source_dataset": case.image.dataset.name,
                "source_image_id": case.image.image_id,
                "source_file": case.image.file,
                "copy_sha256": case.sha256,
            }
            for case in study.cases.select_related("image__dataset").order_by("id")
        ],
        "readers": [
            {
                "reader": assignment.reader.get_username(),
                "order_seed": assignment.order_seed,
                "order": [str(uid) for uid in assignment.slots.values_list("case__uid", flat=True)],
                "submitted_at": assignment.submitted_at.isoformat()
                if assignment.submitted_at
                else None,
            }
            for assignment in study.assignments.select_related("reader")
        ],
        "answers": export_rows(study),
    }
