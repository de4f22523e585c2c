"""Pages of reader studies: the builder and progress for admins, the reading pages for readers.

Every reader view reaches its objects through the accessors in backend.accounts.access, which
return 404 for anything that is not the reader's own. Nothing a reader can load names the
case's origin, its source, a dataset, a model or a seed.
"""

from __future__ import annotations

import csv
import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from backend.accounts.access import (
    data_viewer_required,
    get_assignment_for_reader,
    get_slot_for_reader,
    get_study_for_admin,
    launcher_required,
)
from backend.http import private_bytes
from backend.reviews import services
from backend.reviews.forms import AnswerForm, InviteForm, StudyForm
from backend.reviews.models import Answer, Study

# --- Readers ---------------------------------------------------------------------------------


@require_safe
@login_required
def my_studies(request: HttpRequest) -> HttpResponse:
    assignments = services.assignments_for_reader(request.user)
    return render(request, "reviews/my_studies.html", {"assignments": assignments})


@require_safe
@login_required
def reading(request: HttpRequest, pk: int) -> HttpResponse:
    """Resume where the reader left off, or the end page once there is nothing to do."""
    assignment = get_assignment_for_reader(request.user, pk)
    if assignment.is_submitted or assignment.study.status != Study.Status.OPEN:
        return render(request, "reviews/finished.html", {"assignment": assignment})
    position = services.resume_position(assignment)
    return redirect("reviews:case", pk=assignment.pk, position=position)


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


@login_required
def case(request: HttpRequest, pk: int, position: int) -> HttpResponse:
    assignment = get_assignment_for_reader(request.user, pk)
    if assignment.is_submitted or assignment.study.status != Study.Status.OPEN:
        if _wants_json(request):
            return JsonResponse({"saved": False, "error": "This study is not open."}, status=409)
        return redirect("reviews:reading", pk=assignment.pk)
    slot = assignment.slots.select_related("case").filter(position=position).first()
    if slot is None:
        raise Http404
    total = assignment.slots.count()
    if request.method == "POST":
        form = AnswerForm(request.POST)
        if form.is_valid():
            try:
                answer = services.save_answer(
                    slot, form.answer_values(), form.cleaned_data.get("reading_ms") or 0
                )
            except ValidationError as exc:
                if _wants_json(request):
                    return JsonResponse({"saved": False, "error": exc.messages[0]}, status=409)
                messages.error(request, exc.messages[0])
                return redirect("reviews:case", pk=assignment.pk, position=position)
            if _wants_json(request):
                return JsonResponse(
                    {
                        "saved": True,
                        "complete": answer.complete,
                        "answered": services.answered_count(assignment),
                        "total": total,
                    }
                )
            step = {"next": 1, "previous": -1}.get(request.POST.get("go", ""), 0)
            target = min(max(position + step, 1), total)
            return redirect("reviews:case", pk=assignment.pk, position=target)
        if _wants_json(request):
            return JsonResponse({"saved": False, "errors": form.errors.get_json_data()}, status=400)
    # Looked up only for the page: an autosave reads (and locks) it in save_answer.
    answer = Answer.objects.filter(assignment=assignment, case=slot.case).first()
    if request.method != "POST":
        form = AnswerForm(
            instance=answer, initial={"reading_ms": answer.reading_ms if answer else 0}
        )
    context = {
        "assignment": assignment,
        "study": assignment.study,
        "slot": slot,
        "form": form,
        "position": position,
        "total": total,
        "answered": services.answered_count(assignment),
        "editable": services.can_edit(assignment, answer),
        "reading_ms": answer.reading_ms if answer else 0,
        "previous": position - 1 if position > 1 else None,
        "next": position + 1 if position < total else None,
    }
    return render(request, "reviews/case.html", context)


@login_required
@require_POST
def submit(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = get_assignment_for_reader(request.user, pk)
    try:
        services.submit_assignment(assignment)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
        return redirect(
            "reviews:case", pk=assignment.pk, position=services.resume_position(assignment)
        )
    return redirect("reviews:reading", pk=assignment.pk)


@require_safe
@login_required
def image(request: HttpRequest, token: str) -> HttpResponse:
    """One study image, by the reader's own token; every image gets the same headers."""
    slot = get_slot_for_reader(request.user, token)
    try:
        with default_storage.open(slot.case.file, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise Http404 from None
    return private_bytes(data, services.CONTENT_TYPES[slot.assignment.study.copy_format])


# --- Study admins ----------------------------------------------------------------------------


@require_safe
@data_viewer_required
def study_list(request: HttpRequest) -> HttpResponse:
    return render(request, "reviews/study_list.html", {"studies": Study.objects.all()})


@launcher_required
def study_create(request: HttpRequest) -> HttpResponse:
    form = StudyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        made = Study.objects.filter(request_token=data["request_token"]).first()
        if made is not None:  # the same form sent again (a double click, a reload)
            return redirect(made)
        plan = services.StudyPlan(
            name=data["name"],
            real_dataset=data["real_dataset"],
            real_split=data["real_split"],
            synthetic_dataset=data["synthetic_dataset"],
            n_real=data["n_real"],
            n_synthetic=data["n_synthetic"],
            seed=data["seed"],
            copy_size=data["copy_size"],
            copy_format=data["copy_format"],
            allow_answer_modification=data["allow_answer_modification"],
            request_token=data["request_token"],
        )
        try:
            study = services.create_study(plan, data["readers"], created_by=request.user)
        except IntegrityError:
            # Both submits got past the check at once; the other one made the study.
            return redirect(get_object_or_404(Study, request_token=data["request_token"]))
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"Study created with {study.case_count} cases.")
            return redirect(study)
    return render(request, "reviews/study_form.html", {"form": form})


def _add_errors(form: Any, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@require_safe
@data_viewer_required
def study_detail(request: HttpRequest, pk: int) -> HttpResponse:
    study = get_study_for_admin(request.user, pk)
    context = {
        "study": study,
        "progress": services.progress(study),
        "strata": services.strata_table(study),
        "invite_form": InviteForm(study=study),
    }
    return render(request, "reviews/study_detail.html", context)


@launcher_required
@require_POST
def study_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    study = get_study_for_admin(request.user, pk)
    try:
        if action == "open":
            services.open_study(study)
        elif action == "close":
            services.close_study(study)
        elif action == "invite":
            form = InviteForm(request.POST, study=study)
            if not form.is_valid():
                raise ValidationError("pick at least one dermatologist to invite")
            services.invite_readers(study, form.cleaned_data["readers"])
        else:
            raise Http404
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    return redirect(study)


def _closed_study(request: HttpRequest, pk: int) -> Study:
    """The key leaves the server only after the study closes: 404 before that."""
    study = get_study_for_admin(request.user, pk)
    if study.status != Study.Status.CLOSED:
        raise Http404
    return study


@require_safe
@data_viewer_required
def export_csv(request: HttpRequest, pk: int) -> HttpResponse:
    study = _closed_study(request, pk)
    rows = services.export_rows(study)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="reader-study-{study.pk}.csv"'
    response["Cache-Control"] = "private, no-store"
    columns = list(rows[0]) if rows else ["reader", "position", "case_uid", "origin"]
    writer = csv.DictWriter(response, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return response


@require_safe
@data_viewer_required
def export_json(request: HttpRequest, pk: int) -> HttpResponse:
    study = _closed_study(request, pk)
    response = HttpResponse(
        json.dumps(services.export_document(study), cls=DjangoJSONEncoder, indent=2),
        content_type="application/json",
    )
    response["Content-Disposition"] = f'attachment; filename="reader-study-{study.pk}.json"'
    response["Cache-Control"] = "private, no-store"
    return response


def reader_home_context(user: Any) -> dict[str, Any]:
    """For the landing page of readers (backend.dashboard)."""
    return {"assignments": services.assignments_for_reader(user)}
