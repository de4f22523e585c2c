from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from backend.accounts.access import data_viewer_required, launcher_required
from backend.http import private_file
from backend.runs.compare import diff_rows, loss_polylines, summary
from backend.runs.downstream_page import downstream_report
from backend.runs.evaluation import evaluation_context
from backend.runs.models import Run
from backend.runs.services import cancel_run
from backend.storage import artifacts


def get_run_for_user(request: HttpRequest, pk: int) -> Run:
    """The one accessor for runs in views: 404 unless the user may see data."""
    return get_object_or_404(Run, pk=pk)


def progress_payload(run: Run) -> dict[str, Any]:
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "finished": run.is_finished,
        "step": run.step,
        "total_steps": run.total_steps,
        "percent": round(run.progress_percent, 1),
        "eta_seconds": run.eta_seconds,
        "loss_history": run.loss_history,
        "log_tail": run.log_tail,
        "sample_version": run.latest_sample,
        "worker_host": run.worker_host,
        "device": run.device,
        "attempts": run.attempts,
        "gpu_seconds": run.gpu_seconds,
        "peak_gpu_memory_mb": run.peak_gpu_memory_mb,
        "error": run.error[-2000:],
        "shards": [
            {
                "index": s.index,
                "status": s.status,
                "worker_host": s.worker_host,
                "done": s.items_done,
                "total": s.items_total,
            }
            for s in run.shards.all()
        ],
    }


@require_safe
@data_viewer_required
def run_list(request: HttpRequest) -> HttpResponse:
    runs = Run.objects.all()
    kind = request.GET.get("kind", "")
    status = request.GET.get("status", "")
    if kind in Run.Kind.values:
        runs = runs.filter(kind=kind)
    if status in Run.Status.values:
        runs = runs.filter(status=status)
    context = {
        "runs": runs[:200],
        "kinds": Run.Kind.choices,
        "statuses": Run.Status.choices,
        "kind": kind,
        "status": status,
    }
    return render(request, "runs/list.html", context)


@require_safe
@data_viewer_required
def run_compare(request: HttpRequest) -> HttpResponse:
    """Two runs side by side (``?a=<id>&b=<id>``): config differences, results, loss curves."""
    ids = [request.GET.get("a", ""), request.GET.get("b", "")]
    if not all(value.isdigit() for value in ids):
        raise Http404
    run_a, run_b = (get_run_for_user(request, int(value)) for value in ids)
    rows = diff_rows(run_a.config, run_b.config)
    results = diff_rows(summary(run_a), summary(run_b)) + diff_rows(run_a.result, run_b.result)
    context = {
        "a": run_a,
        "b": run_b,
        "rows": rows if request.GET.get("all") else [row for row in rows if row.differs],
        "showing_all": bool(request.GET.get("all")),
        "n_different": sum(row.differs for row in rows),
        "n_rows": len(rows),
        "results": results,
        "curves": loss_polylines([run_a, run_b]),
    }
    return render(request, "runs/compare.html", context)


@require_safe
@data_viewer_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_run_for_user(request, pk)
    context = {
        "run": run,
        "progress": progress_payload(run),
        "artifacts": run.artifacts.all(),
        "parents": run.parents.all(),
        "children": run.children.all(),
        "datasets": run.datasets.all(),
        "generated": run.generated_datasets.all(),
        "shards": run.shards.all(),
        "downstream": downstream_report(run),
        "evaluation": evaluation_context(run),
    }
    return render(request, "runs/detail.html", context)


@require_safe
@data_viewer_required
def run_progress(request: HttpRequest, pk: int) -> JsonResponse:
    run = get_run_for_user(request, pk)
    response = JsonResponse(progress_payload(run))
    response["Cache-Control"] = "no-store"
    return response


@require_safe
@data_viewer_required
def run_sample(request: HttpRequest, pk: int) -> FileResponse:
    run = get_run_for_user(request, pk)
    if not run.latest_sample:
        raise Http404
    return private_file(
        lambda: artifacts().fetch(run.latest_sample), "image/png", "private, no-store"
    )


@require_POST
@launcher_required
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = cancel_run(get_run_for_user(request, pk))
    messages.info(request, f"Run #{run.pk}: cancel requested ({run.get_status_display()}).")
    return redirect(run)
