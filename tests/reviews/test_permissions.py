"""Who may open what: readers A and B of one study, reader C of another, ML engineer, lead, anonymous."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from backend.reviews import services
from backend.reviews.models import Answer, Assignment, Study
from tests.accounts.factories import PASSWORD
from tests.reviews.conftest import login
from tests.reviews.factories import complete_answer, make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def studies(reader_a: Any, reader_b: Any, reader_c: Any) -> dict[str, Study]:
    return {
        "main": make_study([reader_a, reader_b], n=2, name="main"),
        "other": make_study([reader_c], n=2, name="other"),
    }


def reader_urls(assignment: Assignment) -> list[str]:
    """Every reader URL of an assignment (GET)."""
    slot = assignment.slots.get(position=1)
    return [
        reverse("reviews:reading", args=[assignment.pk]),
        reverse("reviews:case", args=[assignment.pk, 1]),
        reverse("reviews:case", args=[assignment.pk, 2]),
        slot.get_image_url(),
    ]


def admin_urls(study: Study) -> list[str]:
    return [reverse("reviews:study-list"), reverse("reviews:study-detail", args=[study.pk])]


def test_a_reader_reaches_their_own_cases_and_nobody_else_does(
    studies: dict[str, Study],
    reader_a: Any,
    reader_b: Any,
    reader_c: Any,
    ml_engineer: Any,
    lead: Any,
) -> None:
    own = Assignment.objects.get(reader=reader_a)
    client = login(reader_a)
    assert client.get(reverse("reviews:reading", args=[own.pk])).status_code == 302
    for url in reader_urls(own)[1:]:
        assert client.get(url).status_code == 200, url
    for persona in (reader_b, reader_c, ml_engineer, lead):
        other = login(persona)
        for url in reader_urls(own):
            assert other.get(url).status_code == 404, (persona.username, url)
        response = other.post(reverse("reviews:case", args=[own.pk, 1]), complete_answer())
        assert response.status_code == 404
        assert other.post(reverse("reviews:submit", args=[own.pk])).status_code == 404
    assert not Answer.objects.exists()
    anonymous = Client()
    for url in reader_urls(own):
        response = anonymous.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_reader_sees_only_their_own_studies_in_the_lists(
    studies: dict[str, Study], reader_a: Any, reader_c: Any
) -> None:
    page = login(reader_a).get(reverse("reviews:my-studies")).content.decode()
    assert studies["main"].reader_title in page and studies["other"].reader_title not in page
    home = login(reader_c).get(reverse("dashboard:home")).content.decode()
    assert studies["other"].reader_title in home and studies["main"].reader_title not in home


def test_a_draft_study_is_invisible_to_its_readers(reader_a: Any) -> None:
    study = make_study([reader_a], n=2, open_it=False)
    assignment = study.assignments.get()
    client = login(reader_a)
    for url in reader_urls(assignment):
        assert client.get(url).status_code == 404, url
    assert study.reader_title not in client.get(reverse("reviews:my-studies")).content.decode()


def test_readers_never_reach_the_admin_pages_or_the_key(
    studies: dict[str, Study], reader_a: Any
) -> None:
    study = studies["main"]
    services.close_study(study)
    client = login(reader_a)
    urls = [
        *admin_urls(study),
        reverse("reviews:study-create"),
        reverse("reviews:export-csv", args=[study.pk]),
        reverse("reviews:export-json", args=[study.pk]),
    ]
    for url in urls:
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("reviews:study-action", args=[study.pk, "open"])).status_code == 404


def test_admins_see_progress_per_reader_and_only_engineers_change_studies(
    studies: dict[str, Study], reader_a: Any, ml_engineer: Any, lead: Any
) -> None:
    study = studies["main"]
    assignment = Assignment.objects.get(reader=reader_a)
    login(reader_a).post(reverse("reviews:case", args=[assignment.pk, 1]), complete_answer())
    for persona in (ml_engineer, lead):
        page = login(persona).get(reverse("reviews:study-detail", args=[study.pk])).content.decode()
        assert "reader-a" in page and "reader-b" in page and "1 / 4" in page and "0 / 4" in page
    lead_client = login(lead)
    assert lead_client.get(reverse("reviews:study-create")).status_code == 404
    lead_client.post(reverse("reviews:study-action", args=[study.pk, "close"]))
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    login(ml_engineer).post(reverse("reviews:study-action", args=[study.pk, "close"]))
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED


def test_the_export_exists_only_once_the_study_is_closed(
    studies: dict[str, Study], reader_a: Any, lead: Any
) -> None:
    study = studies["main"]
    client = login(lead)
    csv_url = reverse("reviews:export-csv", args=[study.pk])
    json_url = reverse("reviews:export-json", args=[study.pk])
    assert client.get(csv_url).status_code == 404
    assert client.get(json_url).status_code == 404
    services.close_study(study)
    csv_text = client.get(csv_url).content.decode()
    header = csv_text.splitlines()[0].split(",")
    assert {"reader", "position", "origin", "case_uid", "order_seed", "reading_ms"} <= set(header)
    assert len(csv_text.strip().splitlines()) == 1 + 2 * 4
    document = client.get(json_url).json()
    assert {c["origin"] for c in document["cases"]} == {"real", "synthetic"}
    assert document["study"]["seed"] == study.seed


def test_every_change_needs_a_csrf_token(
    studies: dict[str, Study], reader_a: Any, ml_engineer: Any
) -> None:
    assignment = Assignment.objects.get(reader=reader_a)
    client = login(reader_a, enforce_csrf_checks=True)
    url = reverse("reviews:case", args=[assignment.pk, 1])
    assert client.post(url, complete_answer()).status_code == 403
    assert (
        client.post(url, complete_answer(), headers={"X-Requested-With": "fetch"}).status_code
        == 403
    )
    assert client.post(reverse("reviews:submit", args=[assignment.pk])).status_code == 403
    assert not Answer.objects.exists()
    admin = login(ml_engineer, enforce_csrf_checks=True)
    study = studies["main"]
    assert admin.post(reverse("reviews:study-action", args=[study.pk, "close"])).status_code == 403
    assert admin.post(reverse("reviews:study-create"), {}).status_code == 403
    # With the token from the page, the same save goes through.
    page = client.get(url)
    token = page.cookies["csrftoken"].value
    response = client.post(url, complete_answer(csrfmiddlewaretoken=token))
    assert response.status_code == 302 and Answer.objects.count() == 1


def test_logins_are_locked_per_username_and_address_after_three_failures(
    settings: Any, reader_a: Any, reader_b: Any
) -> None:
    settings.AXES_ENABLED = True
    url = reverse("login")
    client = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(3):
        response = client.post(url, {"username": "reader-a", "password": "wrong"})
    response = client.post(url, {"username": "reader-a", "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    # A colleague behind the same address, and the same user elsewhere, can still log in.
    colleague = Client(REMOTE_ADDR="10.0.0.1")
    assert colleague.post(url, {"username": "reader-b", "password": PASSWORD}).status_code == 302
    elsewhere = Client(REMOTE_ADDR="10.0.0.2")
    assert elsewhere.post(url, {"username": "reader-a", "password": PASSWORD}).status_code == 302
