from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from backend.accounts.roles import can_view_data
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
    }
    return render(request, "dashboard/home.html", context)
