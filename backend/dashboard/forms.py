from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from backend.dashboard.models import Project
from backend.datasets.models import Dataset, Origin
from backend.reviews.models import Study
from backend.runs.models import Run
from validation.go_no_go import DEFAULT_TARGETS, RULES, TargetSettings


class ProjectForm(forms.ModelForm):
    """A project: the synthetic set, optional pinned evidence, and one row per target
    (enabled, threshold, fewest observations), defaults from the seed."""

    rule = forms.ChoiceField(
        choices=[
            ("point", "point estimate decides"),
            ("ci", "the whole confidence interval must meet the target"),
        ],
        initial="point",
        help_text="With the CI rule, an interval across the threshold leaves the target pending.",
    )

    class Meta:
        model = Project
        fields = [
            "name",
            "description",
            "synthetic_dataset",
            "evaluation_run",
            "downstream_run",
            "study",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["synthetic_dataset"].queryset = Dataset.objects.filter(
            origin=Origin.SYNTHETIC, status=Dataset.Status.READY
        )
        succeeded = Run.objects.filter(status=Run.Status.SUCCEEDED)
        self.fields["evaluation_run"].queryset = succeeded.filter(kind=Run.Kind.EVALUATE)
        self.fields["downstream_run"].queryset = succeeded.filter(kind=Run.Kind.DOWNSTREAM)
        self.fields["study"].queryset = Study.objects.filter(status=Study.Status.CLOSED)
        current = self.instance.target_settings if self.instance.pk else TargetSettings()
        self.fields["rule"].initial = current.rule
        self.target_rows = []
        for spec in DEFAULT_TARGETS:
            enabled = forms.BooleanField(
                required=False, initial=spec.key not in current.disabled, label=spec.label
            )
            threshold = forms.FloatField(
                initial=current.thresholds.get(spec.key, spec.threshold),
                label=f"{spec.label}: value must be {spec.op}",
            )
            min_n = forms.IntegerField(
                min_value=0,
                max_value=10_000_000,
                initial=current.min_n.get(spec.key, spec.min_n),
                label=f"{spec.label}: fewest observations",
            )
            names = (f"enabled_{spec.key}", f"threshold_{spec.key}", f"min_n_{spec.key}")
            for name, field in zip(names, (enabled, threshold, min_n), strict=True):
                self.fields[name] = field
            self.target_rows.append({"spec": spec, "names": names})

    def bound_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "spec": row["spec"],
                "enabled": self[row["names"][0]],
                "threshold": self[row["names"][1]],
                "min_n": self[row["names"][2]],
            }
            for row in self.target_rows
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        thresholds, min_n, disabled = {}, {}, set()
        for spec in DEFAULT_TARGETS:
            if not data.get(f"enabled_{spec.key}"):
                disabled.add(spec.key)
            value = data.get(f"threshold_{spec.key}")
            if value is not None and value != spec.threshold:
                thresholds[spec.key] = value
            count = data.get(f"min_n_{spec.key}")
            if count is not None and count != spec.min_n:
                min_n[spec.key] = count
        if data.get("rule") not in RULES:
            return data
        try:
            settings = TargetSettings(thresholds, min_n, frozenset(disabled), data["rule"])
        except ValueError as exc:
            field, _, message = str(exc).partition(": ")
            raise ValidationError(f"{field}: {message}") from exc
        self.instance.targets = settings.to_dict()
        return data


class DecisionForm(forms.Form):
    #: The verdict the lead saw; if the evidence changed since, nothing is recorded.
    verdict = forms.ChoiceField(
        choices=[(v, v) for v in ("GO", "NO-GO", "INCOMPLETE")], widget=forms.HiddenInput
    )
    note = forms.CharField(
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why, in your words (stored with the verdict and the whole report).",
    )
