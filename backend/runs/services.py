"""Launching and cancelling runs: the one code path behind the admin, the API and the CLI."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from backend.datasets.models import Dataset, TrainingSet
from backend.runs.kinds import get_kind
from backend.runs.models import Run


def enqueue(run: Run) -> None:
    """Send the run's task to its queue (gpu or cpu). Call only after the row is committed."""
    from worker.tasks import execute_run_cpu, execute_run_gpu

    task = execute_run_gpu if get_kind(run.kind).uses_gpu else execute_run_cpu
    task.apply_async(kwargs={"run_pk": run.pk})


def resolve_config(
    kind: str, config: Mapping[str, Any] | None = None, preset: str | None = None
) -> Any:
    """The kind's validated config: ``config`` merged over ``preset`` (keys in ``config`` win)."""
    spec = get_kind(kind)
    if config is not None and not isinstance(config, Mapping):
        # dict() of a string or a list raised ValueError/TypeError here: a 500, not a 400.
        raise ValidationError(
            {"config": f"must be a JSON object of settings, got {type(config).__name__}"}
        )
    data: dict[str, Any] = spec.preset(preset).to_dict() if preset else {}
    data.update(dict(config or {}))
    return spec.parse_config(data)


def launch_run(
    *,
    kind: str,
    config: Mapping[str, Any] | None = None,
    preset: str | None = None,
    datasets: Iterable[Dataset | int] = (),
    parents: Iterable[Run | int] = (),
    training_sets: Iterable[TrainingSet | int] = (),
    user: Any = None,
    name: str = "",
) -> Run:
    """Validate a run's config and inputs, store it as queued, and enqueue it on commit.

    ``config`` is the kind's config dataclass as a dict; with ``preset`` it is merged over the
    preset (keys in ``config`` win). Raises ``ValidationError`` naming the bad field.
    """
    spec = get_kind(kind)
    parsed = resolve_config(kind, config, preset)
    dataset_rows = _rows(Dataset, datasets, "datasets")
    parent_rows = _rows(Run, parents, "parents")
    set_rows = _rows(TrainingSet, training_sets, "training_sets")
    for dataset in dataset_rows:
        if dataset.status != Dataset.Status.READY:
            raise ValidationError(
                {"datasets": f"dataset {dataset.name!r} is {dataset.status}, not ready"}
            )
    spec.check_inputs(dataset_rows, parent_rows, set_rows)
    with transaction.atomic():
        run = Run.objects.create(
            kind=kind,
            name=name,
            config=parsed.to_dict(),
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        run.datasets.set(dataset_rows)
        run.parents.set(parent_rows)
        run.training_sets.set(set_rows)
        transaction.on_commit(lambda: enqueue(run))
    return run


def cancel_run(run: Run) -> Run:
    """Cancel a run: a queued one never starts; a running one stops at its next check."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.is_finished:
            return run
        run.cancel_requested = True
        fields = ["cancel_requested"]
        if run.status == Run.Status.QUEUED:
            run.status = Run.Status.CANCELLED
            run.finished_at = timezone.now()
            fields += ["status", "finished_at"]
        run.save(update_fields=fields)
    return run


def _rows(model: Any, items: Iterable[Any], field: str) -> list[Any]:
    rows = []
    for item in items:
        # Always read the row afresh: inputs are checked against their current state.
        key = item.pk if isinstance(item, model) else item
        try:
            rows.append(model.objects.get(pk=int(key)))
        except (model.DoesNotExist, ValueError, TypeError):
            raise ValidationError(
                {field: f"no {model.__name__.lower()} with id {item!r}"}
            ) from None
    return rows
