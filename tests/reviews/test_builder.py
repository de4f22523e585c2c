"""The study builder and the study page, as an ML engineer uses them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from backend.datasets.models import Image
from backend.reviews.models import Study
from tests.reviews.conftest import login
from tests.reviews.factories import make_study, real_dataset, synthetic_dataset

pytestmark = pytest.mark.django_db


def test_an_engineer_builds_opens_invites_and_closes_a_study(
    ml_engineer: Any, reader_a: Any, reader_b: Any
) -> None:
    real, synthetic = real_dataset(per_stratum=2), synthetic_dataset(per_stratum=2)
    client = login(ml_engineer)
    form = client.get(reverse("reviews:study-create")).content.decode()
    assert real.name in form and synthetic.name in form and "reader-a" in form
    assert 'value="50"' in form  # the default 50 + 50
    data = {
        "name": "pilot",
        "real_dataset": real.pk,
        "real_split": Image.Split.TEST,
        "synthetic_dataset": synthetic.pk,
        "n_real": 4,
        "n_synthetic": 4,
        "readers": [reader_a.pk],
        "copy_size": 32,
        "copy_format": "PNG",
        "allow_answer_modification": "on",
        "request_token": form_token(form),
    }
    too_many = client.post(reverse("reviews:study-create"), data | {"n_real": 9, "n_synthetic": 9})
    assert too_many.status_code == 200 and "can be matched" in too_many.content.decode()
    assert not Study.objects.exists()
    response = client.post(reverse("reviews:study-create"), data)
    study = Study.objects.get()
    assert response.status_code == 302 and response["Location"] == study.get_absolute_url()
    assert study.status == Study.Status.DRAFT and study.cases.count() == 8
    action = reverse("reviews:study-action", args=[study.pk, "invite"])
    client.post(action, {"readers": [reader_b.pk]})
    assert study.assignments.count() == 2
    client.post(reverse("reviews:study-action", args=[study.pk, "open"]))
    page = client.get(study.get_absolute_url()).content.decode()
    assert "reader-b" in page and "0 / 8" in page and 'id="close-study"' in page
    assert "export.csv" not in page
    client.post(reverse("reviews:study-action", args=[study.pk, "close"]))
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
    assert "export.csv" in client.get(study.get_absolute_url()).content.decode()


def form_token(html: str) -> str:
    """The builder form's one-time token, as the browser would send it back."""
    found = re.search(r'name="request_token" value="([0-9a-f-]{36})"', html)
    assert found, "the builder form has no request token"
    return found.group(1)


def test_the_same_builder_form_sent_twice_makes_one_study(ml_engineer: Any) -> None:
    real, synthetic = real_dataset(per_stratum=2), synthetic_dataset(per_stratum=2)
    client = login(ml_engineer)
    first_form = client.get(reverse("reviews:study-create")).content.decode()
    second_form = client.get(reverse("reviews:study-create")).content.decode()
    assert form_token(first_form) != form_token(second_form)  # one token per rendered form
    data = {
        "name": "double click",
        "real_dataset": real.pk,
        "real_split": Image.Split.TEST,
        "synthetic_dataset": synthetic.pk,
        "n_real": 2,
        "n_synthetic": 2,
        "copy_size": 32,
        "copy_format": "PNG",
        "request_token": form_token(first_form),
    }
    one = client.post(reverse("reviews:study-create"), data)
    two = client.post(reverse("reviews:study-create"), data)
    study = Study.objects.get()
    assert one["Location"] == two["Location"] == study.get_absolute_url()
    assert study.cases.count() == 4
    # A second form (a new token) is a second study.
    client.post(reverse("reviews:study-create"), data | {"request_token": form_token(second_form)})
    assert Study.objects.count() == 2


def test_the_django_admin_audits_studies_without_changing_their_status(reader_a: Any) -> None:
    from tests.accounts.factories import UserFactory

    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    study = make_study([reader_a], n=2)
    client = login(admin)
    for name in ("study", "answer", "slot"):
        assert client.get(reverse(f"admin:reviews_{name}_changelist")).status_code == 200
    page = client.get(reverse("admin:reviews_study_change", args=[study.pk])).content.decode()
    assert 'name="status"' not in page and 'name="name"' in page
