from __future__ import annotations

from django.contrib import admin

from backend.reviews.models import Answer, Assignment, Case, Slot, Study


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


class CaseInline(ReadOnlyInline):
    model = Case
    fields = readonly_fields = ["uid", "origin", "fst", "diagnosis", "image", "sha256"]


class AssignmentInline(ReadOnlyInline):
    model = Assignment
    fields = readonly_fields = ["reader", "order_seed", "submitted_at"]


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    """Studies are built in the study builder (/reviews/studies/new/); here they are audited."""

    list_display = ["name", "status", "n_real", "n_synthetic", "created_at"]
    list_filter = ["status"]
    readonly_fields = [
        "status",
        "real_dataset",
        "real_split",
        "synthetic_dataset",
        "n_real",
        "n_synthetic",
        "seed",
        "copy_size",
        "copy_format",
        "copy_bytes",
        "created_by",
        "opened_at",
        "closed_at",
    ]
    # Status changes go through the study page (services.open_study/close_study).
    fields = ["name", "allow_answer_modification", *readonly_fields]
    inlines = [AssignmentInline, CaseInline]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Answer)
class AnswerAdmin(admin.ModelAdmin):
    list_display = ["assignment", "case", "judgement", "confidence", "realism", "complete"]
    list_filter = ["assignment__study", "complete"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Slot)
class SlotAdmin(admin.ModelAdmin):
    list_display = ["assignment", "position", "case"]
    list_filter = ["assignment__study"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
