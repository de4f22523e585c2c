from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from backend.runs.forms import LaunchForm
from backend.runs.kinds import available_kinds, get_kind
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

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "launch/",
                self.admin_site.admin_view(self.launch_choose_view),
                name="runs_run_launch",
            ),
            path(
                "launch/<str:kind>/",
                self.admin_site.admin_view(self.launch_view),
                name="runs_run_launch_kind",
            ),
        ]
        return custom + super().get_urls()

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """ "Add run" launches one: runs are never created bare."""
        return redirect("admin:runs_run_launch")

    def launch_choose_view(self, request: HttpRequest) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Launch a run",
            "kinds": available_kinds(),
        }
        return TemplateResponse(request, "admin/runs/launch_choose.html", context)

    def launch_view(self, request: HttpRequest, kind: str) -> HttpResponse:
        if not self.has_add_permission(request):
            return redirect("admin:runs_run_changelist")
        try:
            spec = get_kind(kind)
            preset = request.GET.get("preset") or None
            form = LaunchForm(request.POST or None, kind=spec, preset=preset)
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
            return redirect("admin:runs_run_launch")
        if request.method == "POST" and form.is_valid():
            run = form.launch(request.user)
            if run is not None:
                messages.success(request, f"Run #{run.pk} ({run.kind}) queued.")
                return HttpResponseRedirect(reverse("runs:detail", args=[run.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Launch: {spec.description}",
            "kind": spec,
            "presets": list(spec.presets),
            "preset": preset,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/runs/launch.html", context)
