from django.contrib import admin

from backend.datasets.models import Dataset, Image


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
