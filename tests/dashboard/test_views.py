"""The go/no-go pages by persona: who reads, who sets targets, who decides; the exports."""

from __future__ import annotations

import io
import re
from typing import Any

import PIL.ImageFile
import pytest
from django.urls import reverse
from pypdf import PdfReader

from backend.dashboard.models import Decision, Project
from tests.dashboard.factories import downstream_results, evaluation_result, make_world
from tests.reviews.conftest import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(reader_a: Any, reader_b: Any) -> Any:
    return make_world(
        [reader_a, reader_b],
        evaluation=evaluation_result(fid=45.0),
        downstream=downstream_results(),
        name="melanoma-v2",
    )


def test_ml_engineer_reads_the_dashboard_but_cannot_decide(world: Any, ml_engineer: Any) -> None:
    client = login(ml_engineer)
    page = client.get(world.project.get_absolute_url()).content.decode()
    assert 'id="verdict-value">NO-GO<' in page
    assert re.search(r'id="target-fid" data-status="fail"', page)
    assert 'id="failure-modes"' in page and "FID 45.00 &gt; 30" in page
    assert "decide-form" not in page and "Targets and sources" not in page
    url = reverse("dashboard:project-decide", args=[world.project.pk])
    assert client.post(url, {"note": "ship it", "verdict": "NO-GO"}).status_code == 404
    assert not Decision.objects.exists()


def test_lead_records_a_decision_with_the_whole_report(world: Any, lead: Any) -> None:
    client = login(lead)
    page = client.get(world.project.get_absolute_url()).content.decode()
    assert "Record NO-GO" in page
    url = reverse("dashboard:project-decide", args=[world.project.pk])
    response = client.post(url, {"note": "FID far too high; retrain.", "verdict": "NO-GO"})
    assert response.status_code == 302
    decision = Decision.objects.get()
    assert (decision.verdict, decision.decided_by, decision.note) == (
        "NO-GO",
        lead,
        "FID far too high; retrain.",
    )
    assert decision.reasons == ["FID: 45.00 misses < 20.00"]
    assert {row["key"] for row in decision.snapshot["targets"]} >= {"fid", "realism"}
    history = client.get(world.project.get_absolute_url()).content.decode()
    assert "FID far too high; retrain." in history
    assert client.post(url, {"note": "x" * 4001, "verdict": "NO-GO"}).status_code == 302
    assert Decision.objects.count() == 1  # the too-long note was refused
    # The lead saw GO, but the evidence says NO-GO now: nothing is recorded.
    response = client.post(url, {"note": "looks fine", "verdict": "GO"}, follow=True)
    assert "The verdict is now NO-GO, not the GO you saw" in response.content.decode()
    assert Decision.objects.count() == 1


def test_lead_sets_targets_and_a_bad_value_changes_nothing(world: Any, lead: Any) -> None:
    client = login(lead)
    url = reverse("dashboard:project-edit", args=[world.project.pk])
    form = client.get(url).context["form"]
    data = {
        name: field.initial if not callable(field.initial) else field.initial()
        for name, field in form.fields.items()
    }
    data = {k: v for k, v in data.items() if v is not None and v is not False}
    data |= {"name": world.project.name, "synthetic_dataset": world.synthetic.pk}
    data |= {"threshold_fid": 50, "rule": "point"}
    data.pop("enabled_is", None)
    response = client.post(url, data)
    assert response.status_code == 302, response.context["form"].errors
    world.project.refresh_from_db()
    assert world.project.targets["thresholds"] == {"fid": 50.0}
    assert world.project.targets["disabled"] == ["is"]
    page = client.get(world.project.get_absolute_url()).content.decode()
    assert 'id="target-fid" data-status="fail"' not in page
    assert 'id="target-is"' not in page
    before = world.project.targets
    bad = client.post(url, data | {"threshold_fid": "inf", "min_n_fid": -3})
    assert bad.status_code == 200
    assert set(bad.context["form"].errors) >= {"threshold_fid", "min_n_fid"}
    world.project.refresh_from_db()
    assert world.project.targets == before


def test_lead_creates_a_project(world: Any, lead: Any) -> None:
    client = login(lead)
    url = reverse("dashboard:project-create")
    form = client.get(url).context["form"]
    data = {
        name: field.initial
        for name, field in form.fields.items()
        if field.initial is not None and field.initial is not False
    }
    data |= {"name": "second look", "synthetic_dataset": world.synthetic.pk}
    response = client.post(url, data)
    project = Project.objects.get(name="second look")
    assert response["Location"] == project.get_absolute_url()
    assert project.created_by == lead and project.targets["disabled"] == []


def test_html_export_is_one_self_contained_file(world: Any, ml_engineer: Any) -> None:
    response = login(ml_engineer).get(
        reverse("dashboard:project-export-html", args=[world.project.pk])
    )
    assert response["Content-Disposition"] == 'attachment; filename="go-no-go-melanoma-v2.html"'
    html = response.content.decode()
    assert "NO-GO" in html and "Fréchet Inception Distance" in html
    # nothing to fetch: no scripts, no stylesheets or images from elsewhere
    assert "<script" not in html and "<link" not in html
    sources = re.findall(r'src="([^"]+)"', html)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r'href="/', html)
    assert "--accent" in html  # the site's stylesheet is inlined


def test_pdf_export(world: Any, lead: Any) -> None:
    response = login(lead).get(reverse("dashboard:project-export-pdf", args=[world.project.pk]))
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert "Go/no-go report: melanoma-v2" in text
    assert "NO-GO" in text and "FID too high" in text
    # importing WeasyPrint turns on PIL's truncated-image leniency; the export turns it off again
    assert PIL.ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_api_report_matches_the_page(world: Any, lead: Any, reader_a: Any) -> None:
    client = login(lead)
    data = client.get(f"/api/projects/{world.project.pk}/report/").json()
    assert data["decision"]["verdict"] == "NO-GO"
    rows = {row["key"]: row for row in data["targets"]}
    assert rows["fid"]["status"] == "fail" and rows["fid"]["definition"]
    assert data["reader_study"]["n_readers"] == 2
    listed = client.get("/api/projects/").json()
    assert [p["name"] for p in listed["results"]] == ["melanoma-v2"]
    assert login(reader_a).get(f"/api/projects/{world.project.pk}/report/").status_code == 403
