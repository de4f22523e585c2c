"""Go/no-go projects: which synthetic set is being judged, against which targets, and the
decisions leads recorded.

A project names the synthetic set under judgement. Its evidence (the evaluate run, the
downstream run, the reader study) is either pinned or, when left blank, the newest finished
one about that set. Targets are the seed's (``validation.go_no_go.DEFAULT_TARGETS``) with
this project's overrides, stored as ``TargetSettings`` JSON and validated on save.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

from validation.go_no_go import TargetSettings


def validate_targets(value: dict) -> None:
    try:
        TargetSettings.from_dict(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"targets: {exc}") from exc


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    synthetic_dataset = models.ForeignKey(
        "datasets.Dataset",
        on_delete=models.PROTECT,
        related_name="go_no_go_projects",
        help_text="The synthetic set being judged.",
    )
    evaluation_run = models.ForeignKey(
        "runs.Run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Blank: the newest succeeded evaluate run of this synthetic set.",
    )
    downstream_run = models.ForeignKey(
        "runs.Run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Blank: the newest succeeded downstream run that used this synthetic set.",
    )
    study = models.ForeignKey(
        "reviews.Study",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Blank: the newest closed reader study of this synthetic set.",
    )
    targets = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_targets],
        help_text="validation.go_no_go.TargetSettings as JSON: thresholds, min_n, disabled, rule.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("dashboard:project", args=[self.pk])

    @property
    def target_settings(self) -> TargetSettings:
        return TargetSettings.from_dict(self.targets)


class Decision(models.Model):
    """A go/no-go decision a lead recorded: the verdict and the whole report at that moment."""

    class Verdict(models.TextChoices):
        GO = "GO", "GO"
        NO_GO = "NO-GO", "NO-GO"
        INCOMPLETE = "INCOMPLETE", "INCOMPLETE"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="decisions")
    verdict = models.CharField(max_length=12, choices=Verdict.choices)
    reasons = models.JSONField(default=list)
    note = models.TextField(blank=True, max_length=4000, help_text="The lead's own words.")
    snapshot = models.JSONField(
        default=dict, help_text="Every target row, the lineage and the failure modes, as shown."
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.project}: {self.verdict} ({self.created_at:%Y-%m-%d})"
