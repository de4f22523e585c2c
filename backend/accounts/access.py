"""View decorators that gate pages by role; unauthorised users get 404, not 403.

A 404 does not confirm that a page or object exists, which matters for readers who must not
learn anything about the datasets behind a blinded study.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from rest_framework.permissions import BasePermission

from backend.accounts.roles import can_decide, can_launch, can_view_data
from backend.dashboard.models import Project
from backend.reviews.models import Assignment, Slot, Study

View = Callable[..., HttpResponse]


def _gate(check: Callable[[Any], bool]) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise Http404
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


data_viewer_required = _gate(can_view_data)
launcher_required = _gate(can_launch)
lead_required = _gate(can_decide)


class CanViewData(BasePermission):
    """DRF: ML engineers and leads may read; only ML engineers may write."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return can_view_data(request.user)
        return can_launch(request.user)


# --- Object accessors: the object if this user may see it, else 404 ---------------------------


def get_assignment_for_reader(user: Any, pk: int) -> Assignment:
    """The reader's own assignment in a study that has opened; 404 for anyone else's."""
    return get_object_or_404(
        Assignment.objects.select_related("study").exclude(study__status=Study.Status.DRAFT),
        pk=pk,
        reader_id=user.pk,
    )


def get_slot_for_reader(user: Any, token: str) -> Slot:
    """A case of the reader's own assignment by its token, while the study is open; else 404."""
    return get_object_or_404(
        Slot.objects.select_related("assignment__study", "case"),
        token=token,
        assignment__reader_id=user.pk,
        assignment__study__status=Study.Status.OPEN,
    )


def get_study_for_admin(user: Any, pk: int) -> Study:
    """A study for its admins (ML engineers and leads); 404 for readers and everyone else."""
    if not can_view_data(user):
        raise Http404
    return get_object_or_404(Study, pk=pk)


def get_project_for_viewer(user: Any, pk: int) -> Project:
    """A go/no-go project for ML engineers and leads; 404 for readers and everyone else."""
    if not can_view_data(user):
        raise Http404
    return get_object_or_404(Project.objects.select_related("synthetic_dataset"), pk=pk)
