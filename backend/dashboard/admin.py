from __future__ import annotations

from django.contrib import admin

from backend.dashboard.models import Decision, Project


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    fields = readonly_fields = ["created_at", "verdict", "decided_by", "note"]

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    """Leads set targets on the project page; the admin is for audits and fixes."""

    list_display = ["name", "synthetic_dataset", "created_at"]
    inlines = [DecisionInline]


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    """Recorded decisions are history: never edited."""

    list_display = ["project", "verdict", "decided_by", "created_at"]
    list_filter = ["verdict"]
    readonly_fields = [
        "project",
        "verdict",
        "reasons",
        "note",
        "snapshot",
        "decided_by",
        "created_at",
    ]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
