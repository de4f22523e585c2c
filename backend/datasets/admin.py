from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from backend.accounts.roles import can_launch
from backend.datasets.forms import DatasetImportForm, TrainingSetForm
from backend.datasets.models import Dataset, Image, TrainingSet


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "format", "role", "origin", "status", "image_count", "created_at"]
    list_filter = ["format", "role", "origin", "status"]
    search_fields = ["name", "source"]
    readonly_fields = [
        "image_count",
        "counts",
        "errors",
        "generated_by",
        "created_by",
        "created_at",
        "updated_at",
    ]

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="datasets_dataset_import",
            ),
        ]
        return custom + super().get_urls()

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """ "Add dataset" imports one: datasets are never created bare."""
        return redirect("admin:datasets_dataset_import")

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Import a dataset from an uploaded zip or a server folder, in the background."""
        if not can_launch(request.user):
            messages.error(request, "Only ML engineers may import datasets.")
            return redirect("admin:index")
        if request.method == "POST":
            form = DatasetImportForm(request.POST, request.FILES)
            if form.is_valid():
                dataset = form.start(request.user)
                if dataset is not None:
                    messages.success(
                        request,
                        f"Importing {dataset.name!r} in the background: this page shows its "
                        "status and, once done, its rejected rows.",
                    )
                    return HttpResponseRedirect(dataset.get_absolute_url())
        else:
            form = DatasetImportForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a dataset",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/datasets/import.html", context)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["image_id", "dataset", "fst", "diagnosis", "malignant", "split", "origin"]
    list_filter = ["dataset", "fst", "diagnosis", "malignant", "split", "origin", "fst_source"]
    search_fields = ["image_id", "sha256", "lesion_id", "patient_id"]
    readonly_fields = [
        "sha256",
        "file",
        "width",
        "height",
        "provenance",
        "ground_truth",
        "created_at",
    ]
    list_select_related = ["dataset"]


@admin.register(TrainingSet)
class TrainingSetAdmin(admin.ModelAdmin):
    form = TrainingSetForm
    list_display = ["name", "image_count", "created_by", "created_at"]
    search_fields = ["name", "description"]
    filter_horizontal = ["datasets"]

    @admin.display(description="images")
    def image_count(self, obj: TrainingSet) -> int:
        return obj.images().count()

    def save_model(self, request: Any, obj: TrainingSet, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
