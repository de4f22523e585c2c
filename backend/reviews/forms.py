from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from backend.accounts.roles import Role
from backend.datasets.models import Dataset, Image, Origin
from backend.reviews.models import QUESTION_FIELDS, Answer, Study

YES_NO = [("True", "Yes"), ("False", "No")]


def dermatologists() -> Any:
    return (
        get_user_model().objects.filter(groups__name=Role.DERMATOLOGIST.value).order_by("username")
    )


class StudyForm(forms.Form):
    """The study builder: a real split, a synthetic set, sizes, readers and encoding."""

    name = forms.CharField(max_length=200, help_text="Seen by study admins only.")
    real_dataset = forms.ModelChoiceField(
        Dataset.objects.filter(origin=Origin.REAL, status=Dataset.Status.READY)
    )
    real_split = forms.ChoiceField(choices=Image.Split.choices, initial=Image.Split.TEST)
    synthetic_dataset = forms.ModelChoiceField(
        Dataset.objects.filter(origin=Origin.SYNTHETIC, status=Dataset.Status.READY)
    )
    n_real = forms.IntegerField(min_value=1, max_value=10_000, initial=50)
    n_synthetic = forms.IntegerField(min_value=1, max_value=10_000, initial=50)
    seed = forms.IntegerField(
        min_value=0, max_value=2**62, required=False, help_text="Empty for a random seed."
    )
    readers = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    copy_size = forms.IntegerField(min_value=16, max_value=4096, initial=256)
    copy_format = forms.ChoiceField(choices=Study.CopyFormat.choices, initial="PNG")
    allow_answer_modification = forms.BooleanField(required=False, initial=True)
    # A fresh token per rendered form: a double click or a resubmit makes one study, not two.
    request_token = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["readers"].queryset = dermatologists()


class InviteForm(forms.Form):
    readers = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(), widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args: Any, study: Study, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["readers"].queryset = dermatologists().exclude(study_assignments__study=study)


class AnswerForm(forms.ModelForm):
    """One case's questions. Every field may be empty on an autosave; completeness is tracked."""

    judgement = forms.ChoiceField(
        choices=Answer.Judgement.choices, widget=forms.RadioSelect, required=False
    )
    confidence = forms.TypedChoiceField(
        choices=[(i, str(i)) for i in range(1, 6)],
        coerce=int,
        empty_value=None,
        widget=forms.RadioSelect,
        required=False,
    )
    realism = forms.TypedChoiceField(
        choices=[(i, str(i)) for i in range(1, 8)],
        coerce=int,
        empty_value=None,
        widget=forms.RadioSelect,
        required=False,
    )
    asymmetry_realistic = forms.NullBooleanField(
        required=False, widget=forms.RadioSelect(choices=YES_NO)
    )
    border_realistic = forms.NullBooleanField(
        required=False, widget=forms.RadioSelect(choices=YES_NO)
    )
    colour_realistic = forms.NullBooleanField(
        required=False, widget=forms.RadioSelect(choices=YES_NO)
    )
    diameter_realistic = forms.NullBooleanField(
        required=False, widget=forms.RadioSelect(choices=YES_NO)
    )
    asymmetry_score = forms.IntegerField(min_value=0, max_value=2, required=False)
    border_score = forms.IntegerField(min_value=0, max_value=8, required=False)
    colours_score = forms.IntegerField(min_value=1, max_value=6, required=False)
    structures_score = forms.IntegerField(min_value=1, max_value=5, required=False)
    comment = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
    reading_ms = forms.IntegerField(min_value=0, required=False, widget=forms.HiddenInput)

    class Meta:
        model = Answer
        fields = QUESTION_FIELDS

    def answer_values(self) -> dict[str, Any]:
        return {name: self.cleaned_data.get(name) for name in self.Meta.fields} | {
            "judgement": self.cleaned_data.get("judgement") or "",
            "comment": self.cleaned_data.get("comment") or "",
        }
