from __future__ import annotations

from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from backend.accounts.access import data_viewer_required
from backend.datasets.charts import fst_mix, ita_histogram
from backend.datasets.models import Dataset, Image
from backend.http import private_file
from validation.vocabulary import FST

#: Images shown per FST x diagnosis cell on a dataset page.
GRID_PER_CELL = 4


def get_dataset_for_user(request: HttpRequest, pk: int) -> Dataset:
    """The one accessor for datasets in views: 404 unless the user may see data."""
    # data_viewer_required has already rejected readers; object-level rules go here.
    return get_object_or_404(Dataset, pk=pk)


def get_image_for_user(request: HttpRequest, pk: int) -> Image:
    return get_object_or_404(Image.objects.select_related("dataset"), pk=pk)


def tone_rows(tone: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows of the tone-fidelity table (requested FST vs the type estimated from the pixels)."""
    if not tone:
        return []
    fidelity = tone["fidelity"]
    rows = []
    for fst in FST:
        stats = fidelity["per_fst"].get(str(fst.value)) or fidelity["per_fst"].get(fst.value)
        if stats and stats["n"]:
            rows.append({"fst": fst.roman, **stats})
    if rows:
        rows.append({"fst": "all", **fidelity["overall"]})
    return rows


@require_safe
@data_viewer_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    datasets = Dataset.objects.select_related("generated_by").all()
    return render(request, "datasets/list.html", {"datasets": datasets})


@require_safe
@data_viewer_required
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = get_dataset_for_user(request, pk)
    diagnoses = sorted(set(dataset.images.values_list("diagnosis", flat=True)))
    grid = []
    for fst in FST:
        cells = []
        for dx in diagnoses:
            images = list(
                dataset.images.filter(fst=fst.value, diagnosis=dx).order_by("id")[:GRID_PER_CELL]
            )
            cells.append({"diagnosis": dx, "images": images})
        if any(cell["images"] for cell in cells):
            grid.append({"fst": fst.roman, "cells": cells})
    tone = (dataset.generated_by.result or {}).get("tone") if dataset.generated_by else None
    itas = [v for v in dataset.images.exclude(ita__isnull=True).values_list("ita", flat=True)]
    context = {
        "fst_chart": fst_mix(dataset.counts.get("fst", {})),
        "ita_chart": ita_histogram(itas),
        "n_ita": len(itas),
        "dataset": dataset,
        "tone": tone_rows(tone),
        "table": dataset.count_table(),
        "grid": grid,
        "diagnoses": diagnoses,
        "runs": dataset.runs.all()[:20],
    }
    return render(request, "datasets/detail.html", context)


@require_safe
@data_viewer_required
def image_file(request: HttpRequest, pk: int) -> FileResponse:
    image = get_image_for_user(request, pk)
    content_type = "image/png" if image.file.endswith(".png") else "image/jpeg"
    return private_file(image.fetch, content_type, "private, max-age=3600")
