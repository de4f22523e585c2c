"""The landing page, and the go/no-go dashboard of each project with its exports.

Projects are for ML engineers and leads (readers get 404, as everywhere outside their
studies); setting targets and recording decisions are for leads.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.text import slugify
from django.views.decorators.http import require_POST, require_safe

from backend.accounts.access import data_viewer_required, get_project_for_viewer, lead_required
from backend.accounts.roles import can_view_data
from backend.dashboard.forms import DecisionForm, ProjectForm
from backend.dashboard.models import Decision, Project
from backend.dashboard.pdf import PdfUnavailable, render_pdf
from backend.dashboard.report import build_report, snapshot
from backend.datasets.models import Dataset, Origin
from backend.reviews.views import reader_home_context
from backend.runs.evaluation import latest_evaluation
from backend.runs.models import Run


@require_safe
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The landing page: pipeline overview for ML engineers and leads, studies for readers."""
    if not can_view_data(request.user):
        return render(request, "dashboard/reader_home.html", reader_home_context(request.user))
    latest_synthetic = (
        Dataset.objects.filter(origin=Origin.SYNTHETIC, status=Dataset.Status.READY)
        .order_by("-created_at")
        .first()
    )
    preview = []
    if latest_synthetic is not None:
        preview = list(latest_synthetic.images.order_by("fst", "diagnosis", "id")[:48])
    context = {
        "datasets": Dataset.objects.all()[:10],
        "runs": Run.objects.all()[:10],
        "latest_synthetic": latest_synthetic,
        "preview": preview,
        "evaluation": latest_evaluation(),
        "projects": Project.objects.all()[:10],
    }
    return render(request, "dashboard/home.html", context)


@require_safe
@data_viewer_required
def project_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/project_list.html", {"projects": Project.objects.all()})


@lead_required
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.instance.created_by = request.user
        project = form.save()
        return redirect(project)
    return render(request, "dashboard/project_form.html", {"form": form, "project": None})


@lead_required
def project_edit(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_project_for_viewer(request.user, pk)
    form = ProjectForm(request.POST or None, instance=project)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Targets saved.")
        return redirect(project)
    return render(request, "dashboard/project_form.html", {"form": form, "project": project})


@require_safe
@data_viewer_required
def project(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_project_for_viewer(request.user, pk)
    context = {
        "project": project,
        "report": build_report(project),
        "decisions": project.decisions.select_related("decided_by"),
    }
    context["decision_form"] = DecisionForm(
        initial={"verdict": context["report"]["decision"]["verdict"]}
    )
    return render(request, "dashboard/project.html", context)


@require_POST
@lead_required
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Record the verdict as computed now, with the lead's note and the whole report."""
    project = get_project_for_viewer(request.user, pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors))
        return redirect(project)
    report = build_report(project)
    if report["decision"]["verdict"] != form.cleaned_data["verdict"]:
        messages.error(
            request,
            f"The verdict is now {report['decision']['verdict']}, not the "
            f"{form.cleaned_data['verdict']} you saw: the evidence changed. Review it and record again.",
        )
        return redirect(project)
    decision = Decision.objects.create(
        project=project,
        verdict=report["decision"]["verdict"],
        reasons=report["decision"]["reasons"],
        note=form.cleaned_data["note"],
        snapshot=snapshot(report),
        decided_by=request.user,
    )
    messages.success(request, f"Decision recorded: {decision.verdict}.")
    return redirect(project)


def _export_context(project: Project) -> dict[str, Any]:
    css = (settings.BASE_DIR / "static" / "css" / "fairderm.css").read_text()
    return {
        "project": project,
        "report": build_report(project),
        "decisions": project.decisions.select_related("decided_by"),
        "inline_css": css,
        "export": True,
    }


def _filename(project: Project, extension: str) -> str:
    return f"go-no-go-{slugify(project.name) or project.pk}.{extension}"


@require_safe
@data_viewer_required
def export_html(request: HttpRequest, pk: int) -> HttpResponse:
    """The report as one self-contained HTML file: styles inline, pictures as data URIs."""
    project = get_project_for_viewer(request.user, pk)
    html = render_to_string("dashboard/report_export.html", _export_context(project))
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename(project, "html")}"'
    response["Cache-Control"] = "private, no-store"
    return response


@require_safe
@data_viewer_required
def export_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    """The same report as PDF (WeasyPrint renders the self-contained HTML)."""
    project = get_project_for_viewer(request.user, pk)
    html = render_to_string("dashboard/report_export.html", _export_context(project))
    try:
        pdf = render_pdf(html)
    except PdfUnavailable as exc:
        return HttpResponse(
            f"{exc}; the HTML export works.", status=503, content_type="text/plain; charset=utf-8"
        )
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{_filename(project, "pdf")}"'
    response["Cache-Control"] = "private, no-store"
    return response
