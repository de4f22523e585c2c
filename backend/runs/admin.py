from django.contrib import admin

from backend.runs.models import Artifact, Run


class ArtifactInline(admin.TabularInline):
    model = Artifact
    extra = 0
    readonly_fields = ["name", "kind", "path", "sha256", "size_bytes", "created_at"]
    can_delete = False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "name",
        "status",
        "step",
        "total_steps",
        "worker_host",
        "attempts",
        "created_at",
    ]
    list_filter = ["kind", "status"]
    search_fields = ["name", "worker_host"]
    readonly_fields = [
        "status",
        "step",
        "total_steps",
        "loss_history",
        "eta_seconds",
        "log_tail",
        "latest_sample",
        "result",
        "error",
        "worker_host",
        "device",
        "attempts",
        "lease_token",
        "heartbeat_at",
        "gpu_seconds",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    filter_horizontal = ["parents", "datasets"]
    inlines = [ArtifactInline]
