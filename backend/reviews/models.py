"""Blinded reader studies: real and synthetic cases, per-reader assignments, answers.

What a reader may see is narrow on purpose. A reader reaches a case only through a ``Slot``:
its position in that reader's order (shown as "Case n") and a random token that names the
image for that reader alone. ``Case.origin`` (the key), the source image, the datasets and
the seeds stay on the server; the study admins get them in the export once the study closes.
"""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from backend.datasets.models import Dataset, Image, Origin

#: The reader's answers to one case, in the order the reading page asks them.
QUESTION_FIELDS = [
    "judgement",
    "confidence",
    "realism",
    "asymmetry_realistic",
    "border_realistic",
    "colour_realistic",
    "diameter_realistic",
    "asymmetry_score",
    "border_score",
    "colours_score",
    "structures_score",
    "comment",
]


def new_token() -> str:
    """A random 128-bit token, URL-safe."""
    return secrets.token_urlsafe(16)


def new_seed() -> int:
    return secrets.randbits(62)


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    class CopyFormat(models.TextChoices):
        PNG = "PNG", "PNG (lossless)"
        JPEG = "JPEG", "JPEG"

    name = models.CharField(max_length=200, help_text="Seen by study admins only.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    real_dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="real_studies")
    real_split = models.CharField(max_length=8, choices=Image.Split.choices, blank=True)
    synthetic_dataset = models.ForeignKey(
        Dataset, on_delete=models.PROTECT, related_name="synthetic_studies"
    )
    n_real = models.PositiveIntegerField(default=50)
    n_synthetic = models.PositiveIntegerField(default=50)
    seed = models.BigIntegerField(default=new_seed, help_text="Seed of the stratified draw.")
    copy_size = models.PositiveIntegerField(default=256, help_text="Side of every study image.")
    copy_format = models.CharField(max_length=4, choices=CopyFormat.choices, default="PNG")
    copy_bytes = models.PositiveIntegerField(
        default=0, help_text="The one byte size every study image is padded to."
    )
    allow_answer_modification = models.BooleanField(
        default=True,
        help_text="Readers may change saved answers until they submit the study; "
        "otherwise each answer is final once complete.",
    )
    simulated_readers = models.BooleanField(
        default=False,
        editable=False,
        help_text="Answered by simulated readers (the demo): its figures never count "
        "towards a target.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="created_studies",
    )
    request_token = models.UUIDField(
        null=True,
        blank=True,
        unique=True,
        editable=False,
        help_text="The builder form's one-time token: submitting the form twice makes one study.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("reviews:study-detail", args=[self.pk])

    @property
    def reader_title(self) -> str:
        """What readers see instead of the name (which may mention datasets or models)."""
        return f"Reader study {self.pk}"

    @property
    def case_count(self) -> int:
        return self.n_real + self.n_synthetic


class Case(models.Model):
    """One study image: a re-encoded copy of a real or synthetic source image."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="cases")
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="study_cases")
    origin = models.CharField(max_length=16, choices=Origin.choices, help_text="The key.")
    fst = models.PositiveSmallIntegerField(null=True)
    diagnosis = models.CharField(max_length=32)
    file = models.CharField(max_length=200, help_text="Name of the copy in default storage.")
    sha256 = models.CharField(max_length=64, help_text="Of the copy as served.")

    class Meta:
        ordering = ["study", "id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "image"], name="unique_image_per_study")
        ]

    def __str__(self) -> str:
        return f"{self.study_id}:{self.uid}"


class Assignment(models.Model):
    """One reader's part of a study: their order of the cases, and whether they submitted."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments")
    reader = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_assignments"
    )
    order_seed = models.BigIntegerField(
        help_text="validation.reader_study.reader_order(n, seed) over the cases by id gives "
        "the slots' positions."
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "reader__username"]
        constraints = [
            models.UniqueConstraint(fields=["study", "reader"], name="one_assignment_per_reader")
        ]

    def __str__(self) -> str:
        return f"{self.study} / {self.reader}"

    def get_absolute_url(self) -> str:
        return reverse("reviews:reading", args=[self.pk])

    @property
    def is_submitted(self) -> bool:
        return self.submitted_at is not None


class Slot(models.Model):
    """A case at a position of one reader's order, named for that reader by a random token."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="slots")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="slots")
    position = models.PositiveIntegerField(help_text="1-based: the reader sees 'Case n'.")
    token = models.CharField(max_length=32, unique=True, default=new_token)

    class Meta:
        ordering = ["assignment", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["assignment", "position"], name="unique_position_per_assignment"
            ),
            models.UniqueConstraint(
                fields=["assignment", "case"], name="unique_case_per_assignment"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.assignment} case {self.position}"

    def get_image_url(self) -> str:
        return reverse("reviews:image", args=[self.token])


class Answer(models.Model):
    """A reader's answer for one case; saved (upserted) as they go."""

    class Judgement(models.TextChoices):
        REAL = "real", "Real"
        SYNTHETIC = "synthetic", "Synthetic"

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="answers")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="answers")
    judgement = models.CharField(max_length=16, choices=Judgement.choices, blank=True)
    confidence = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    realism = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(7)]
    )
    # "Realistic for this lesion type?" per ABCD criterion.
    asymmetry_realistic = models.BooleanField(null=True, blank=True)
    border_realistic = models.BooleanField(null=True, blank=True)
    colour_realistic = models.BooleanField(null=True, blank=True)
    diameter_realistic = models.BooleanField(null=True, blank=True)
    # Optional dermoscopic ABCD scores (Stolz).
    asymmetry_score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(2)]
    )
    border_score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(8)]
    )
    colours_score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(6)]
    )
    structures_score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    comment = models.TextField(blank=True, max_length=2000)
    reading_ms = models.PositiveIntegerField(
        default=0, help_text="Time the case was on screen, summed over visits."
    )
    complete = models.BooleanField(default=False, help_text="Every required question answered.")
    saves = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    REQUIRED = (
        "judgement",
        "confidence",
        "realism",
        "asymmetry_realistic",
        "border_realistic",
        "colour_realistic",
        "diameter_realistic",
    )

    class Meta:
        ordering = ["assignment", "case"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "case"], name="one_answer_per_case"),
        ]

    def __str__(self) -> str:
        return f"{self.assignment} {self.case_id}"

    def refresh_complete(self) -> bool:
        self.complete = all(getattr(self, name) not in (None, "") for name in self.REQUIRED)
        return self.complete
