"""A launch form per run kind, built from the kind's config dataclass.

Each field of the dataclass becomes a form field of the matching type (nested dataclasses
such as ``balancing`` become ``balancing.<field>``), initialised from the defaults or from a
preset. Validation is the dataclass's own: ``launch_run`` raises ``ValidationError`` whose
message starts with the bad field's name, and the form shows it beside that field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from backend.datasets.models import Dataset, TrainingSet
from backend.runs.kinds import RunKind
from backend.runs.models import Run
from backend.runs.services import launch_run

SEPARATOR = "."


def _flatten(config: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """``{"a.b": (type hint, value)}`` for every leaf field of a (nested) dataclass instance."""
    hints = typing.get_type_hints(type(config))
    leaves: dict[str, tuple[Any, Any]] = {}
    for field in dataclasses.fields(config):
        if not field.init:
            continue
        value = getattr(config, field.name)
        name = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            leaves.update(_flatten(value, f"{name}{SEPARATOR}"))
        else:
            leaves[name] = (hints[field.name], value)
    return leaves


def _optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


class SequenceField(forms.CharField):
    """A tuple of ints or strings, typed as comma-separated values."""

    def __init__(self, item_type: type, **kwargs: Any):
        self.item_type = item_type
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if text in (None, ""):
            return None if not self.required else []
        items = [part.strip() for part in str(text).split(",") if part.strip()]
        try:
            return [self.item_type(item) for item in items]
        except ValueError:
            raise ValidationError(
                f"enter comma-separated {self.item_type.__name__} values"
            ) from None


def form_field(hint: Any, default: Any) -> forms.Field:
    """The form field for one config field."""
    inner, optional = _optional(hint)
    origin = typing.get_origin(inner)
    common: dict[str, Any] = {"required": False, "initial": default}
    if inner is bool:
        return forms.BooleanField(**common)
    if inner is int:
        return forms.IntegerField(**common)
    if inner is float:
        return forms.FloatField(**common)
    if inner is str:
        return forms.CharField(**{**common, "empty_value": ""})
    if origin in (tuple, list):
        item_type = next((a for a in typing.get_args(inner) if a is not Ellipsis), str)
        return SequenceField(
            item_type,
            **common,
            help_text="comma-separated" + (", blank for none" if optional else ""),
        )
    return forms.JSONField(**common)


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(SEPARATOR)
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


class LaunchForm(forms.Form):
    """Launch a run of ``kind``: name, inputs, and every field of its config."""

    name = forms.CharField(required=False, max_length=200)
    datasets = forms.ModelMultipleChoiceField(
        queryset=Dataset.objects.filter(status=Dataset.Status.READY), required=False
    )
    parents = forms.ModelMultipleChoiceField(
        queryset=Run.objects.filter(status=Run.Status.SUCCEEDED), required=False
    )
    training_sets = forms.ModelMultipleChoiceField(
        queryset=TrainingSet.objects.all(), required=False
    )

    def __init__(self, *args: Any, kind: RunKind, preset: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.kind = kind
        base = kind.preset(preset) if preset else kind.config_type()
        self.config_fields = _flatten(base)
        for name, (hint, value) in self.config_fields.items():
            nullable = _optional(hint)[1]
            field = form_field(hint, value)
            field.label = name
            if not nullable and not isinstance(field, forms.BooleanField | forms.CharField):
                field.required = True
            self.fields[f"config{SEPARATOR}{name}"] = field

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, (hint, default) in self.config_fields.items():
            value = self.cleaned_data.get(f"config{SEPARATOR}{name}")
            if value is None and not _optional(hint)[1]:
                value = default
            _set(data, name, value)
        return data

    def launch(self, user: Any) -> Run | None:
        """Launch through ``launch_run``; on a ValidationError attach it to the right field."""
        try:
            return launch_run(
                kind=self.kind.kind,
                config=self.config(),
                datasets=self.cleaned_data["datasets"],
                parents=self.cleaned_data["parents"],
                training_sets=self.cleaned_data["training_sets"],
                user=user,
                name=self.cleaned_data["name"],
            )
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                for message in messages:
                    self.add_error(self._field_for(key, message), message)
            return None

    def _field_for(self, key: str, message: str) -> str | None:
        if key in ("datasets", "parents", "training_sets", "name"):
            return key
        if key == "config":
            named = message.split(":", 1)[0].strip()
            if f"config{SEPARATOR}{named}" in self.fields:
                return f"config{SEPARATOR}{named}"
        return None
