"""Bad input to the run launch forms: every field of every kind, each with values it must refuse.

The admin's launch form has a field per config field (``backend/runs/forms.py``). Each field
in turn gets values of the wrong kind or out of every range a config allows; the rest of the
form keeps its defaults. The form must come back invalid with the error beside that very
field (not as a page-level error, and not as a 500), with no run stored and no task sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from django import forms

from backend.runs.forms import LaunchForm, SequenceField
from backend.runs.kinds import available_kinds, get_kind
from backend.runs.models import Run

pytestmark = pytest.mark.django_db

#: Values no field of that form type may take, whatever the kind.
BAD_VALUES: dict[type, tuple[str, ...]] = {
    forms.IntegerField: ("1e308", "99999999999999999999999", "-1", "seven"),
    forms.FloatField: ("nan", "inf", "-1", "1e400"),
    SequenceField: ("VII, 7", ",,\x01"),
    forms.CharField: ("\x00",),
    forms.JSONField: ("{", "NaN"),
}


def default_data(form: LaunchForm) -> dict[str, Any]:
    """The form as rendered, posted back unchanged (checkboxes only when ticked)."""
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = field.prepare_value(value)
    return data


def bad_values(field: forms.Field) -> tuple[str, ...]:
    # FloatField is a subclass of IntegerField: test it first.
    for form_type in (SequenceField, forms.FloatField, forms.IntegerField, forms.JSONField):
        if isinstance(field, form_type):
            return BAD_VALUES[form_type]
    if isinstance(field, forms.CharField):
        return BAD_VALUES[forms.CharField]
    return ()  # a checkbox: every value is true or false


@pytest.mark.parametrize("kind", sorted(spec.kind for spec in available_kinds()))
def test_every_launch_form_field_refuses_bad_values_beside_itself(
    kind: str, ml_engineer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.celery import app

    sent: list[str] = []
    monkeypatch.setattr(app, "send_task", lambda name, *args, **kwargs: sent.append(name))
    spec = get_kind(kind)
    defaults = default_data(LaunchForm(kind=spec))
    checked = 0
    for name, field in LaunchForm(kind=spec).fields.items():
        if not name.startswith("config."):
            continue
        for value in bad_values(field):
            form = LaunchForm({**defaults, name: value}, kind=spec)
            run = form.launch(ml_engineer) if form.is_valid() else None
            assert run is None, f"{kind}: {name}={value!r} launched run #{run and run.pk}"
            assert form.errors.get(name), (
                f"{kind}: {name}={value!r} is refused, but not beside the field: "
                f"{form.errors.as_data()}"
            )
            checked += 1
    assert checked >= 10, f"only {checked} bad values tried for {kind}"
    assert not Run.objects.exists() and sent == []
